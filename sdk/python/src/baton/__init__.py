"""Baton's Python SDK: a client of the HTTP API (sync and asyncio) and
workers that serve a workflow's `worker` agents with Python functions."""

from ._core import TERMINAL, Delivery, Retry
from ._sse import RunEvent
from .aio import AsyncClient
from .client import Client
from .decisions import delegate, finish, handoff, route, send, write_context
from .errors import (
    ApiError,
    BadRequest,
    BatonError,
    Conflict,
    FieldError,
    Forbidden,
    InvalidRequest,
    InvalidWorkflow,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WaitTimeout,
)
from .worker import Fail, Task, Worker

__version__ = "0.1.0"

__all__ = [
    "TERMINAL",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "BatonError",
    "Client",
    "Conflict",
    "Delivery",
    "Fail",
    "FieldError",
    "Forbidden",
    "InvalidRequest",
    "InvalidWorkflow",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Retry",
    "RunEvent",
    "ServerError",
    "Task",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WaitTimeout",
    "Worker",
    "delegate",
    "finish",
    "handoff",
    "route",
    "send",
    "write_context",
]
