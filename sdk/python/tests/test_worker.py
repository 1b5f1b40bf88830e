"""Workers against a real server: a pool completing a 100-task workflow,
decisions, failures, lease expiry, SIGTERM during a task, auth."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import baton
from baton import Client, Fail, Task, Worker

from .conftest import REPO, Server


@contextmanager
def serving(worker: Worker) -> Iterator[Worker]:
    """Runs `worker` on a thread of its own until the block ends."""
    thread = worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop"


def chain_of(n: int, width: int, agent: str = "py") -> dict[str, Any]:
    """`n` tasks in rows of `width`, each row depending on the one before."""
    tasks = []
    for i in range(n):
        row = i // width
        deps = [f"t{j}" for j in range((row - 1) * width, row * width)] if row else []
        tasks.append({"id": f"t{i}", "agent": agent, "depends_on": deps, "input": {"i": i}})
    return {
        "name": f"pool{n}",
        "agents": {agent: {"type": "worker", "concurrency": 64}},
        "tasks": tasks,
    }


def test_a_pool_of_workers_completes_a_100_task_workflow(server: Server) -> None:
    ran: dict[str, list[int]] = {}
    lock = threading.Lock()
    workers = [Worker(server.url, wait_ms=500, name=f"pool-{i}") for i in range(3)]
    for n, worker in enumerate(workers):

        def handle(task: Task, n: int = n) -> dict[str, Any]:
            with lock:
                ran.setdefault(task.task, []).append(n)
            return {"i": task.input["i"], "saw": sorted(task.upstream)}

        worker.agent("py", concurrency=4)(handle)

    with Client(server.url) as client:
        wf = client.create_workflow(chain_of(100, 10))
        with serving(workers[0]), serving(workers[1]), serving(workers[2]):
            run = client.execute(wf["id"])
            done = client.wait(run["execution_id"], timeout=60)
            # The server lists each worker by its name, with the agent it serves.
            seen = {w["name"]: w["agents"] for w in client.agents()["workers"]}
            assert seen == {f"pool-{i}": ["py"] for i in range(3)}, seen
    assert done["status"] == "completed", done
    assert sorted(ran) == sorted(f"t{i}" for i in range(100))
    assert all(len(who) == 1 for who in ran.values()), "a task ran twice"
    assert len({n for who in ran.values() for n in who}) > 1, "one worker did everything"
    t15 = next(t for t in done["tasks"] if t["id"] == "t15")
    assert t15["output"] == {"i": 15, "saw": [f"t{i}" for i in range(10)]}


def test_async_handlers_failures_and_retries(server: Server) -> None:
    worker = Worker(server.url, wait_ms=500)
    attempts: list[int] = []

    @worker.agent("flaky", concurrency=2)
    async def flaky(task: Task) -> Any:
        attempts.append(task.attempt)
        await asyncio.sleep(0.01)
        if task.attempt < 3:
            raise RuntimeError("not yet")
        return {"attempt": task.attempt}

    @worker.agent("broken")
    def broken(task: Task) -> Any:
        raise Fail("the input is wrong", retryable=False)

    flow = {
        "name": "failures",
        "agents": {"flaky": {"type": "worker"}, "broken": {"type": "worker"}},
        "tasks": [
            {
                "id": "a",
                "agent": "flaky",
                "retry": {"max_attempts": 3, "backoff": {"initial": "100ms"}},
            },
            {"id": "b", "agent": "broken", "depends_on": ["a"], "retry": 5},
        ],
    }
    with Client(server.url) as client, serving(worker):
        wf = client.create_workflow(flow)
        done = client.wait(client.execute(wf["id"])["execution_id"], timeout=30)
    assert attempts == [1, 2, 3]
    tasks = {t["id"]: t for t in done["tasks"]}
    assert tasks["a"]["output"] == {"attempt": 3}
    assert done["status"] == "failed"
    assert tasks["b"]["attempt"] == 1 and "the input is wrong" in tasks["b"]["error"]


def test_decisions_drive_a_supervisor(server: Server) -> None:
    worker = Worker(server.url, wait_ms=500)

    @worker.agent("lead")
    def lead(task: Task) -> Any:
        conversation = task.data["conversation"]
        if not conversation:
            return baton.delegate(("coder", {"part": 1}), ("coder", {"part": 2}))
        parts = sorted(e["output"]["done"] for e in conversation if e["agent"] == "coder")
        return baton.finish({"parts": parts, "turns": task.data["turn"] + 1})

    @worker.agent("coder", concurrency=2)
    def coder(task: Task) -> Any:
        task.progress({"working_on": task.input["part"]})
        return {"done": task.input["part"]}

    flow = {
        "name": "supervised",
        "agents": {"lead": {"type": "worker"}, "coder": {"type": "worker"}},
        "tasks": [
            {
                "id": "build",
                "pattern": {
                    "type": "supervisor",
                    "supervisor": "lead",
                    "workers": ["coder"],
                    "max_turns": 3,
                },
            }
        ],
    }
    with Client(server.url) as client, serving(worker):
        wf = client.create_workflow(flow)
        run = client.execute(wf["id"])["execution_id"]
        events = list(client.events(run))
        done = client.wait(run, timeout=30)
    assert done["status"] == "completed", done
    assert done["tasks"][0]["output"] == {"parts": [1, 2], "turns": 2}
    decisions = [e.payload["decision"] for e in events if e.type == "baton.decision"]
    assert "delegate" in decisions and "answer" in decisions
    assert any(e.type == "baton.progress" for e in events)


def test_a_late_result_is_dropped_and_the_call_runs_again(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with Client(server.url) as client:
        wf = client.create_workflow(chain_of(1, 1))
        run = client.execute(wf["id"])["execution_id"]
        # By hand: a lease not kept alive expires, and its result is refused.
        [lease] = client.poll_tasks("py", wait_ms=5000, lease_ms=100)
        time.sleep(0.4)
        with pytest.raises(baton.Conflict):
            client.complete_task(lease["id"], {"late": True})

        # A worker whose heartbeats do not get through: it finishes too late,
        # warns, and the call goes to the next poll.
        slow = Worker(server.url, wait_ms=500, lease_ms=200)
        calls: list[int] = []

        slow._renew = lambda now: None  # type: ignore[method-assign]

        @slow.agent("py")
        def handle(task: Task) -> Any:
            calls.append(task.attempt)
            if len(calls) == 1:
                time.sleep(0.6)
            return {"attempt": task.attempt}

        with caplog.at_level(logging.WARNING, logger="baton.worker"), serving(slow):
            done = client.wait(run, timeout=30)
    assert done["status"] == "completed"
    assert len(calls) >= 2
    assert any("lease expired" in r.getMessage() for r in caplog.records), caplog.text


WORKER_SCRIPT = """
import logging, sys, time
from baton import Worker
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
worker = Worker(sys.argv[1], wait_ms=500, shutdown_timeout=float(sys.argv[2]))

@worker.agent("py", concurrency=2)
def handle(task):
    print("started", task.task, flush=True)
    time.sleep(float(task.input["sleep"]))
    return {"slept": task.input["sleep"]}

worker.run()
"""


def start_worker(url: str, shutdown_timeout: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "sdk" / "python" / "src"))
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, url, str(shutdown_timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(("sleep", "finished"), [(0.5, True), (30.0, False)])
def test_sigterm_during_a_task(server: Server, sleep: float, finished: bool) -> None:
    """A call that ends within the shutdown deadline is completed; one that
    does not is reported as a retryable failure, so the next worker takes it
    at once (not after its lease)."""
    flow = {
        "name": "sigterm",
        "agents": {"py": {"type": "worker"}},
        "tasks": [
            {
                "id": "t",
                "agent": "py",
                "input": {"sleep": sleep},
                "retry": {"max_attempts": 2, "backoff": {"initial": "100ms"}},
            }
        ],
    }
    with Client(server.url) as client:
        wf = client.create_workflow(flow)
        run = client.execute(wf["id"])["execution_id"]
        first = start_worker(server.url, shutdown_timeout=2.0)
        assert first.stdout is not None
        assert first.stdout.readline().startswith("started t")
        began = time.monotonic()
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=20)
        assert first.returncode == 0, err
        assert time.monotonic() - began < 5
        if finished:
            status = client.wait(run, timeout=10)
            assert status["status"] == "completed", status
            assert status["tasks"][0]["attempt"] == 1, status
        else:
            # The first attempt was reported failed by the worker, not left to
            # its 30 s lease: the task waits for attempt 2 within seconds.
            deadline = time.monotonic() + 10
            task = client.get_execution(run)["tasks"][0]
            while task["attempt"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
                task = client.get_execution(run)["tasks"][0]
            assert task["attempt"] == 2 and task["status"] != "succeeded", task
            # Retried at once: the next worker gets attempt 2 within its backoff.
            second = start_worker(server.url, shutdown_timeout=0.1)
            assert second.stdout is not None
            try:
                assert second.stdout.readline().startswith("started t")
                assert client.get_execution(run)["tasks"][0]["attempt"] == 2
            finally:
                second.kill()
                second.wait()
            client.cancel(run)


def test_auth_on(secured: Server) -> None:
    with Client(secured.url) as anonymous, pytest.raises(baton.Unauthorized) as denied:
        anonymous.list_workflows()
    assert denied.value.code == "unauthorized"
    worker = Worker(secured.url, token=secured.token, wait_ms=500)

    @worker.agent("py")
    def handle(task: Task) -> Any:
        return {"ok": True}

    with Client(secured.url, token=secured.token) as client, serving(worker):
        wf = client.create_workflow(chain_of(3, 1))
        done = client.wait(client.execute(wf["id"])["execution_id"], timeout=30)
    assert done["status"] == "completed"
    assert "s3cret-token" not in "".join(secured.log)


def test_the_event_stream_resumes_across_a_server_restart(server: Server) -> None:
    with Client(server.url, retry=baton.Retry(attempts=20, initial=0.1, maximum=1.0)) as client:
        wf = client.create_workflow(chain_of(3, 1))
        run = client.execute(wf["id"])["execution_id"]
        stream = client.events(run)
        first = next(stream)
        assert first.type == "baton.run"
        server.restart()
        worker = Worker(server.url, wait_ms=500)
        worker.agent("py")(lambda task: {"i": task.input["i"]})
        with serving(worker):
            rest = list(stream)
    offsets = [e.offset for e in [first, *rest] if e.offset is not None]
    assert len(offsets) == len(rest) + 1
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
    assert rest[-1].final and rest[-1].payload["status"] == "completed"
