"""Exceptions: every problem+json answer of the server becomes one of these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class BatonError(Exception):
    """The base of every exception this package raises."""


class TransportError(BatonError):
    """The server could not be reached, or the connection broke, and retrying
    (where that is safe) did not help."""


class WaitTimeout(BatonError):
    """A run did not end within the time `wait` was given."""

    def __init__(self, execution_id: str, timeout: float, status: str) -> None:
        super().__init__(f"execution {execution_id} is still {status} after {timeout:g} s")
        self.execution_id = execution_id
        self.timeout = timeout
        self.status = status


@dataclass(frozen=True)
class FieldError:
    """One error of a 422: what is wrong, and where."""

    code: str
    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where += f" (line {self.line}, column {self.column})"
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} (hint: {self.hint})" if self.hint else text

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> FieldError:
        location = item.get("location") or {}
        return cls(
            code=str(item.get("code", "")),
            message=str(item.get("message", "")),
            path=item.get("path"),
            line=location.get("line"),
            column=location.get("column"),
            hint=item.get("hint"),
        )


class ApiError(BatonError):
    """An answer of the server that is not a success: its status, its stable
    `code`, its `detail`, every located error of a 422 or 403, and the
    request id the server logged it under."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str = "",
        errors: list[FieldError] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        message = f"{status} {code}: {detail}"
        if request_id:
            message += f" (request {request_id})"
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.errors: list[FieldError] = errors or []
        self.request_id = request_id
        self.retry_after = retry_after
        self.body: dict[str, Any] = body or {}


class BadRequest(ApiError):
    """400: malformed JSON or query string."""


class Unauthorized(ApiError):
    """401: the bearer token is missing, wrong, revoked or expired."""


class Forbidden(ApiError):
    """403: the token lacks the operation's scope (`code` is
    `insufficient-scope` and `detail` names it), a server's own topic, or
    agents the server does not let callers define (`errors` names each)."""


class NotFound(ApiError):
    """404: no such route, workflow, execution, task or lease."""


class Conflict(ApiError):
    """409: the operation does not apply in the run's state, or a lease
    expired."""


class PayloadTooLarge(ApiError):
    """413: a body, batch or event over the server's limits."""


class UnsupportedMediaType(ApiError):
    """415: a body that is neither JSON nor YAML."""


class InvalidWorkflow(ApiError):
    """422 `invalid-workflow`: `errors` holds every error with its JSON path
    and line."""


class InvalidRequest(ApiError):
    """422 `invalid-request`: a body of the wrong shape, or agents the engine
    cannot run."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says when to try again."""


class Unavailable(ApiError):
    """503: the server is stopping, a run is changing instances, the event log
    stopped accepting writes, or a request timed out."""


class ServerError(ApiError):
    """500 and any other status this package does not name."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: Unavailable,
}


def api_error(
    status: int,
    body: Any,
    request_id: str | None,
    retry_after: str | None,
) -> ApiError:
    """The exception for a failed answer: its problem+json body when it has
    one, its status alone otherwise."""
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    code = str(problem.get("code") or f"http-{status}")
    detail = str(problem.get("detail") or problem.get("title") or "no detail")
    if status == 422:
        kind: type[ApiError] = InvalidWorkflow if code == "invalid-workflow" else InvalidRequest
    else:
        kind = _BY_STATUS.get(status, ServerError)
    errors = [FieldError.from_json(e) for e in problem.get("errors") or [] if isinstance(e, dict)]
    after: float | None = None
    if retry_after is not None:
        try:
            after = float(retry_after)
        except ValueError:
            after = None
    return kind(
        status,
        code,
        detail,
        title=str(problem.get("title", "")),
        errors=errors,
        request_id=problem.get("request_id") or request_id,
        retry_after=after,
        body=problem,
    )
