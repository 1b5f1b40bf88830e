"""The decision protocol (docs/patterns.md) as functions: what a worker's
handler returns to decide what the run does next. Each returns the JSON
object the engine reads; returning anything else is an answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Union

Call = Union[tuple[str, Any], Mapping[str, Any]]
"""A call a supervisor delegates: `(agent, input)` or `{"agent", "input"}`."""


def finish(result: Any) -> dict[str, Any]:
    """Answer: the task's output is `result` (ends a pattern's loop)."""
    return {"finish": result}


def handoff(to: str | Iterable[str], input: Any = None) -> dict[str, Any]:
    """handoff, swarm: give control to the agent `to` with `input`; a swarm
    may hand off to several agents at once (a list)."""
    if isinstance(to, str):
        return {"handoff": {"to": to, "input": input}}
    return {"handoff": [{"to": agent, "input": input} for agent in to]}


def delegate(*calls: Call) -> dict[str, Any]:
    """supervisor: call these workers next, side by side:
    `delegate(("researcher", {"q": "rust"}), ("analyst", None))`."""
    out = []
    for call in calls:
        if isinstance(call, tuple):
            agent, given = call
            out.append({"agent": agent, "input": given})
        else:
            out.append(dict(call))
    if not out:
        raise ValueError("delegate() needs at least one call")
    return {"delegate": out}


def send(*messages: tuple[str, Any]) -> dict[str, Any]:
    """network: message these agents (each message is a turn of the next
    round): `send(("buyer", {"offer": 90}))`."""
    if not messages:
        raise ValueError("send() needs at least one message")
    return {"send": [{"to": to, "message": message} for to, message in messages]}


def route(name: str, **output: Any) -> dict[str, Any]:
    """A task with `routes`: take the route `name`; the rest of the output
    (`route("approve", score=0.9)`) goes with it."""
    return {"route": name, **output}


def write_context(
    set: Mapping[str, Any],
    expect: Mapping[str, int] | None = None,
    handoff_to: str | Iterable[str] | None = None,
    input: Any = None,
) -> dict[str, Any]:
    """swarm: write the blackboard's keys `set`, only if the keys in `expect`
    are still at those versions (compare-and-set), and hand off beside it
    when `handoff_to` is given."""
    decision: dict[str, Any] = {"context": {"set": dict(set), "expect": dict(expect or {})}}
    if handoff_to is not None:
        decision.update(handoff(handoff_to, input))
    return decision
