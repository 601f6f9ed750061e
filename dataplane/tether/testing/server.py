"""A real pipeline server in a child process, for tests, benchmarks and demos.

with ServerProcess({"pipelines": [...]}, workdir) as server:
    client = GrpcClient(server.grpc_url)
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

_READY = re.compile(r"tether server ready grpc=(\S+) http=(\S+)")


class ServerProcess:
    """Runs `python -m tether.server --config FILE` and waits for its ready line."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.config = {"grpc": {"port": 0}, "http": {"port": 0}, **config}
        self.workdir = workdir
        self.env = env
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[str] | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.log_path = workdir / "server.log"

    @property
    def grpc_url(self) -> str:
        scheme = "grpcs" if "tls" in self.config else "grpc"
        return f"{scheme}://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        scheme = "https" if "tls" in self.config else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def url(self, transport: str) -> str:
        return self.grpc_url if transport == "grpc" else self.http_url

    def start(self) -> Self:
        config_path = self.workdir / "server.yaml"
        config_path.write_text(yaml.safe_dump(self.config))
        # The child writes to its own copy of the descriptor; the parent's closes at once
        # (left open, it leaks and raises ResourceWarning).
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tether.server", "--config", str(config_path)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, **(self.env or {})},
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                line = self.process.stdout.readline()
                if match := _READY.search(line):
                    self.grpc_port = None if match.group(1) == "-" else int(match.group(1))
                    self.http_port = None if match.group(2) == "-" else int(match.group(2))
                    return self
            if self.process.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"pipeline server did not start; its log:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful drain), then wait; returns the exit code. Idempotent."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-work, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
