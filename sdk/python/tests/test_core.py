"""The parts that need no server: batching, JSON, retries, SSE, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

import baton
from baton import _core
from baton._sse import SseParser
from baton.errors import api_error


def test_batches_give_ids_in_place_and_keep_given_ones() -> None:
    events: list[dict[str, Any]] = [{"type": "t", "n": i} for i in range(25)]
    events[3]["id"] = "f" * 32
    batches = list(_core.event_batches(events, 10))
    assert [len(b) for b in batches] == [10, 10, 5]
    ids = [e["id"] for e in events]
    assert ids[3] == "f" * 32
    assert len(set(ids)) == 25
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert [e["n"] for b in batches for e in b] == list(range(25))
    assert list(_core.event_batches([], 10)) == []


@pytest.mark.parametrize("fast", [True, False])
def test_json_with_and_without_orjson(monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    if not fast:
        monkeypatch.setattr(_core, "orjson", None)
    value = {"a": [1, 2.5, None, True], "é": "ü", "nested": {"k": "v"}}
    text = _core.dumps(value)
    assert b" " not in text
    assert json.loads(text) == value
    assert _core.loads(text) == value


def test_retry_waits_grow_with_jitter_and_honour_retry_after() -> None:
    retry = baton.Retry(attempts=4, initial=0.1, maximum=1.0)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.0)]:
        wait = retry.delay(attempt)
        assert base <= wait <= base * 1.5
    assert retry.delay(1, retry_after=30) == 1.0
    request = _core.Request("POST", "/x", idempotent=False)
    down = api_error(503, {"code": "unavailable"}, None, "2")
    assert _core.should_retry(request, down, 1, retry) is None
    request.idempotent = True
    assert _core.should_retry(request, down, 1, retry) == 1.0
    assert _core.should_retry(request, down, 4, retry) is None
    limited = api_error(429, {"code": "rate-limited"}, None, "1")
    assert isinstance(limited, baton.RateLimited)
    assert _core.should_retry(request, limited, 1, retry) == 1.0
    missing = api_error(404, {"code": "not-found"}, None, None)
    assert _core.should_retry(request, missing, 1, retry) is None


def test_server_sent_events_are_parsed_line_by_line() -> None:
    parser = SseParser()
    lines = [
        ": keep-alive",
        "",
        "id: 7",
        "event: baton.run",
        'data: {"payload":',
        'data: {"status": "completed"}}',
        "",
    ]
    out = [parser.feed(line) for line in lines]
    assert out[:-1] == [None] * 6
    event = out[-1]
    assert event is not None and event.offset == 7 and event.type == "baton.run"
    assert event.payload == {"status": "completed"} and event.final


def test_problems_become_typed_errors() -> None:
    invalid = api_error(
        422,
        {
            "code": "invalid-workflow",
            "detail": "1 error",
            "request_id": "abc",
            "errors": [
                {"code": "c", "message": "m", "path": "$.x", "location": {"line": 2, "column": 3}}
            ],
        },
        "ignored",
        None,
    )
    assert isinstance(invalid, baton.InvalidWorkflow) and invalid.request_id == "abc"
    assert invalid.errors[0].line == 2 and str(invalid.errors[0]) == "$.x (line 2, column 3): m"
    assert isinstance(api_error(422, {"code": "invalid-request"}, None, None), baton.InvalidRequest)
    limited = api_error(429, None, "rid", "1.5")
    assert isinstance(limited, baton.RateLimited) and limited.retry_after == 1.5
    assert limited.code == "http-429" and limited.request_id == "rid"
    assert isinstance(api_error(502, "not json", None, "soon"), baton.ServerError)
