"""A real `baton serve` for the tests: the binary `BATON_BIN` names (by
default the release binary CI builds), on port 0, in a temporary data
directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def binary() -> str:
    path = os.environ.get("BATON_BIN") or str(REPO / "target" / "release" / "baton")
    if not Path(path).is_file():
        pytest.fail(
            f"no baton binary at {path}: build it with "
            "`cargo build --release -p baton-cli` or set BATON_BIN"
        )
    return path


class Server:
    """One `baton serve` process; `restart()` keeps its data and its port."""

    def __init__(self, data: Path, token: str | None = None, config: str = "") -> None:
        self.data = data
        self.token = token
        self.config = data.parent / f"{data.name}.toml"
        server = f'auth_token = "{token}"\n' if token else ""
        self.config.write_text(f"[server]\n{server}{config}")
        self.bind = "127.0.0.1:0"
        self.url = ""
        self.log: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                binary(),
                "serve",
                "--bind",
                self.bind,
                "--data-dir",
                str(self.data),
                "--config",
                str(self.config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + 30
        for line in self.process.stderr:
            self.log.append(line)
            found = re.search(r"listening on (http://[0-9.:]+)", line)
            if found:
                self.url = found.group(1)
                self.bind = self.url.removeprefix("http://")
                break
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.process.kill()
            raise RuntimeError("baton serve did not start:\n" + "".join(self.log))
        # Keep reading, so that a full pipe never blocks the server.
        stderr = self.process.stderr
        threading.Thread(target=lambda: self.log.extend(stderr), daemon=True).start()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def restart(self) -> None:
        assert self.stop() == 0, "".join(self.log)
        self.start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data")
    yield s
    if s.process is not None and s.process.poll() is None:
        s.stop()


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", token="s3cret-token")
    yield s
    if s.process is not None and s.process.poll() is None:
        s.stop()
