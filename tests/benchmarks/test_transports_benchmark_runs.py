"""benchmarks/transports.py still runs: `--quick` exits 0 and prints, in each of its three
sections, a timed row for every transport against every raw baseline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transports.py"
MS = r"\d+\.\d{3}"
RATIO = r"(\d+\.\d{2}|inf)x"
RATE = r"\d{1,3}(,\d{3})*"
LATENCY = rf"(\s+{MS}){{4}}\s+{RATIO}\s+{RATIO}"

UNARY_BASELINES = {
    "grpc": ["grpc.aio unary"],
    "http": ["httpx -> aiohttp", "aiohttp -> aiohttp"],
    "webrtc": ["aiortc channel"],
}
STREAM_BASELINES = {
    "grpc": ["grpc.aio bidi"],
    "http": ["httpx-ws -> aiohttp ws", "aiohttp ws -> aiohttp ws"],
    "webrtc": ["aiortc channel"],
}


def sections(output: str) -> dict[str, list[str]]:
    """The lines under each `== N. title ==` heading, by N."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if match := re.match(r"== (\d)\. ", line):
            current = found.setdefault(match.group(1), [])
        elif current is not None and line.strip():
            current.append(line)
    return found


@pytest.mark.slow
def test_quick_transport_benchmark_prints_every_section_and_transport_row() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    found = sections(result.stdout)
    assert sorted(found) == ["1", "2", "3"], result.stdout
    for transport, baselines in UNARY_BASELINES.items():
        for size in ("3840 B", "192000 B"):
            for baseline in baselines:
                row = rf"{transport}\s+{size}\s+{re.escape(baseline)}{LATENCY}"
                assert any(re.fullmatch(row, line) for line in found["1"]), (row, result.stdout)
    for transport, baselines in STREAM_BASELINES.items():
        for baseline in baselines:
            paced = rf"{transport}\s+{re.escape(baseline)}{LATENCY}"
            assert any(re.fullmatch(paced, line) for line in found["2"]), (paced, result.stdout)
            rate = rf"{transport}\s+{re.escape(baseline)}\s+{RATE}\s+{RATE}\s+{RATIO}"
            assert any(re.fullmatch(rate, line) for line in found["3"]), (rate, result.stdout)
    assert re.search(r"^machine: \d+ CPUs; load average", result.stdout, re.MULTILINE)
