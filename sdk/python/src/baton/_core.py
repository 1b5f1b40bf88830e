"""What the sync and asyncio clients share: how each call is put to the
server, how its answer is read, and when a failed call is tried again."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Union
from urllib.parse import quote

import httpx

try:
    import orjson
except ImportError:  # optional: the `fast` extra
    orjson = None  # type: ignore[assignment]

from ._sse import RunEvent
from .errors import RateLimited, TransportError, Unavailable, api_error

log = logging.getLogger("baton")

JSON = Any
"""Any value `json.dumps` takes."""

WorkflowSource = Union[Mapping[str, Any], str, "os.PathLike[str]"]
"""A workflow: a dict, the text of a YAML or JSON document, or a file's path."""

TERMINAL = frozenset({"completed", "failed", "cancelled"})
"""The statuses a run ends in."""

USER_AGENT = "baton-python/0.1.0"

STREAM_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
"""An event stream's: the server sends a comment every 15 s when idle."""

# Transport errors after which a call that is safe to repeat is tried again.
RETRYABLE_TRANSPORT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.RemoteProtocolError,
    httpx.WriteError,
    httpx.PoolTimeout,
)


@dataclass
class Request:
    """One HTTP call: `idempotent` says whether repeating it is harmless."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    body: bytes | None = None
    content_type: str = "application/json"
    idempotent: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    """How calls that are safe to repeat are tried again after a transport
    error or a 503: `attempts` in all, waits growing from `initial` to at most
    `maximum` seconds, each with up to half of it added at random (jitter);
    a server's `Retry-After` is honoured up to `maximum`."""

    attempts: int = 5
    initial: float = 0.1
    maximum: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """How long to wait before attempt number `attempt + 1` (from 1)."""
        if retry_after is not None:
            return min(retry_after, self.maximum)
        base = min(self.initial * 2.0 ** (attempt - 1), self.maximum)
        return base + random.uniform(0, base / 2)


def dumps(value: JSON) -> bytes:
    """`value` as compact JSON: by orjson when it is installed (`pip install
    baton-sdk[fast]`, about eight times faster on large batches), else by the
    standard library."""
    if orjson is not None:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes) -> Any:
    """JSON text's value, by orjson when it is installed."""
    if orjson is not None:
        return orjson.loads(data)
    return json.loads(data)


def answer(response: httpx.Response) -> Any:
    """A successful answer's JSON (None for an empty body), or the typed
    exception of a failed one."""
    raise_for(response)
    return loads(response.content) if response.content else None


def raise_for(response: httpx.Response) -> None:
    """Raises the typed exception of a failed answer."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise api_error(
        response.status_code,
        body,
        response.headers.get("x-request-id"),
        response.headers.get("retry-after"),
    )


def should_retry(
    request: Request, error: BaseException, attempt: int, retry: Retry
) -> float | None:
    """The wait before trying `request` again after `error`, or None when it
    must not be tried again."""
    if not request.idempotent or attempt >= retry.attempts:
        return None
    if isinstance(error, (Unavailable, RateLimited)):
        return retry.delay(attempt, error.retry_after)
    if isinstance(error, RETRYABLE_TRANSPORT):
        return retry.delay(attempt)
    return None


def transport_error(request: Request, error: Exception) -> TransportError:
    return TransportError(f"{request.method} {request.path}: {error}")


def headers(token: str | None) -> dict[str, str]:
    out = {"user-agent": USER_AGENT, "accept": "application/json"}
    if token:
        out["authorization"] = f"Bearer {token}"
    return out


def workflow_body(source: WorkflowSource) -> tuple[bytes, str]:
    """The body and content type that post `source` as a workflow."""
    if isinstance(source, Mapping):
        return dumps(dict(source)), "application/json"
    if isinstance(source, os.PathLike):
        path = os.fspath(source)
        with open(path, "rb") as f:
            data = f.read()
        yaml = path.endswith((".yaml", ".yml"))
        return data, "application/yaml" if yaml else "application/json"
    if isinstance(source, str):
        text = source.lstrip()
        json_text = text.startswith("{")
        return source.encode(), "application/json" if json_text else "application/yaml"
    raise TypeError(
        "a workflow is a dict, the text of a document, or a pathlib.Path "
        f"to a file, not {type(source).__name__}"
    )


def execute_body(
    input: JSON,
    timeout: str | float | None,
    retry_policy: Mapping[str, Any] | None,
    max_concurrency: int | None,
) -> bytes:
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if retry_policy is not None:
        options["retry_policy"] = dict(retry_policy)
    if max_concurrency is not None:
        options["resource_constraints"] = {"max_concurrency": max_concurrency}
    body: dict[str, Any] = {"input_data": input}
    if options:
        body["execution_options"] = options
    return dumps(body)


def page_params(limit: int | None, cursor: str | None, **filters: Any) -> dict[str, Any]:
    params = {k: v for k, v in filters.items() if v is not None}
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return params


def event_batches(
    events: Iterable[dict[str, Any]], batch_size: int
) -> Iterator[list[dict[str, Any]]]:
    """`events` in batches of at most `batch_size`. An event without an `id`
    is given one in place (32 random hex digits, as pymongo's `insert_many`
    gives documents their `_id`), so that a batch sent again after a broken
    connection is deduplicated by the server rather than published twice,
    and so that the caller can see each event's id."""
    it = iter(events)
    while True:
        batch = list(islice(it, batch_size))
        if not batch:
            return
        digits = os.urandom(16 * len(batch)).hex()
        for event, i in zip(batch, range(0, len(digits), 32)):
            event.setdefault("id", digits[i : i + 32])
        yield batch


def publish_request(batch: list[dict[str, Any]], topic: str | None) -> Request:
    return Request(
        "POST",
        "/api/v1/events",
        params={"topic": topic} if topic else None,
        body=dumps({"events": batch}),
        idempotent=True,
    )


def segment(value: str) -> str:
    """`value` as one segment of a URL's path."""
    return quote(value, safe="")


def execution(execution_id: str) -> str:
    return f"/api/v1/executions/{segment(execution_id)}"


def task(lease: str) -> str:
    return f"/api/v1/tasks/{segment(lease)}"


def group(topic: str, name: str) -> str:
    return f"/api/v1/topics/{segment(topic)}/groups/{segment(name)}"


def long(wait_ms: int) -> float:
    """The read timeout of a long poll that may wait `wait_ms`."""
    return wait_ms / 1000 + 30


def poll_request(topic: str, name: str, member: str, max: int, wait_ms: int) -> Request:
    params = {"member": member, "max": max, "wait_ms": wait_ms}
    return Request("GET", f"{group(topic, name)}/poll", params=params)


def ack_request(topic: str, name: str, deliveries: Iterable[Delivery]) -> Request | None:
    offsets = [{"partition": d.partition, "offset": d.offset} for d in deliveries]
    if not offsets:
        return None
    body = dumps({"offsets": offsets})
    return Request("POST", f"{group(topic, name)}/ack", body=body, idempotent=True)


def lease_request(
    agent: str, max: int, wait_ms: int, lease_ms: int, worker: str | None = None
) -> Request:
    fields: dict[str, Any] = {"max": max, "wait_ms": wait_ms, "lease_ms": lease_ms}
    if worker is not None:
        fields["worker"] = worker
    body = dumps(fields)
    return Request("POST", f"/api/v1/agents/{segment(agent)}/poll", body=body)


@dataclass(frozen=True)
class Delivery:
    """An event delivered to a consumer group; `deliveries` counts how often
    (more than 1 after a visibility timeout passed without an ack)."""

    topic: str
    partition: int
    offset: int
    id: str
    type: str
    key: str | None
    payload: Any
    headers: dict[str, str]
    timestamp_ms: int
    deliveries: int

    @classmethod
    def from_json(cls, topic: str, e: Mapping[str, Any]) -> Delivery:
        return cls(
            topic=topic,
            partition=int(e["partition"]),
            offset=int(e["offset"]),
            id=str(e.get("id", "")),
            type=str(e.get("type", "")),
            key=e.get("key"),
            payload=e.get("payload"),
            headers=dict(e.get("headers") or {}),
            timestamp_ms=int(e.get("timestamp_ms", 0)),
            deliveries=int(e.get("deliveries", 1)),
        )


class Backoff:
    """The pauses of a wait: from `interval` growing to 1 s, never past the
    deadline; `next()` is None once it has passed."""

    def __init__(self, timeout: float | None, interval: float) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interval = interval

    def next(self) -> float | None:
        pause = self.interval
        self.interval = min(self.interval * 1.5, 1.0)
        if self.deadline is None:
            return pause
        left = self.deadline - time.monotonic()
        return None if left <= 0 else min(pause, left)


class Stream:
    """Where a run's event stream is, so that it continues after the last
    event seen (`Last-Event-ID`), and when to open it again."""

    def __init__(self, execution_id: str, last_event_id: int | None, retry: Retry) -> None:
        self.path = f"{execution(execution_id)}/events"
        self.last = last_event_id
        self.retry = retry
        self.failures = 0

    def headers(self) -> dict[str, str]:
        out = {"accept": "text/event-stream"}
        if self.last is not None:
            out["last-event-id"] = str(self.last)
        return out

    def seen(self, event: RunEvent) -> RunEvent:
        self.failures = 0
        if event.offset is not None:
            self.last = event.offset
        return event

    def ended(self) -> float:
        """The wait before opening again a stream that ended before the run
        did (the server stopping): raises once `retry` gives up."""
        self.failures += 1
        if self.failures >= self.retry.attempts:
            raise TransportError(f"GET {self.path}: the stream kept ending before the run did")
        return self.retry.delay(self.failures)

    def dropped(self, error: Exception) -> float:
        """The wait before opening again a stream that broke with `error`:
        raises it when it is not worth another try."""
        self.failures += 1
        request = Request("GET", self.path, idempotent=True)
        wait = should_retry(request, error, self.failures, self.retry)
        if wait is None:
            if isinstance(error, httpx.TransportError):
                raise transport_error(request, error) from error
            raise error
        log.info("%s dropped (%s); opening it again in %.2fs", self.path, error, wait)
        return wait
