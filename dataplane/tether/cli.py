"""The `tether` command line.

Each subcommand is one `_add_<name>` function that declares its arguments and sets
`handler` to the function that runs it; `main` only parses and dispatches. Commands
import the layers they need inside their handler, so `tether --help` stays fast and
one command's dependencies cannot break another.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from tether.errors import ManifestLoadError, ManifestValidationError, TetherError
from tether.manifest import NodeCatalog, load_manifest, validate_manifest

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


if __name__ == "__main__":
    raise SystemExit(main())
