"""The runs API's models: the query strings its handlers validate with and the answers they
give. :mod:`kimi_modes.server.runs_api` parses with them; the OpenAPI document
(:mod:`kimi_modes.server.openapi`) describes the routes with them.

The answer models are made from the run store's own records
(:class:`~kimi_modes.runs.RunSummary`, :class:`~kimi_modes.runs.RunRecord`), so a field added
there appears here without being spelled twice.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Final, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from kimi_modes.runs import STATUSES, RunRecord, RunSummary
from kimi_modes.server.errors import APIError

#: The largest offset or seq a query may name: SQLite's largest integer.
MAX_INT: Final = 2**63 - 1


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def parse(cls, query: typing.Mapping[str, str], names: dict[str, str] | None = None) -> Any:
        """The model of ``query`` (empty values count as absent); an invalid value is an
        :class:`APIError` 400 naming the parameter (``names`` renames one in the message,
        e.g. ``after`` read from the ``Last-Event-ID`` header)."""
        given = {k: v for k, v in query.items() if v != ""}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = str(error["loc"][0])
            name = (names or {}).get(field, field)
            raw = given.get(field)
            if error["type"] in ("int_parsing", "int_type", "int_from_float"):
                message = f"{name} must be an integer, not {raw!r}"
            elif error["type"] in ("greater_than_equal", "less_than_equal"):
                low, high = _bounds(cls, field)
                message = f"{name} must be between {low} and {high}, not {raw}"
            else:
                message = f"{name}: {error['msg']}"
            raise APIError(400, message, param=name) from None


def _bounds(model: type[BaseModel], field: str) -> tuple[Any, Any]:
    low = high = None
    for rule in model.model_fields[field].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge
        elif isinstance(rule, annotated_types.Le):
            high = rule.le
    return low, high


class RunListQuery(_Query):
    """``GET /v1/runs``: a page of the caller's runs, newest first, filtered."""

    limit: int = Field(20, ge=1, le=100, description="Runs per page.")
    offset: int = Field(0, ge=0, le=MAX_INT, description="Runs skipped.")
    status: str | None = Field(None, description="Only runs with this status.",
                               json_schema_extra={"enum": list[Any](sorted(STATUSES))})
    mode: str | None = Field(None, description="Only runs of this mode (agent, swarm).")
    parent_id: str | None = Field(None, description="Only the sub-agents of this run.")

    @field_validator("status")
    @classmethod
    def _known_status(cls, status: str | None) -> str | None:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {', '.join(sorted(STATUSES))}")
        return status


class RunEventsQuery(_Query):
    """``GET /v1/runs/{id}/events``: replay the events after a seq, then follow."""

    after: int = Field(0, ge=0, le=MAX_INT,
                       description="Replay from the event after this seq (the Last-Event-ID "
                                   "header, when sent, wins).")


def _from_record(name: str, record: type[Any], doc: str, **more: Any) -> type[BaseModel]:
    """A model with ``object: "run"`` and every field of the dataclass ``record``."""
    hints = typing.get_type_hints(record)
    fields: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclasses.fields(record)}
    fields["object"] = (Literal["run"], ...)
    return create_model(name, __doc__=doc, **fields, **more)


RunSummaryBody = _from_record("RunSummary", RunSummary,
                              "A run without its messages: what a listing shows.")
RunBody = _from_record(
    "Run", RunRecord, "A whole run: its summary, messages, params, final answer and steps.",
    final_answer=(str | None, ...), live=(bool, ...), steps=(list[dict[str, Any]], ...))
CancelledRunBody = _from_record(
    "CancelledRun", RunSummary, "The run's summary after a cancel was asked for.",
    cancel_requested=(Literal[True], ...))


class RunList(BaseModel):
    """A page of runs."""

    object: Literal["list"]
    data: list[RunSummaryBody]  # type: ignore[valid-type]
    has_more: bool
    limit: int
    offset: int
