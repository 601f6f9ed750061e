"""`tether run` on text and WAV input, unary and streamed, with tracing and output files;
`tether serve` starting, answering and draining on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import wave
from pathlib import Path

import httpx
import pytest

from tether.cli import main
from tether.data.wav import read_wav, write_wav
from tether.testing.signals import speech_sample

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def speech_wav(tmp_path: Path) -> tuple[Path, tuple[float, float]]:
    audio, truth = speech_sample(sample_rate=48000)
    path = tmp_path / "speech.wav"
    write_wav(path, audio)
    return path, truth


def test_run_prints_the_sink_output_of_a_text_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "text-cleanup.yaml"), "--text", "  hello  world "]) == 0
    assert "shout: Text 'HELLO WORLD'" in capsys.readouterr().out


def test_run_traces_every_node(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(EXAMPLES / "text-cleanup.yaml"), "--text", " a ", "--trace"]) == 0
    out = capsys.readouterr().out
    assert "[tidy.out] Text 'a'" in out
    assert "[shout.out] Text 'A'" in out


@pytest.mark.parametrize("stream", [None, "20ms"], ids=["unary", "streamed"])
def test_run_finds_the_speech_in_a_wav_file(
    stream: str | None,
    speech_wav: tuple[Path, tuple[float, float]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, (start, end) = speech_wav
    args = [
        "run",
        str(EXAMPLES / "local-voice.yaml"),
        "--input",
        str(path),
        "--output-dir",
        str(tmp_path / "out"),
    ]
    if stream:
        args += ["--stream", stream]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "speech_start" in out
    written = sorted((tmp_path / "out").glob("*.wav"))
    assert len(written) == 1
    segment = read_wav(written[0])
    assert segment.sample_rate == 16000
    # The example pads speech by 60 ms on each side.
    assert segment.duration == pytest.approx(end - start + 0.12, abs=0.08)


def test_run_reports_a_missing_input_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", str(EXAMPLES / "local-voice.yaml"), "--input", str(tmp_path / "absent.wav")]
    )
    assert code == 1
    assert "absent.wav" in capsys.readouterr().err


def test_run_reports_an_invalid_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "version: v1\nmetadata: {name: bad}\nnodes: [{id: a, nodeType: Teleport}]\n"
    )
    assert main(["run", str(manifest), "--text", "x"]) == 1
    assert "nodes[0].nodeType" in capsys.readouterr().err


def test_run_refuses_a_wav_that_is_not_16_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "8bit.wav"
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(8000)
        writer.writeframes(bytes(800))
    assert main(["run", str(EXAMPLES / "local-voice.yaml"), "--input", str(path)]) == 1
    assert "only 16-bit PCM" in capsys.readouterr().err


def test_serve_starts_answers_and_drains_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text(
        f"grpc: {{port: 0}}\nhttp: {{port: 0}}\ngracePeriod: 2s\n"
        f"pipelines: [{{file: {EXAMPLES / 'text-cleanup.yaml'}}}]\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("tether server ready grpc=")
        http_port = int(ready.rsplit("http=", 1)[1])
        answer = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/execute",
            json={"header": {"pipelineName": "text-cleanup"}, "input": {"text": {"text": " hi "}}},
            timeout=30,
        )
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["data"]["text"]["text"] == "HI"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def test_serve_refuses_a_config_with_an_invalid_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: v1\nmetadata: {name: bad}\n"
        "nodes: [{id: a, nodeType: Gain, params: {gainDb: 500}}]\n"
    )
    config = tmp_path / "server.yaml"
    config.write_text(f"pipelines: [{{file: {bad}}}]\n")
    assert main(["serve", "--config", str(config)]) == 1
    assert "nodes[0].params.gainDb" in capsys.readouterr().err
