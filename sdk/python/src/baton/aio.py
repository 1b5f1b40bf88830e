"""The asyncio client: the methods of `baton.Client`, awaited."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpx

from . import _core
from ._core import TERMINAL, Delivery, Request, Retry
from ._ops import Operations
from ._sse import RunEvent, SseParser
from .errors import ApiError, WaitTimeout

log = logging.getLogger("baton")


class AsyncClient(Operations[Awaitable[dict[str, Any]]]):
    """`baton.Client` for asyncio: the same methods and errors, awaited (and
    `events`, `consume`, `iter_*` as async iterators).

    >>> async with AsyncClient("http://127.0.0.1:8080") as baton:
    ...     run = await baton.execute(workflow_id, {"q": "rust"})
    ...     async for event in baton.events(run["execution_id"]):
    ...         print(event.type, event.payload)
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        token: str | None = None,
        timeout: float = 60.0,
        retry: Retry = Retry(),
        max_batch_events: int = 10_000,
        max_connections: int = 100,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry
        self.max_batch_events = max_batch_events
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=_core.headers(token),
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(self, request: Request, timeout: float | None = None) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
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
                await asyncio.sleep(wait)

    async def _answer(self, request: Request) -> dict[str, Any]:
        answer: dict[str, Any] = await self._send(request)
        return answer

    def _object(self, request: Request) -> Awaitable[dict[str, Any]]:
        return self._answer(request)

    async def ready(self) -> bool:
        """Whether `GET /readyz` answers ready."""
        try:
            await self._send(Request("GET", "/readyz"))
            return True
        except ApiError:
            return False

    def iter_workflows(self, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
        """Every workflow, newest first, following the pages' cursors."""
        return self._pages(lambda cursor: self.list_workflows(limit=page_size, cursor=cursor))

    def iter_executions(
        self, *, page_size: int = 100, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Every run that `list_executions`' filters select, newest first."""
        return self._pages(
            lambda cursor: self.list_executions(limit=page_size, cursor=cursor, **filters)
        )

    @staticmethod
    async def _pages(
        fetch: Callable[[str | None], Awaitable[dict[str, Any]]],
    ) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = await fetch(cursor)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def wait(
        self, execution_id: str, *, timeout: float | None = None, interval: float = 0.05
    ) -> dict[str, Any]:
        """See `Client.wait`."""
        clock = _core.Backoff(timeout, interval)
        while True:
            status = await self.get_execution(execution_id)
            if status["status"] in TERMINAL:
                return status
            pause = clock.next()
            if pause is None:
                raise WaitTimeout(execution_id, timeout or 0.0, status["status"])
            await asyncio.sleep(pause)

    async def events(
        self, execution_id: str, *, last_event_id: int | None = None
    ) -> AsyncIterator[RunEvent]:
        """See `Client.events`."""
        stream = _core.Stream(execution_id, last_event_id, self.retry)
        while True:
            try:
                async with self._http.stream(
                    "GET", stream.path, headers=stream.headers(), timeout=_core.STREAM_TIMEOUT
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        _core.raise_for(response)
                    parser = SseParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            yield stream.seen(event)
                            if event.final:
                                return
                wait = stream.ended()
            except (httpx.TransportError, ApiError) as error:
                wait = stream.dropped(error)
            await asyncio.sleep(wait)

    async def publish(
        self,
        events: Iterable[dict[str, Any]],
        *,
        topic: str | None = None,
        batch_size: int | None = None,
        concurrency: int = 4,
    ) -> list[dict[str, int]]:
        """See `Client.publish`; up to `concurrency` batches are in flight at
        once, so that encoding the next overlaps the server's work on the
        last (the answer keeps the events' order)."""
        batches = _core.event_batches(events, batch_size or self.max_batch_events)
        in_flight: deque[asyncio.Future[Any]] = deque()
        offsets: list[dict[str, int]] = []
        try:
            for batch in batches:
                if len(in_flight) >= concurrency:
                    offsets.extend((await in_flight.popleft())["offsets"])
                request = _core.publish_request(batch, topic)
                in_flight.append(asyncio.ensure_future(self._send(request)))
            while in_flight:
                offsets.extend((await in_flight.popleft())["offsets"])
        finally:
            for future in in_flight:
                future.cancel()
        return offsets

    async def poll(
        self, topic: str, group: str, *, member: str = "python", max: int = 100, wait_ms: int = 1000
    ) -> list[Delivery]:
        """See `Client.poll`."""
        request = _core.poll_request(topic, group, member, max, wait_ms)
        answer = await self._send(request, timeout=_core.long(wait_ms))
        return [Delivery.from_json(topic, e) for e in answer["events"]]

    async def ack(self, topic: str, group: str, deliveries: Iterable[Delivery]) -> int:
        """See `Client.ack`."""
        request = _core.ack_request(topic, group, deliveries)
        return 0 if request is None else int((await self._send(request))["acknowledged"])

    async def consume(
        self,
        topic: str,
        group: str,
        *,
        member: str = "python",
        max: int = 100,
        wait_ms: int = 1000,
        auto_ack: bool = True,
    ) -> AsyncIterator[Delivery]:
        """See `Client.consume`."""
        while True:
            batch = await self.poll(topic, group, member=member, max=max, wait_ms=wait_ms)
            for delivery in batch:
                yield delivery
            if auto_ack:
                await self.ack(topic, group, batch)

    async def poll_tasks(
        self,
        agent: str,
        *,
        max: int = 1,
        wait_ms: int = 20_000,
        lease_ms: int = 30_000,
        worker: str | None = None,
    ) -> list[dict[str, Any]]:
        """See `Client.poll_tasks`."""
        request = _core.lease_request(agent, max, wait_ms, lease_ms, worker)
        answer = await self._send(request, timeout=_core.long(wait_ms))
        assignments: list[dict[str, Any]] = answer["assignments"]
        return assignments
