"""The synchronous client of a Baton server's HTTP API (docs/api.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from . import _core
from ._core import TERMINAL, Delivery, Request, Retry
from ._ops import Operations
from ._sse import RunEvent, SseParser
from .errors import ApiError, WaitTimeout

log = logging.getLogger("baton")


class Client(Operations[dict[str, Any]]):
    """A connection pool to one server. Each method answers the JSON of its
    route in docs/api.md, or raises an `ApiError` subclass (`NotFound`,
    `Conflict`, `InvalidWorkflow`…) for a problem+json answer and
    `TransportError` when the server cannot be reached. Reads, heartbeats,
    acks and publishes (each event carries an id the server deduplicates) are
    tried again after a transport error or a 503, as `retry` says; nothing
    else is, so nothing runs twice.

    >>> with Client("http://127.0.0.1:8080", token="…") as baton:
    ...     wf = baton.create_workflow(Path("flow.yaml"))
    ...     run = baton.execute(wf["id"], {"q": "rust"})
    ...     print(baton.wait(run["execution_id"], timeout=60)["status"])
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        timeout: float = 60.0,
        retry: Retry = Retry(),
        max_batch_events: int = 10_000,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry
        self.max_batch_events = max_batch_events
        self._http = httpx.Client(
            base_url=self.url,
            headers=_core.headers(token),
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, request: Request, timeout: float | None = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    request.method,
                    request.path,
                    params=request.params,
                    content=request.body,
                    headers={"content-type": request.content_type},
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                return _core.answer(response)
            except (ApiError, httpx.TransportError) as error:
                wait = _core.should_retry(request, error, attempt, self.retry)
                if wait is None:
                    if isinstance(error, httpx.TransportError):
                        raise _core.transport_error(request, error) from error
                    raise
                log.debug("retrying %s %s in %.2fs: %s", request.method, request.path, wait, error)
                time.sleep(wait)

    def _object(self, request: Request) -> dict[str, Any]:
        answer: dict[str, Any] = self._send(request)
        return answer

    def ready(self) -> bool:
        """Whether `GET /readyz` answers ready: the engine answers and the
        event log accepts writes."""
        try:
            self._send(Request("GET", "/readyz"))
            return True
        except ApiError:
            return False

    def iter_workflows(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every workflow, newest first, following the pages' cursors."""
        return self._pages(lambda cursor: self.list_workflows(limit=page_size, cursor=cursor))

    def iter_executions(self, *, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every run that `list_executions`' filters select, newest first."""
        return self._pages(
            lambda cursor: self.list_executions(limit=page_size, cursor=cursor, **filters)
        )

    @staticmethod
    def _pages(
        fetch: Callable[[str | None], dict[str, Any]],
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = fetch(cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def wait(
        self, execution_id: str, *, timeout: float | None = None, interval: float = 0.05
    ) -> dict[str, Any]:
        """The run's status once it has ended (`completed`, `failed` or
        `cancelled`: a failed run is an answer, not an exception); raises
        `WaitTimeout` when it has not ended within `timeout` seconds. Polls
        every `interval` seconds at first, then less often (at most every
        second)."""
        clock = _core.Backoff(timeout, interval)
        while True:
            status = self.get_execution(execution_id)
            if status["status"] in TERMINAL:
                return status
            pause = clock.next()
            if pause is None:
                raise WaitTimeout(execution_id, timeout or 0.0, status["status"])
            time.sleep(pause)

    def events(self, execution_id: str, *, last_event_id: int | None = None) -> Iterator[RunEvent]:
        """The run's events as they happen, until its final `baton.run` event.
        A dropped connection (a server restarting, say) is opened again with
        `Last-Event-ID`, so that no event is missed or repeated; it gives up
        as `retry` says when the server stays away."""
        stream = _core.Stream(execution_id, last_event_id, self.retry)
        while True:
            try:
                with self._http.stream(
                    "GET", stream.path, headers=stream.headers(), timeout=_core.STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        _core.raise_for(response)
                    parser = SseParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield stream.seen(event)
                            if event.final:
                                return
                wait = stream.ended()
            except (httpx.TransportError, ApiError) as error:
                wait = stream.dropped(error)
            time.sleep(wait)

    def publish(
        self,
        events: Iterable[dict[str, Any]],
        *,
        topic: str | None = None,
        batch_size: int | None = None,
    ) -> list[dict[str, int]]:
        """Publishes events (`{"type", "key"?, "payload"?, "headers"?, "id"?}`)
        in batches of at most `batch_size` (by default the server's
        `max_batch_events`, 10,000); answers each event's `{"partition",
        "offset"}` in order. An event without an `id` is given a random one
        (in place: the dict gains an `id` key), so that a batch sent again
        after a broken connection is not published twice."""
        offsets: list[dict[str, int]] = []
        for batch in _core.event_batches(events, batch_size or self.max_batch_events):
            offsets.extend(self._send(_core.publish_request(batch, topic))["offsets"])
        return offsets

    def poll(
        self, topic: str, group: str, *, member: str = "python", max: int = 100, wait_ms: int = 1000
    ) -> list[Delivery]:
        """Up to `max` events for `member` of the consumer group, waiting up
        to `wait_ms` for some to arrive."""
        request = _core.poll_request(topic, group, member, max, wait_ms)
        answer = self._send(request, timeout=_core.long(wait_ms))
        return [Delivery.from_json(topic, e) for e in answer["events"]]

    def ack(self, topic: str, group: str, deliveries: Iterable[Delivery]) -> int:
        """Acknowledges deliveries of a group; answers how many were pending."""
        request = _core.ack_request(topic, group, deliveries)
        return 0 if request is None else int(self._send(request)["acknowledged"])

    def consume(
        self,
        topic: str,
        group: str,
        *,
        member: str = "python",
        max: int = 100,
        wait_ms: int = 1000,
        auto_ack: bool = True,
    ) -> Iterator[Delivery]:
        """The group's events one at a time, for as long as the caller
        iterates. With `auto_ack` a polled batch is acknowledged when the
        caller asks for the event after its last one, i.e. once each was
        handled (at-least-once); without it, call `ack`, or the events come
        again after the topic's visibility timeout."""
        while True:
            batch = self.poll(topic, group, member=member, max=max, wait_ms=wait_ms)
            yield from batch
            if auto_ack:
                self.ack(topic, group, batch)

    def poll_tasks(
        self,
        agent: str,
        *,
        max: int = 1,
        wait_ms: int = 20_000,
        lease_ms: int = 30_000,
        worker: str | None = None,
    ) -> list[dict[str, Any]]:
        """Leases up to `max` calls of a `worker` agent (`baton.Worker` runs
        the whole loop); `worker` names the polling process in `agents()`."""
        request = _core.lease_request(agent, max, wait_ms, lease_ms, worker)
        assignments: list[dict[str, Any]] = self._send(request, timeout=_core.long(wait_ms))[
            "assignments"
        ]
        return assignments
