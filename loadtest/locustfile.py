"""Locust users for Baton's HTTP API (`baton serve`), for people who already use Locust.

The same routes and weights as `baton load` (crates/load):

* ``OrchestrationUser``: create a workflow (3), execute one and follow its
  status until it ends (2), read the status of the last execution (5), list
  workflows (1). The run's end-to-end time is reported as a ``RUN`` entry
  named ``execute → completed``.
* ``HighThroughputUser``: publish a batch of events (``BATON_BATCH`` events,
  default 1000, or a range such as ``1000..10000``).

Every response is checked (status code and body shape); anything else is a
failure. Headless, against a server on this machine::

    baton serve --bind 127.0.0.1:8080 --data-dir /tmp/baton-data &
    locust -f loadtest/locustfile.py --headless -u 100 -r 10 -t 5m \\
        --host http://127.0.0.1:8080 --csv out --exit-code-on-error 1

Environment: ``BATON_TASKS`` (tasks per generated workflow, default 20),
``BATON_BATCH``, ``BATON_PAYLOAD_BYTES`` (default 100), ``BATON_SEED``
(default 0), ``BATON_POLL_MS`` (status polling while following a run,
default 20).

Locust users are closed loops, like ``baton load``'s: a user sends its next
request once the previous one answered. Locust's Python client tops out far
below the server on this kind of machine; use ``baton load`` for throughput
figures and this file to check the API with tools you already have.
"""

import itertools
import json
import os
import random
import time

from locust import HttpUser, constant, task

TASKS = int(os.environ.get("BATON_TASKS", "20"))
PAYLOAD_BYTES = int(os.environ.get("BATON_PAYLOAD_BYTES", "100"))
SEED = int(os.environ.get("BATON_SEED", "0"))
POLL_S = int(os.environ.get("BATON_POLL_MS", "20")) / 1000.0
RUN_TIMEOUT_S = 60.0

_batch = os.environ.get("BATON_BATCH", "1000")
BATCH_MIN, _, BATCH_MAX = _batch.partition("..")
BATCH_MIN = int(BATCH_MIN)
BATCH_MAX = int(BATCH_MAX or BATCH_MIN)

_user_ids = itertools.count()


def generated_workflow(rng, n, index):
    """A random DAG: each task depends on up to 2 earlier tasks (noop agents)."""
    tasks = []
    for i in range(n):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(min(i, 2))}) if i else []
        tasks.append({"id": f"t{i}", "depends_on": deps})
    return {"name": f"locust-{index}", "version": "1.0", "tasks": tasks}


def check_json(response, status, *fields):
    """Marks the response failed unless it has `status` and a JSON object with `fields`."""
    if response.status_code != status:
        response.failure(f"status {response.status_code} (expected {status}): {response.text[:200]}")
        return None
    try:
        body = response.json()
    except ValueError:
        response.failure("body check: not JSON")
        return None
    missing = [f for f in fields if not isinstance(body, dict) or f not in body]
    if missing:
        response.failure(f"body check: no {', '.join(missing)}")
        return None
    response.success()
    return body


class OrchestrationUser(HttpUser):
    """The seed's orchestration user: workflows, executions, status, lists."""

    wait_time = constant(0)

    def on_start(self):
        self.rng = random.Random(SEED * 1_000_003 + next(_user_ids))
        self.workflow_ids = []
        self.last_execution = None

    @task(3)
    def create_workflow(self):
        body = generated_workflow(self.rng, TASKS, self.rng.randrange(16))
        with self.client.post(
            "/api/v1/workflows", json=body, name="/api/v1/workflows", catch_response=True
        ) as r:
            created = check_json(r, 201, "id", "plan")
        if created:
            self.workflow_ids = (self.workflow_ids + [created["id"]])[-16:]
            return created["id"]
        return None

    @task(2)
    def execute_workflow(self):
        workflow = self.rng.choice(self.workflow_ids) if self.workflow_ids else self.create_workflow()
        if workflow is None:
            return
        started = time.perf_counter()
        with self.client.post(
            f"/api/v1/workflows/{workflow}/execute",
            json={"input_data": {"user": "locust"}},
            name="/api/v1/workflows/{id}/execute",
            catch_response=True,
        ) as r:
            accepted = check_json(r, 202, "execution_id", "status")
        if not accepted:
            return
        execution = accepted["execution_id"]
        self.last_execution = execution
        while time.perf_counter() - started < RUN_TIMEOUT_S:
            time.sleep(POLL_S)
            with self.client.get(
                f"/api/v1/executions/{execution}", name="/api/v1/executions/{id}", catch_response=True
            ) as r:
                status = check_json(r, 200, "status", "performance_metrics")
            if status is None:
                return
            if status["status"] in ("completed", "failed", "cancelled"):
                self.environment.events.request.fire(
                    request_type="RUN",
                    name="execute → completed",
                    response_time=(time.perf_counter() - started) * 1000.0,
                    response_length=0,
                    exception=None if status["status"] == "completed" else Exception(f"run {status['status']}"),
                    context={},
                )
                return
        self.environment.events.request.fire(
            request_type="RUN",
            name="execute → completed",
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0,
            exception=Exception(f"run did not end within {RUN_TIMEOUT_S} s"),
            context={},
        )

    @task(5)
    def check_status(self):
        if self.last_execution is None:
            # Nothing to read yet: start a run first (as `baton load` does).
            self.execute_workflow()
            return
        with self.client.get(
            f"/api/v1/executions/{self.last_execution}", name="/api/v1/executions/{id}", catch_response=True
        ) as r:
            check_json(r, 200, "status", "task_counts")

    @task(1)
    def list_workflows(self):
        with self.client.get(
            "/api/v1/workflows?limit=20", name="/api/v1/workflows", catch_response=True
        ) as r:
            check_json(r, 200, "items")


class HighThroughputUser(HttpUser):
    """The seed's high-throughput user: event batches to POST /api/v1/events."""

    wait_time = constant(0)

    def on_start(self):
        self.rng = random.Random(SEED * 1_000_003 + next(_user_ids))
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        self.bodies = []
        for _ in range(4 if BATCH_MIN == BATCH_MAX else 16):
            n = self.rng.randint(BATCH_MIN, BATCH_MAX)
            events = [
                {
                    "type": "load.event",
                    "key": f"k{self.rng.randrange(1024)}",
                    "payload": "".join(self.rng.choice(alphabet) for _ in range(PAYLOAD_BYTES)),
                }
                for _ in range(n)
            ]
            self.bodies.append((n, json.dumps({"events": events})))

    @task
    def publish_events(self):
        n, body = self.rng.choice(self.bodies)
        with self.client.post(
            "/api/v1/events?topic=load",
            data=body,
            headers={"content-type": "application/json"},
            name="/api/v1/events",
            catch_response=True,
        ) as r:
            published = check_json(r, 200, "offsets")
            if published is not None and len(published["offsets"]) != n:
                r.failure(f"body check: {len(published['offsets'])} offsets for {n} events")
