"""The `tether` command line.

Each subcommand is one `_add_<name>` function that declares its arguments and sets
`handler` to the function that runs it; `main` only parses and dispatches. Commands
import the layers they need inside their handler, so `tether --help` stays fast and
one command's dependencies cannot break another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tether.data import Audio, Binary, Json, RuntimeData, Tensor, Text, Video
from tether.errors import ManifestLoadError, ManifestValidationError, TetherError
from tether.manifest import NodeCatalog, load_manifest, parse_duration, validate_manifest

if TYPE_CHECKING:
    from tether.runtime import Pipeline

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether",
        description="Run media and AI pipelines whose nodes can execute on remote servers.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_validate(commands)
    _add_run(commands)
    _add_serve(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (0 ok, 1 failed, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print("tether: error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    return handler(args)


def _add_validate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "validate",
        help="check manifests against the installed node types",
        description="Check manifests against the schema, the installed node types and "
        "the graph rules. Prints every issue, prefixed by its file.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="manifest file or http(s) URL")
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    catalog: NodeCatalog | None = None
    status = EXIT_OK
    for name in args.files:
        try:
            manifest = load_manifest(name)
            if catalog is None:
                # Loaded on first need: a file that does not even parse needs no node types.
                from tether.runtime.registry import default_registry

                catalog = default_registry().catalog()
            validate_manifest(manifest, catalog, source=name)
        except ManifestValidationError as exc:
            status = EXIT_FAILED
            for issue in exc.issues:
                print(f"{name}: {issue}")
        except ManifestLoadError as exc:
            status = EXIT_FAILED
            print(f"{name}: {exc.message}")
        except TetherError as exc:
            # The node registry itself failed: no file can be checked.
            print(f"tether: error: {exc}", file=sys.stderr)
            return EXIT_FAILED
        else:
            print(f"{name}: ok")
    return status


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run a manifest locally on one input",
        description="Run a manifest in this process and print what its sinks produce.",
    )
    parser.add_argument("manifest", metavar="MANIFEST", help="manifest file or http(s) URL")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, metavar="FILE.wav", help="16-bit PCM WAV input")
    source.add_argument("--text", help="Text input")
    source.add_argument("--json", dest="json_value", metavar="JSON", help="Json input")
    parser.add_argument(
        "--stream",
        metavar="DURATION",
        type=parse_duration,
        help="stream the audio in frames of this duration (e.g. 20ms) instead of one call",
    )
    parser.add_argument("--trace", action="store_true", help="print what every node produces")
    parser.add_argument(
        "--output-dir", type=Path, help="write audio outputs as WAV and text as .txt"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from tether.data.wav import read_wav
    from tether.runtime import Pipeline
    from tether.runtime.allocator import keep_freed_memory

    keep_freed_memory()
    try:
        pipeline = Pipeline.from_manifest(load_manifest(args.manifest))
        data: RuntimeData
        if args.input is not None:
            data = read_wav(args.input)
        elif args.text is not None:
            data = Text(text=args.text)
        else:
            data = Json(value=json.loads(args.json_value))
        outputs = asyncio.run(_execute(pipeline, data, args))
    except (TetherError, ValueError) as exc:
        print(f"tether: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{len(outputs)} output(s) from pipeline {pipeline.name!r}:")
    for index, (node_id, value) in enumerate(outputs):
        print(f"  {node_id}: {describe(value)}")
        if args.output_dir is not None:
            _write_output(args.output_dir, f"{index:03d}-{node_id}", value)
    return EXIT_OK


async def _execute(
    pipeline: Pipeline, data: RuntimeData, args: argparse.Namespace
) -> list[tuple[str, RuntimeData]]:
    def trace(node_id: str, port: str, value: RuntimeData) -> None:
        print(f"[{node_id}.{port}] {describe(value)}")

    tap = trace if args.trace else None
    if args.stream is None or not isinstance(data, Audio):
        return [(o.node_id, o.data) for o in await pipeline.run(data, tap=tap)]
    frames = _audio_frames(data, args.stream)
    async with contextlib.aclosing(pipeline.stream(frames, tap=tap)) as outputs:
        return [(o.node_id, o.data) async for o in outputs]


async def _audio_frames(audio: Audio, seconds: float) -> AsyncIterator[RuntimeData]:
    step = max(1, round(seconds * audio.sample_rate))
    for start in range(0, audio.frames, step):
        timestamp = (audio.timestamp or 0.0) + start / audio.sample_rate
        yield Audio(
            samples=audio.samples[start : start + step],
            sample_rate=audio.sample_rate,
            timestamp=timestamp,
        )


def describe(value: RuntimeData) -> str:
    """One line about a value, for people reading a terminal."""
    when = "" if value.timestamp is None else f" at {value.timestamp:.3f}s"
    if isinstance(value, Audio):
        length = f"{value.duration * 1000:.0f} ms"
        text = f"Audio {length}, {value.sample_rate} Hz, {value.channels} ch{when}"
    elif isinstance(value, Video):
        text = f"Video {value.width}x{value.height} {value.pixel_format}{when}"
    elif isinstance(value, Text):
        text = f"Text {value.text!r}{when}"
    elif isinstance(value, Binary):
        text = f"Binary {len(value.data)} bytes {value.mime_type}{when}"
    elif isinstance(value, Tensor):
        text = f"Tensor {value.array.dtype} {value.array.shape}{when}"
    else:
        text = f"Json {json.dumps(value.value)}{when}"
    if value.metadata:
        text += f" {dict(value.metadata)}"
    return text


def _write_output(directory: Path, stem: str, value: RuntimeData) -> None:
    from tether.data.wav import write_wav

    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(value, Audio):
        write_wav(directory / f"{stem}.wav", value)
    elif isinstance(value, Text):
        (directory / f"{stem}.txt").write_text(value.text)
    elif isinstance(value, Json):
        (directory / f"{stem}.json").write_text(json.dumps(value.value))


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve pipelines over gRPC, HTTP and WebRTC",
        description="Run a pipeline server until SIGTERM or SIGINT, then drain gracefully.",
    )
    parser.add_argument("--config", type=Path, required=True, help="server config (YAML)")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from tether.server.app import run_server
    from tether.server.config import load_server_config

    try:
        config = load_server_config(args.config)
        return run_server(config)
    except TetherError as exc:
        print(f"tether: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
