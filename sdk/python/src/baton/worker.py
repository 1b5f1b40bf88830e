"""Workers: Python functions as the agents of `type: worker` in a workflow.

    worker = Worker("http://127.0.0.1:8080")

    @worker.agent("transcriber", concurrency=8)
    def transcribe(task: Task) -> dict:
        return {"text": speech_to_text(task.input["url"])}

    worker.run()   # until SIGTERM or SIGINT

The worker long-polls for each agent's calls (never more at once than the
agent's `concurrency`), heartbeats every call while it runs, and reports its
output, or its failure: a `Fail` says whether the task's `retry` applies, any
other exception is a retryable failure. A result that arrives after its lease
expired is dropped with a warning (the call went back to the pool). On
SIGTERM or SIGINT it stops polling, lets the calls in flight finish within
`shutdown_timeout` seconds, and reports the rest as retryable failures, so
that another worker takes them at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar, Union

from ._core import Retry
from .aio import AsyncClient
from .errors import BatonError

log = logging.getLogger("baton.worker")

Handler = Callable[["Task"], Union[Any, Awaitable[Any]]]
F = TypeVar("F", bound=Handler)


class Fail(Exception):
    """Raised by a handler: the call failed with `message`; `retryable=False`
    fails the task for good, whatever its `retry` says."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass
class Task:
    """One leased call. `input` is the task's input (what a pattern's turn is
    given included), `upstream` the outputs of the tasks it depends on,
    `run_input` the run's input and `data` everything the engine sent (a
    pattern's `turn`, `conversation`, `message`…)."""

    lease: str
    run: str
    task: str
    attempt: int
    data: dict[str, Any]
    lease_expires_ms: int
    _worker: Worker = field(repr=False)
    _agent: str = field(repr=False, default="")
    lost: bool = False
    """True once the lease was lost (it expired, or another worker has the
    call): what the handler returns is then dropped."""

    @property
    def input(self) -> Any:
        return self.data.get("input")

    @property
    def upstream(self) -> dict[str, Any]:
        upstream: dict[str, Any] = self.data.get("upstream") or {}
        return upstream

    @property
    def run_input(self) -> Any:
        return self.data.get("run_input")

    def progress(self, value: Any) -> None:
        """Reports what the call has so far (a percentage, a status line,
        partial output): it goes out on the run's event stream as a
        `baton.progress` event. Does not wait; callable from any thread."""
        self._worker._report_progress(self, value)


@dataclass
class _Agent:
    name: str
    handler: Handler
    concurrency: int
    lease_ms: int
    is_async: bool
    running: set[asyncio.Future[None]] = field(default_factory=set)
    pool: _DaemonPool | None = None


class _DaemonPool:
    """Threads for synchronous handlers that do not keep the process alive
    once the worker has given up waiting for them at shutdown (the threads of
    `concurrent.futures.ThreadPoolExecutor` are joined at exit)."""

    def __init__(self, size: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for i in range(size):
            threading.Thread(target=self._work, name=f"baton-{name}-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            future, fn, arg = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(arg))
            except BaseException as error:  # handed to the caller as is
                future.set_exception(error)

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, fn, arg))
        return future


class _Reporter:
    """Sends the outputs, failures and heartbeats of leased calls in batches
    (`POST /api/v1/tasks/report`): whatever was queued while the last batch
    was on its way goes in the next, so that a busy worker pays one round
    trip for up to 1,000 reports and an idle one sends each at once."""

    BATCH = 1000

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.queue: list[tuple[dict[str, Any], Task]] = []
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, report: dict[str, Any], task: Task) -> None:
        self.queue.append((report, task))
        self.idle.clear()
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = self.queue[: self.BATCH]
                del self.queue[: self.BATCH]
                await self._send(batch)
            self.idle.set()

    async def _send(self, batch: list[tuple[dict[str, Any], Task]]) -> None:
        reports = [report for report, _ in batch]
        try:
            results = await self.client.report_tasks(reports)
        except (TypeError, ValueError):
            # An output that is not JSON: it fails its call, the rest go on.
            results = await self.client.report_tasks([_encodable(r) for r in reports])
        except (BatonError, OSError) as error:
            log.warning(
                "could not report %d call(s): %s; they go back to the pool when their "
                "leases expire",
                len(batch),
                error,
            )
            return
        for (report, task), result in zip(batch, results["results"]):
            status = result.get("status")
            if status in ("expired", "unknown") and not task.lost:
                if "heartbeat" in report or status == "expired":
                    task.lost = True
                    log.warning(
                        "dropped %s of %s (run %s, attempt %d): its lease %s",
                        "the heartbeat" if "heartbeat" in report else "the result",
                        task.task,
                        task.run,
                        task.attempt,
                        "expired and the call went back to the pool"
                        if status == "expired"
                        else "is no longer known",
                    )
                else:
                    # A report repeated after a broken connection.
                    log.debug("the lease of %s (run %s) was reported already", task.task, task.run)


def _encodable(report: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(report)
        return report
    except (TypeError, ValueError) as error:
        message = f"the output is not JSON: {error}"
        return {"id": report["id"], "fail": {"message": message, "retryable": False}}


class Worker:
    """Serves the `worker` agents registered with `agent` (see the module's
    documentation)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        lease_ms: int = 30_000,
        wait_ms: int = 20_000,
        shutdown_timeout: float = 30.0,
        retry: Retry = Retry(attempts=8, initial=0.2, maximum=10.0),
        name: str | None = None,
    ) -> None:
        self.url = url
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        """How the server lists this worker (`GET /api/v1/agents`)."""
        self.token = token
        self.lease_ms = lease_ms
        self.wait_ms = wait_ms
        self.shutdown_timeout = shutdown_timeout
        self.retry = retry
        self._agents: dict[str, _Agent] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._client: AsyncClient | None = None
        self._reporter: _Reporter | None = None
        self._in_flight: dict[str, tuple[Task, float]] = {}
        self._progress: set[asyncio.Future[None]] = set()
        self._stopping = threading.Event()

    def agent(
        self, name: str, *, concurrency: int = 1, lease_ms: int | None = None
    ) -> Callable[[F], F]:
        """Registers the decorated function (sync or async, taking a `Task`)
        as the worker agent `name`, running at most `concurrency` of its
        calls at once."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if name in self._agents:
            raise ValueError(f"agent {name!r} is registered twice")

        def register(handler: F) -> F:
            is_async = inspect.iscoroutinefunction(handler)
            self._agents[name] = _Agent(
                name,
                handler,
                concurrency,
                lease_ms or self.lease_ms,
                is_async,
                pool=None if is_async else _DaemonPool(concurrency, name),
            )
            return handler

        return register

    def run(self) -> None:
        """Serves until SIGTERM or SIGINT (then shuts down gracefully)."""
        asyncio.run(self.serve(handle_signals=True))

    def start(self) -> threading.Thread:
        """Serves on a thread of its own, leaving signals to the caller, until
        `stop()`; join the thread returned to wait for the shutdown."""
        thread = threading.Thread(
            target=lambda: asyncio.run(self.serve()), name="baton-worker", daemon=True
        )
        thread.start()
        return thread

    def stop(self) -> None:
        """Asks the worker to shut down gracefully, whether it has started
        serving yet or not; callable from any thread."""
        self._stopping.set()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Serves until `stop()` (or a signal, with `handle_signals`)."""
        if not self._agents:
            raise BatonError("no agent is registered: decorate a function with worker.agent(NAME)")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stopping.is_set():
            self._stop.set()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stop.set)
        connections = len(self._agents) + 8
        async with AsyncClient(
            self.url, token=self.token, retry=self.retry, max_connections=connections
        ) as client:
            self._client = client
            self._reporter = _Reporter(client)
            background = [
                asyncio.ensure_future(self._reporter.run()),
                asyncio.ensure_future(self._heartbeats()),
            ]
            pollers = [asyncio.ensure_future(self._poll(a)) for a in self._agents.values()]
            log.info("worker serving %s on %s", ", ".join(self._agents), self.url)
            await self._stop.wait()
            log.info(
                "worker stopping: no new calls; waiting up to %gs for those in flight",
                self.shutdown_timeout,
            )
            for poller in pollers:
                poller.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
            await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._client = self._reporter = None
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.remove_signal_handler(sig)
        self._stopping.clear()
        log.info("worker stopped")

    async def _drain(self) -> None:
        running = [f for a in self._agents.values() for f in a.running]
        if running:
            _, late = await asyncio.wait(running, timeout=self.shutdown_timeout)
            for future in late:
                future.cancel()
            if late:
                await asyncio.wait(late)
        assert self._reporter is not None
        pending: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._reporter.idle.wait()),
            *self._progress,
        ]
        await asyncio.wait(pending, timeout=self.shutdown_timeout)

    async def _poll(self, agent: _Agent) -> None:
        assert self._client is not None
        failures = 0
        free = asyncio.Event()

        def done(future: asyncio.Future[None]) -> None:
            agent.running.discard(future)
            free.set()

        while True:
            room = agent.concurrency - len(agent.running)
            if room <= 0:
                free.clear()
                await free.wait()
                continue
            try:
                assignments = await self._client.poll_tasks(
                    agent.name,
                    max=min(room, 1000),
                    wait_ms=self.wait_ms,
                    lease_ms=agent.lease_ms,
                    worker=self.name,
                )
                failures = 0
            except (BatonError, OSError) as error:
                failures += 1
                pause = self.retry.delay(min(failures, 16))
                log.warning("polling %s failed (%s); again in %.1fs", agent.name, error, pause)
                await asyncio.sleep(pause)
                continue
            renew = time.monotonic() + agent.lease_ms / 3000
            for assignment in assignments:
                task = Task(
                    lease=assignment["id"],
                    run=assignment["run"],
                    task=assignment["task"],
                    attempt=int(assignment["attempt"]),
                    data=assignment.get("input") or {},
                    lease_expires_ms=int(assignment["lease_expires_ms"]),
                    _worker=self,
                    _agent=agent.name,
                )
                self._in_flight[task.lease] = (task, renew)
                future = asyncio.ensure_future(self._call(agent, task))
                agent.running.add(future)
                future.add_done_callback(done)

    async def _call(self, agent: _Agent, task: Task) -> None:
        report: dict[str, Any]
        try:
            if agent.is_async:
                result = agent.handler(task)
                output = await result if inspect.isawaitable(result) else result
            else:
                assert agent.pool is not None
                output = await asyncio.wrap_future(agent.pool.submit(agent.handler, task))
            report = {"id": task.lease, "complete": {"output": output}}
        except asyncio.CancelledError:
            message = "the worker stopped before the call ended"
            report = {"id": task.lease, "fail": {"message": message, "retryable": True}}
        except Fail as failure:
            fail = {"message": failure.message, "retryable": failure.retryable}
            report = {"id": task.lease, "fail": fail}
        except Exception as error:
            log.warning(
                "%s (run %s, attempt %d) raised %r",
                task.task,
                task.run,
                task.attempt,
                error,
                exc_info=True,
            )
            message = f"{type(error).__name__}: {error}"
            report = {"id": task.lease, "fail": {"message": message, "retryable": True}}
        self._in_flight.pop(task.lease, None)
        if task.lost:
            log.warning("dropped the result of %s (run %s): lease lost", task.task, task.run)
        elif self._reporter is not None:
            self._reporter.add(report, task)

    async def _heartbeats(self) -> None:
        """Every call's lease is renewed a third of the way through it."""
        tick = min(max(min(a.lease_ms for a in self._agents.values()) / 6000, 0.02), 1.0)
        while True:
            await asyncio.sleep(tick)
            self._renew(time.monotonic())

    def _renew(self, now: float) -> None:
        reporter = self._reporter
        if reporter is None:
            return
        for lease, (task, renew_at) in list(self._in_flight.items()):
            if renew_at <= now and not task.lost:
                lease_ms = self._agents[task._agent].lease_ms
                reporter.add({"id": lease, "heartbeat": {"lease_ms": lease_ms}}, task)
                self._in_flight[lease] = (task, now + lease_ms / 3000)

    def _report_progress(self, task: Task, value: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._spawn_progress, task, value)

    def _spawn_progress(self, task: Task, value: Any) -> None:
        client = self._client
        if client is None or task.lost:
            return

        async def send() -> None:
            try:
                await client.report_progress(task.lease, value)
            except (BatonError, OSError, TypeError, ValueError) as error:
                log.debug("progress of %s not reported: %s", task.task, error)

        future = asyncio.ensure_future(send())
        self._progress.add(future)
        future.add_done_callback(self._progress.discard)


__all__ = ["Fail", "Task", "Worker"]
