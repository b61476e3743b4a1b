"""The scorer's HTTP protocol: one schema for the server, the client and the test fake.

    POST /score   ScoreRequest  -> ScoreResponse   a score, or an error, per item
    POST /check   CheckRequest  -> CheckResponse   tokens of question + answer alone, per item
    GET  /health  -> Health (200 when ready, 503 while the model loads, 500 if it failed)

Either POST answers 422 (``ErrorBody``) when no item at all can be taken, 413 when the body or
its item count is over the server's limits, 408 when the body does not arrive within the read
timeout, 503 when every large-request slot stayed taken past that timeout, and 400 when it is
not this schema. A client splits a request the server found too
large (``Limits`` are stated in ``/health``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_BODY_BYTES = 32 << 20  # a step's candidates, or /check for a few hundred long records
DEFAULT_MAX_ITEMS = 4096  # items in one request
DEFAULT_READ_TIMEOUT_S = 60.0  # for a request's whole body to arrive
DEFAULT_MAX_LARGE_REQUESTS = 2  # bodies over 1 MiB held at once: bounds memory under a flood of them


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreItem(_Strict):
    question: str
    thinking: str
    answer: str
    lang: Literal["en", "zh"] = "en"


class CheckItem(_Strict):
    question: str
    answer: str
    lang: Literal["en", "zh"] = "en"


class ScoreRequest(_Strict):
    items: list[ScoreItem]


class CheckRequest(_Strict):
    items: list[CheckItem]


class ScoreResponse(BaseModel):
    scores: list[float | None]
    errors: list[str | None]
    tokens: list[int]  # scored tokens per item (0 where it could not be encoded)


class CheckResponse(BaseModel):
    tokens: list[int | None]
    errors: list[str | None]
    max_context: int | None = None


class ErrorBody(BaseModel):
    error: str


class Limits(BaseModel):
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    max_items: int = Field(DEFAULT_MAX_ITEMS, gt=0)
    read_timeout_s: float = Field(DEFAULT_READ_TIMEOUT_S, gt=0)
    max_large_requests: int = Field(DEFAULT_MAX_LARGE_REQUESTS, gt=0)  # bodies over 1 MiB held at once


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")  # plus the engine's counters and the model's settings

    status: Literal["ok", "loading", "error"]
    model: str
    limits: Limits
    error: str | None = None
