"""benchmarks/codec.py still runs: a short run exits 0 and prints a row per case."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "codec.py"
DURATION = r"\d+(\.\d+)? (µs|ms|s)"
RATIO = r"(\d+(\.\d+)?|inf)x"
ROW = rf"\s+{DURATION}\s+{DURATION}\s+{DURATION}\s+{DURATION}\s+{RATIO}\s+{RATIO}$"


def test_codec_benchmark_prints_a_timed_row_for_audio_and_video() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--repeat", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for case in ("audio 1 s 48 kHz float32 mono", "video 1920x1080x3 uint8"):
        rows = [line for line in lines if line.startswith(case)]
        assert len(rows) == 1, result.stdout
        assert re.fullmatch(re.escape(case) + ROW, rows[0]), rows[0]
