"""The routes whose answer is a JSON object, written once for both clients:
`Client` answers them with the object, `AsyncClient` with an awaitable of
it (the class parameter `R`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from . import _core
from ._core import JSON, Request, WorkflowSource

R = TypeVar("R")


class Operations(Generic[R]):
    def _object(self, request: Request) -> R:
        """Sends `request`; its answer's JSON object."""
        raise NotImplementedError

    def _get(self, path: str, params: dict[str, Any] | None = None) -> R:
        return self._object(Request("GET", path, params=params, idempotent=True))

    def _post(self, path: str, body: JSON = None, *, idempotent: bool = False) -> R:
        data = _core.dumps(body) if body is not None else b""
        return self._object(Request("POST", path, body=data, idempotent=idempotent))

    # -- health ----------------------------------------------------------

    def health(self) -> R:
        """`GET /healthz`: `{"status": "ok"}` while the server is up."""
        return self._get("/healthz")

    # -- workflows -------------------------------------------------------

    def create_workflow(self, source: WorkflowSource) -> R:
        """Posts a workflow: a dict, a document's text (YAML or JSON) or a
        `pathlib.Path`. Answers its `id`, `version` and `plan` figures;
        raises `InvalidWorkflow` with every error located (`.errors`)."""
        body, content_type = _core.workflow_body(source)
        return self._object(
            Request("POST", "/api/v1/workflows", body=body, content_type=content_type)
        )

    def list_workflows(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        """One page, newest first: `{"items": [...], "next_cursor": ...}`."""
        return self._get("/api/v1/workflows", _core.page_params(limit, cursor))

    def get_workflow(self, workflow_id: str) -> R:
        """The workflow with its `document` (as JSON)."""
        return self._get(f"/api/v1/workflows/{_core.segment(workflow_id)}")

    def plan(self, workflow_id: str, *, schedule: bool = False) -> R:
        """`{"summary", "stages": [[task, ...], ...], "redundant_edges"}`, and
        with `schedule` each task's earliest and latest start and slack."""
        params = {"schedule": "true"} if schedule else None
        return self._get(f"/api/v1/workflows/{_core.segment(workflow_id)}/plan", params)

    # -- executions ------------------------------------------------------

    def execute(
        self,
        workflow_id: str,
        input: JSON = None,
        *,
        timeout: str | float | None = None,
        retry_policy: Mapping[str, Any] | None = None,
        max_concurrency: int | None = None,
    ) -> R:
        """Starts a run with `input` as its input; answers `{"execution_id",
        "status", "workflow_id"}` once the run is recorded. `timeout` ("5m",
        or seconds) cancels the run if it has not ended by then;
        `retry_policy` applies to tasks that have none; `max_concurrency`
        caps every agent's concurrency."""
        body = _core.execute_body(input, timeout, retry_policy, max_concurrency)
        path = f"/api/v1/workflows/{_core.segment(workflow_id)}/execute"
        return self._object(Request("POST", path, body=body))

    def get_execution(self, execution_id: str) -> R:
        """The run's status, tasks and figures."""
        return self._get(_core.execution(execution_id))

    def list_executions(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> R:
        """One page of runs, newest first: `status`, `workflow` (its name)
        and creation time (`since_ms` inclusive, `until_ms` exclusive) filter
        them."""
        params = _core.page_params(
            limit,
            cursor,
            status=status,
            workflow=workflow,
            since_ms=since_ms,
            until_ms=until_ms,
        )
        return self._get("/api/v1/executions", params)

    def execution_workflow(self, execution_id: str) -> R:
        """`{"document", "plan"}`: the workflow an execution runs and its plan
        (a child execution's is its parent's sub-workflow)."""
        return self._get(f"{_core.execution(execution_id)}/workflow")

    def pause(self, execution_id: str) -> R:
        """Nothing new is dispatched; tasks in flight finish. `Conflict` when
        the run cannot be paused (it ended, say)."""
        return self._post(f"{_core.execution(execution_id)}/pause")

    def resume(self, execution_id: str) -> R:
        """Dispatching starts again after a pause."""
        return self._post(f"{_core.execution(execution_id)}/resume")

    def cancel(self, execution_id: str) -> R:
        """Stops the tasks in flight; completed tasks' compensations run."""
        return self._post(f"{_core.execution(execution_id)}/cancel")

    def rerun(self, execution_id: str, from_task: str) -> R:
        """A new run of a finished one that reuses what succeeded, except
        `from_task` and everything downstream of it."""
        return self._post(f"{_core.execution(execution_id)}/rerun", {"from": from_task})

    def instances(self, execution_id: str, task: str, *, offset: int = 0, limit: int = 100) -> R:
        """A page of a fan-out's items, or a loop's or pattern's iterations:
        pass `next_offset` back as `offset` for the next."""
        path = f"{_core.execution(execution_id)}/tasks/{_core.segment(task)}/instances"
        return self._get(path, {"offset": offset, "limit": limit})

    # -- what the server is doing now ---------------------------------------

    def agents(self) -> R:
        """The agents (load, concurrency, breaker), the remote workers seen
        in the last minutes with their leases, and the instances when there
        are several."""
        return self._get("/api/v1/agents")

    def stats(self) -> R:
        """`{"interval_ms", "samples": [...]}`: the server's figures sampled
        over the last minutes, oldest first."""
        return self._get("/api/v1/stats")

    # -- what the event log holds -------------------------------------------

    def topics(self) -> R:
        """`{"topics": [...]}`: every topic, its partitions, and each consumer
        group's `lag`, `pending` and members."""
        return self._get("/api/v1/topics")

    def read_events(
        self, topic: str, *, partition: int = 0, from_offset: int = 0, max: int = 100
    ) -> R:
        """Up to `max` retained events of one partition from `from_offset`,
        outside any group (nothing is delivered); `next_from` is where the
        next page starts."""
        params = {"partition": partition, "from": from_offset, "max": max}
        return self._get(f"/api/v1/topics/{_core.segment(topic)}/events", params)

    def pending(self, topic: str, group: str, *, limit: int = 100) -> R:
        """`{"pending": [...]}`: the group's delivered, unacknowledged events,
        oldest delivery first: which member holds each, since when, how often
        delivered and when another member may take it."""
        path = f"/api/v1/topics/{_core.segment(topic)}/groups/{_core.segment(group)}/pending"
        return self._get(path, {"limit": limit})

    def redrive(self, topic: str, *, max: int = 10_000) -> R:
        """Moves the oldest `max` dead letters of `topic` (they live in
        `topic.dlq`) back to `topic`: `{"topic", "moved", "remaining"}`. Safe
        to repeat: a letter is moved once."""
        path = f"/api/v1/topics/{_core.segment(topic + '.dlq')}/redrive"
        return self._post(path, {"max": max}, idempotent=True)

    # -- reports of a leased call (what `Worker` sends) --------------------

    def complete_task(self, lease: str, output: JSON) -> R:
        """The call's output. `Conflict` when the lease expired (the call went
        back to the pool and this result is not taken)."""
        return self._post(f"{_core.task(lease)}/complete", {"output": output})

    def fail_task(self, lease: str, message: str, *, retryable: bool = True) -> R:
        """The call failed; retried per the task's `retry` when `retryable`."""
        body = {"message": message, "retryable": retryable}
        return self._post(f"{_core.task(lease)}/fail", body)

    def heartbeat_task(self, lease: str, *, lease_ms: int = 30_000) -> R:
        """Extends the lease to `lease_ms` from now."""
        body = {"lease_ms": lease_ms}
        return self._post(f"{_core.task(lease)}/heartbeat", body, idempotent=True)

    def report_tasks(self, reports: list[dict[str, Any]]) -> R:
        """Up to 1,000 reports in one request, each a lease `id` and one of
        `complete` (`{"output"}`), `fail` (`{"message", "retryable"}`) and
        `heartbeat` (`{"lease_ms"}`); answers `{"results": [{"id",
        "status"}]}` in order, `status` being `completed`, `failed`,
        `extended`, `expired` or `unknown`. Safe to repeat: a report that
        was applied answers `unknown` the second time."""
        body = _core.dumps({"reports": reports})
        return self._object(Request("POST", "/api/v1/tasks/report", body=body, idempotent=True))

    def report_progress(self, lease: str, progress: JSON) -> R:
        """What the call has so far, for the run's event stream (not
        durable, coalesced by the server)."""
        return self._post(f"{_core.task(lease)}/progress", {"progress": progress})
