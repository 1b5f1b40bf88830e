"""What README.md shows runs as shown: its Python quick start, and the
example application it names, against a real server."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys

from .conftest import REPO, Server

README = REPO / "sdk" / "python" / "README.md"


def run_script(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A script of the repository, run from its root with this SDK."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "sdk" / "python" / "src"))
    done = subprocess.run(
        [sys.executable, script, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_readme_quick_start_runs(server: Server) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README's quick start is one python block"
    code = blocks[0].replace('"http://127.0.0.1:8080"', repr(server.url))
    assert server.url in code
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().strip() == "completed {'count': 6}"


def test_the_example_application_runs(server: Server) -> None:
    lines = re.findall(r"^python (examples/python/\S+) --server \S+$", README.read_text(), re.M)
    assert lines == ["examples/python/research_team.py"]
    out = run_script(lines[0], "--server", server.url).stdout
    assert "progress: looking into rust" in out, out
    assert "'decision': 'delegate'" in out and "'decision': 'answer'" in out, out
    assert out.strip().splitlines()[-1].startswith("completed {'answer': 'rust'"), out


def test_the_benchmark_command_runs_scaled_down(server: Server) -> None:
    """The command docs/performance.md and the README give, with small sizes."""
    commands = set()
    for doc in (README, REPO / "docs" / "performance.md"):
        commands.update(
            re.findall(r"^python (sdk/python/benchmarks/\S+) --server", doc.read_text(), re.M)
        )
    assert commands == {"sdk/python/benchmarks/throughput.py"}
    small = ["--tasks", "200", "--events", "20000", "--batch", "1000", "--repeat", "1"]
    done = run_script(commands.pop(), "--server", server.url, *small)
    assert re.search(r"worker: [0-9,]+ tasks/s", done.stdout), done.stdout
    assert re.search(r"publish: [0-9,]+ events/s", done.stdout), done.stdout


def test_the_console_benchmark_runs_scaled_down(server: Server) -> None:
    """docs/console.md's measurement command, on 2,000 tasks."""
    doc = (REPO / "docs" / "console.md").read_text()
    [script] = re.findall(r"^python (sdk/python/benchmarks/console_scale\.py) --server", doc, re.M)
    done = run_script(script, "--server", server.url, "--tasks", "2000")
    assert "opened a finished 2000-task run in" in done.stdout, done.stdout
    assert re.search(r"p99 gap [0-9]+ ms", done.stdout), done.stdout
