"""Every method of the sync client against a real server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import baton
from baton import Client

from .conftest import REPO, Server

DIAMOND: dict[str, Any] = {
    "name": "diamond",
    "tasks": [
        {"id": "a"},
        {"id": "b", "depends_on": ["a"]},
        {"id": "c", "depends_on": ["a"]},
        {"id": "d", "depends_on": ["b", "c"]},
    ],
}

# Waits for an event nobody publishes until the test does: a run that stays
# executing for as long as a test needs.
WAITING = """
name: waiting
tasks:
  - id: first
  - id: gate
    depends_on: [first]
    wait_for: {type: go, key: gate}
  - id: last
    depends_on: [gate]
"""


@pytest.fixture
def client(server: Server) -> Any:
    with Client(server.url) as c:
        yield c


def test_workflows_from_a_dict_text_and_files(client: Client, tmp_path: Path) -> None:
    created = client.create_workflow(DIAMOND)
    assert created["name"] == "diamond" and created["version"] == 1
    assert created["plan"]["critical_path"] == ["a", "b", "d"]
    assert client.create_workflow(json.dumps(DIAMOND))["version"] == 2
    assert client.create_workflow(WAITING)["name"] == "waiting"
    path = tmp_path / "flow.yaml"
    path.write_text(WAITING)
    assert client.create_workflow(path)["version"] == 2
    example = client.create_workflow(REPO / "examples" / "fan_out.yaml")
    assert example["plan"]["tasks"] > 0

    got = client.get_workflow(created["id"])
    assert got["document"]["tasks"][3]["depends_on"] == ["b", "c"]
    assert client.plan(created["id"])["stages"] == [["a"], ["b", "c"], ["d"]]

    first = client.list_workflows(limit=2)
    assert len(first["items"]) == 2 and first["next_cursor"]
    everything = list(client.iter_workflows(page_size=2))
    assert len(everything) == 5
    assert everything[0]["id"] == example["id"]  # newest first


def test_an_invalid_workflow_raises_every_error_located(client: Client) -> None:
    text = "name: broken\ntasks:\n  - id: a\n  - id: b\n    depends_on: [bb]\n  - id: a\n"
    with pytest.raises(baton.InvalidWorkflow) as raised:
        client.create_workflow(text)
    error = raised.value
    assert error.status == 422 and error.code == "invalid-workflow"
    assert len(error.errors) == 2, error.errors
    unknown = next(e for e in error.errors if e.code == "unknown-dependency")
    assert unknown.path == "$.tasks[1].depends_on[0]"
    assert unknown.line == 5 and unknown.hint
    assert "bb" in str(unknown) and "line 5" in str(unknown)
    assert error.request_id


def test_typed_errors_for_each_problem(client: Client) -> None:
    with pytest.raises(baton.NotFound) as missing:
        client.get_execution("0000000000000000")
    assert missing.value.code == "not-found" and missing.value.status == 404
    with pytest.raises(baton.InvalidRequest):
        client.list_executions(status="sleeping")
    with pytest.raises(baton.Forbidden) as forbidden:
        client.create_workflow(
            {
                "agents": {"sh": {"type": "command", "command": ["id"]}},
                "tasks": [{"id": "a", "agent": "sh"}],
            }
        )
    assert forbidden.value.code == "agent-not-allowed" and forbidden.value.errors
    with pytest.raises(baton.Forbidden):
        client.publish([{"type": "forged"}], topic="baton.runs")
    retry = baton.Retry(attempts=2, initial=0.01)
    with pytest.raises(baton.TransportError), Client("http://127.0.0.1:9", retry=retry) as away:
        away.health()


def test_runs_execute_wait_list_and_instances(client: Client) -> None:
    wf = client.create_workflow(DIAMOND)
    run = client.execute(
        wf["id"], {"q": "rust"}, timeout="1m", max_concurrency=2, retry_policy={"max_attempts": 2}
    )
    assert run["status"] in ("executing", "planning") and run["workflow_id"] == wf["id"]
    done = client.wait(run["execution_id"], timeout=30)
    assert done["status"] == "completed"
    assert done["task_counts"]["succeeded"] == 4

    listed = client.list_executions(status="completed", workflow="diamond")
    assert [r["execution_id"] for r in listed["items"]] == [run["execution_id"]]
    assert list(client.iter_executions(status="failed")) == []
    assert client.health() == {"status": "ok"} and client.ready()

    fan = client.create_workflow(REPO / "examples" / "fan_out.yaml")
    fanned = client.wait(client.execute(fan["id"])["execution_id"], timeout=30)
    assert fanned["status"] == "completed", fanned
    task = next(t for t in fanned["tasks"] if t.get("items"))
    page = client.instances(fanned["execution_id"], task["id"], limit=2)
    assert page["total"] == task["items"]["total"] and len(page["items"]) == 2
    timed = client.plan(fan["id"], schedule=True)["schedule"]
    assert [t["id"] for t in timed] == ["split", "summarize", "merge"]
    assert all(t["slack"] == 0 for t in timed)
    planned = client.execution_workflow(fanned["execution_id"])
    assert planned["document"]["name"] == "fan_out"
    assert [t for stage in planned["plan"]["stages"] for t in stage] == [
        "split",
        "summarize",
        "merge",
    ]


def test_pause_resume_cancel_rerun_and_wait_timeout(client: Client) -> None:
    wf = client.create_workflow(WAITING)
    run = client.execute(wf["id"])["execution_id"]
    with pytest.raises(baton.WaitTimeout) as late:
        client.wait(run, timeout=0.3)
    assert late.value.status == "executing"
    assert client.pause(run)["action"] == "pause"
    assert client.get_execution(run)["status"] == "paused"
    assert client.resume(run)["action"] == "resume"
    assert client.cancel(run)["action"] == "cancel"
    assert client.wait(run, timeout=30)["status"] == "cancelled"
    with pytest.raises(baton.Conflict) as conflict:
        client.cancel(run)
    assert conflict.value.code == "conflict"

    again = client.rerun(run, "gate")
    assert client.get_execution(again["execution_id"])["rerun_of"] == run
    client.publish([{"type": "go", "key": "gate"}])
    assert client.wait(again["execution_id"], timeout=30)["status"] == "completed"


def test_the_event_stream_ends_with_the_run(client: Client) -> None:
    wf = client.create_workflow(DIAMOND)
    run = client.execute(wf["id"])["execution_id"]
    events = list(client.events(run))
    assert events[0].type == "baton.run" and events[-1].final
    assert events[-1].payload["status"] == "completed"
    offsets = [e.offset for e in events if e.offset is not None]
    assert len(offsets) == len(events)
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    transitions = [e for e in events if e.type == "baton.transitions"]
    assert transitions
    # Resuming after an offset gives what follows it, and only that.
    rest = list(client.events(run, last_event_id=events[0].offset))
    assert [e.offset for e in rest] == offsets[1:]


def test_publish_in_chunks_and_consume_with_and_without_acks(client: Client) -> None:
    events = [{"type": "order", "key": f"k{i % 7}", "payload": {"n": i}} for i in range(2500)]
    offsets = client.publish(events, topic="orders", batch_size=1000)
    assert len(offsets) == 2500

    # A publish sent again with the same ids is deduplicated, not repeated.
    again = [dict(e, id=f"{i:032x}") for i, e in enumerate(events[:10])]
    first = client.publish(again, topic="orders")
    assert client.publish(again, topic="orders") == first

    seen: dict[int, int] = {}
    for delivery in client.consume("orders", "counters", max=500, wait_ms=200):
        seen[delivery.payload["n"]] = delivery.deliveries
        if len(seen) == 2500:
            break
    assert sorted(seen) == list(range(2500))

    polled = client.poll("orders", "manual", max=5, wait_ms=500)
    assert len(polled) == 5 and all(p.topic == "orders" for p in polled)
    assert client.ack("orders", "manual", polled) == 5
    assert client.ack("orders", "manual", []) == 0


def test_topics_reading_and_redriving_dead_letters(tmp_path: Path) -> None:
    """Dead letters (after one unacknowledged delivery, as configured) are
    read outside any group and moved back to their topic, once."""
    server = Server(tmp_path / "data", config="visibility_timeout_ms = 100\nmax_deliveries = 1\n")
    try:
        with Client(server.url) as client:
            client.publish(
                [{"type": "order", "key": "k", "payload": {"n": i}} for i in range(3)],
                topic="orders",
            )
            assert len(client.poll("orders", "billing", max=10, wait_ms=500)) == 3
            held = client.pending("orders", "billing")["pending"]
            assert [p["member"] for p in held] == ["python"] * 3
            time.sleep(0.3)
            assert client.poll("orders", "billing", max=10, wait_ms=0) == []
            topics = {t["name"]: t for t in client.topics()["topics"]}
            assert topics["orders.dlq"]["events"] == 3
            partition = next(p["partition"] for p in topics["orders.dlq"]["partitions"] if p["end"])
            letters = client.read_events("orders.dlq", partition=partition)["events"]
            assert letters and all(e["headers"]["dlq.group"] == "billing" for e in letters)

            assert client.redrive("orders", max=2) == {
                "topic": "orders",
                "moved": 2,
                "remaining": 1,
            }
            assert client.redrive("orders") == {"topic": "orders", "moved": 1, "remaining": 0}
            back = client.poll("orders", "billing", max=10, wait_ms=500)
            assert sorted(d.payload["n"] for d in back) == [0, 1, 2]
            with pytest.raises(baton.InvalidRequest):
                client.redrive("orders", max=0)
    finally:
        server.stop()
