"""Generates the protobuf and gRPC code from proto/ whenever the package is built.

Generated modules land in dataplane/tether/v1/ and are git-ignored: nobody edits them.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
PROTO_ROOT = ROOT / "proto"
OUTPUT_ROOT = ROOT / "dataplane"


def generate_protobuf_code() -> None:
    from grpc_tools import protoc  # build-time dependency (pyproject build-system)

    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={OUTPUT_ROOT}",
        f"--grpc_python_out={OUTPUT_ROOT}",
        f"--mypy_out={OUTPUT_ROOT}",
        f"--mypy_grpc_out={OUTPUT_ROOT}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {sources}")


class BuildPyWithProtobuf(build_py):
    def run(self) -> None:
        generate_protobuf_code()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtobuf})
