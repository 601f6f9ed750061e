"""`tether validate FILE...`: its output lines and exit codes, through `main([...])`.

Files that fail to load or break the schema need no node types. Files that reach
catalog validation use the installed built-in nodes (PassThrough, Gain), through
`tether.runtime.registry.default_registry()` as the command does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tether.cli import build_parser, main
from tether.errors import NodeRegistrationError

VALID = """\
version: v1
metadata: {name: gain}
nodes:
  - {id: copy, nodeType: PassThrough}
  - {id: louder, nodeType: Gain, params: {gainDb: 6}}
connections:
  - {from: copy, to: louder}
"""


Writer = Callable[[str, str], str]
"""Writes a file under tmp_path; returns its path."""


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def test_a_valid_file_prints_ok_and_exits_0(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write("good.yaml", VALID)
    assert main(["validate", path]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_an_unknown_node_type_prints_its_path_and_exits_1(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write("typo.yaml", VALID.replace("nodeType: Gain", "nodeType: Gian"))
    assert main(["validate", path]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{path}: nodes[1].nodeType: unknown node type; did you mean 'Gain'?")


def test_every_file_is_checked_and_one_bad_file_fails_the_run(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write("bad.yaml", VALID.replace("gainDb: 6", "gainDb: loud"))
    good = write("good.yaml", VALID)
    assert main(["validate", bad, good]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{bad}: nodes[1].params.gainDb: input should be a valid number, "
        "unable to parse string as a number (got 'loud')",
        f"{good}: ok",
    ]


def test_a_schema_error_prints_each_issue_on_its_own_line_and_exits_1(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        "old.yaml", VALID.replace("version: v1", "version: v0").replace("name: gain", "x: 1")
    )
    assert main(["validate", path]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: version: unsupported manifest version; supported versions: v1 (got 'v0')",
        f"{path}: metadata.name: required field is missing",
        f"{path}: metadata.x: unknown field; allowed: name, description, labels (got 1)",
    ]


def test_a_yaml_syntax_error_prints_the_file_and_line_and_exits_1(
    write: Writer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write("broken.yaml", "version: v1\nmetadata: {name: [x}\n")
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: YAML syntax error at line 2, column ")


def test_a_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "absent.yaml")
    assert main(["validate", path]) == 1
    assert capsys.readouterr().out == f"{path}: no such file\n"


def test_validate_without_files_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "the following arguments are required: FILE" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy"]) == 2
    assert "invalid choice: 'deploy'" in capsys.readouterr().err


def test_help_exits_0_and_lists_the_validate_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "validate" in capsys.readouterr().out


def test_each_command_names_its_handler() -> None:
    args = build_parser().parse_args(["validate", "a.yaml"])
    assert callable(args.handler)
    assert args.files == ["a.yaml"]


def test_a_broken_node_registry_is_reported_once_and_exits_1(
    write: Writer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tether.runtime.registry

    def broken_registry() -> tether.runtime.registry.NodeRegistry:
        raise NodeRegistrationError("entry point 'Echo' is not a tether.Node subclass")

    monkeypatch.setattr(tether.runtime.registry, "default_registry", broken_registry)
    first, second = write("a.yaml", VALID), write("b.yaml", VALID)
    assert main(["validate", first, second]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "tether: error: entry point 'Echo' is not a tether.Node subclass\n"
