"""Encode+decode cost of RuntimeData against a raw numpy baseline.

Times `from_bytes(to_bytes(x))` for one second of 48 kHz float32 mono audio and one
1920x1080x3 uint8 video frame, beside `np.frombuffer(a.tobytes())` on the same array in
the same run, and prints p50/p99 of both and their ratio.

    .venv/bin/python benchmarks/codec.py [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf import __version__ as protobuf_version

import _report
from tether.data import Audio, RuntimeData, Video, from_bytes, to_bytes
from tether.runtime.allocator import keep_freed_memory


@dataclass(frozen=True)
class Case:
    name: str
    data: RuntimeData
    array: npt.NDArray[Any]
    repeat: int
    """Default repetitions: fewer for the 6 MB video frame, whose copies dominate."""


def cases() -> list[Case]:
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, 48_000).astype(np.float32)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    return [
        Case(
            "audio 1 s 48 kHz float32 mono",
            Audio(samples=samples, sample_rate=48_000),
            samples,
            repeat=300,
        ),
        Case("video 1920x1080x3 uint8", Video(frame=frame, pts=0), frame, repeat=100),
    ]


def tether_round_trip(data: RuntimeData) -> Callable[[], object]:
    return lambda: from_bytes(to_bytes(data))


def raw_round_trip(array: npt.NDArray[Any]) -> Callable[[], object]:
    return lambda: np.frombuffer(array.tobytes(), dtype=array.dtype).reshape(array.shape)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed iterations per case (default: 300 for audio, 100 for video)",
    )
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="keep glibc's default trim/mmap thresholds instead of raising them as servers do",
    )
    args = parser.parse_args(argv)

    tuned = not args.default_allocator and keep_freed_memory()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"protobuf {protobuf_version}; allocator {'tuned as in servers' if tuned else 'default'}; "
        "times per encode+decode"
    )
    rows: list[list[str]] = []
    for case in cases():
        repeat = args.repeat if args.repeat is not None else case.repeat
        warmup = max(1, repeat // 10)
        gc.collect()
        tether = _report.summarize(_report.measure(tether_round_trip(case.data), repeat, warmup))
        raw = _report.summarize(_report.measure(raw_round_trip(case.array), repeat, warmup))
        rows.append(
            [
                case.name,
                *(_report.duration(t) for t in (*tether, *raw)),
                *(f"{_report.ratio(t, r):.2f}x" for t, r in zip(tether, raw, strict=True)),
            ]
        )
    _report.print_table(
        rows,
        ["case", "tether p50", "tether p99", "raw p50", "raw p99", "ratio p50", "ratio p99"],
    )


if __name__ == "__main__":
    main()
