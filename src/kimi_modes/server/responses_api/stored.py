"""Stored responses: a response is kept in the run store as a run, and read back from it.

Response ``resp_<key>`` is run ``run_<key>``. An Agent or Swarm response is the persisted run
its mode starts anyway; an Instant or Thinking response with ``store`` (the default, as on
OpenAI) is written as a finished run once it has ended: its ``messages`` are the
conversation (the history and the input, without the instructions), its ``final`` the
assistant message (reasoning included), its ``params["responses"]`` the request's settings
and the output items. A follow-up with ``previous_response_id`` continues from ``messages``
plus ``final``, so Kimi gets its reasoning back without the client resending it.

Every read is scoped to the caller like the runs API: another key's response, an unknown id
and an id that is not a response's answer alike (404).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kimi_modes.engines.base import Usage
from kimi_modes.protocol.output import ParsedOutput
from kimi_modes.runs import COMPLETED, RUNNING, TERMINAL_STATUSES, RunRecord, RunStore
from kimi_modes.runs.errors import RunStoreClosed
from kimi_modes.server.errors import APIError
from kimi_modes.server.responses_api.body import (
    error_object,
    response_object,
    usage_of,
)
from kimi_modes.server.responses_api.items import items_from_messages, output_items

PREFIX = "resp_"
#: The key under a run's params that holds what a chat-mode response stored.
PARAMS_KEY = "responses"

_STATUSES = {"queued": "queued", "running": "in_progress", "completed": "completed",
             "failed": "failed", "cancelled": "cancelled", "interrupted": "failed"}


def run_id_of(response_id: str) -> str | None:
    """The run that holds ``response_id`` (``None``: not a response id of ours)."""
    if not response_id.startswith(PREFIX) or len(response_id) <= len(PREFIX):
        return None
    return "run_" + response_id[len(PREFIX):]


class StoredResponses:
    """Responses in the run store ``store`` gives (``None`` while the gateway starts)."""

    def __init__(self, store: Callable[[], RunStore | None]) -> None:
        self._store = store

    def available(self) -> bool:
        """Whether a store is open to keep responses in."""
        store = self._store()
        return store is not None and store.is_open

    def store(self) -> RunStore:
        """The open store; :class:`APIError` 503 while there is none."""
        store = self._store()
        if store is not None and store.is_closed:
            raise APIError(503, "the run store is closed (the gateway is shutting down)",
                           code="shutting_down")
        if store is None or not store.is_open:
            raise APIError(503, "the gateway is still starting (the run store is not open)",
                           code="starting")
        return store

    async def record(self, response_id: str, scope: str | None, *,
                     param: str = "response_id") -> RunRecord:
        """The run holding ``response_id`` if the caller (``scope``: the owner it sees,
        ``None``: all) may see it; :class:`APIError` 404 otherwise."""
        run_id = run_id_of(response_id)
        record = (await self.store().get(run_id, owner=scope)
                  if run_id is not None else None)
        if record is None:
            code = ("previous_response_not_found" if param == "previous_response_id"
                    else "response_not_found")
            raise APIError(404, f"no response with id {response_id!r}", param=param,
                           code=code)
        return record

    async def history(self, response_id: str, scope: str | None) -> list[dict[str, Any]]:
        """The conversation response ``response_id`` ended with: its messages and its answer
        (for ``previous_response_id``). 400 while it is still in progress."""
        record = await self.record(response_id, scope, param="previous_response_id")
        if record.status not in TERMINAL_STATUSES:
            raise APIError(400, f"response {response_id!r} is still in progress: wait for it "
                           "to finish before continuing it", param="previous_response_id")
        messages = [dict(m) for m in record.messages]
        if PARAMS_KEY not in record.params:
            # An Agent/Swarm run keeps its system message: the instructions given then.
            messages = [m for m in messages if m.get("role") != "system"]
        if isinstance(record.final, Mapping):
            final = {k: v for k, v in record.final.items()
                     if k in ("role", "content", "reasoning_content", "tool_calls")}
            messages.append({"role": "assistant", **final})
        return messages

    async def keep(self, key: str, *, mode: str, model: str, owner: str | None,
                   conversation: list[dict[str, Any]], answer: ParsedOutput,
                   finish: str | None, usage: Usage | None, settings: dict[str, Any]) -> None:
        """Store a finished Instant/Thinking response as a finished run (see the module
        docstring); ``settings``: the request's settings, its output and status."""
        store = self.store()
        run_id = "run_" + key
        usage_dict = (None if usage is None else
                      {"prompt_tokens": usage.prompt_tokens,
                       "completion_tokens": usage.completion_tokens,
                       "reasoning_tokens": usage.reasoning_tokens})
        await store.create_run(mode, model, conversation, {PARAMS_KEY: settings},
                               status=RUNNING, run_id=run_id, owner=owner)
        await store.finish(run_id, COMPLETED, finish, answer.to_openai_message(), usage_dict)

    async def get(self, response_id: str, scope: str | None) -> dict[str, Any]:
        """The response object of a stored response."""
        return response_from(await self.record(response_id, scope), response_id)

    async def input_items(self, response_id: str, scope: str | None) -> list[dict[str, Any]]:
        """The items the response's model saw (its history included), oldest first."""
        record = await self.record(response_id, scope)
        return items_from_messages(record.messages, response_id[len(PREFIX):])

    async def delete(self, response_id: str, scope: str | None) -> None:
        """Delete a finished response; 404 unknown, 409 still in progress."""
        record = await self.record(response_id, scope)
        store = self.store()
        try:
            deleted = await store.delete(record.id, owner=scope)
        except RunStoreClosed:
            raise APIError(503, "the run store is closed", code="shutting_down") from None
        if not deleted:
            raise APIError(409, f"response {response_id!r} is still in progress: cancel it "
                           "first", code="response_in_progress")


def response_from(record: RunRecord, response_id: str) -> dict[str, Any]:
    """The response object of the run ``record``."""
    kept = record.params.get(PARAMS_KEY)
    usage = usage_of(record.usage)
    if isinstance(kept, Mapping):
        return response_object(response_id, record.model, str(kept.get("status")),
                               list(kept.get("output") or ()), echo=kept, usage=usage,
                               created_at=record.created_at,
                               incomplete=kept.get("incomplete"))
    status = _STATUSES.get(record.status, "failed")
    key = response_id[len(PREFIX):]
    output = (output_items(record.final, key) if isinstance(record.final, Mapping)
              and status == "completed" else [])
    error = (error_object(None, record.error or f"the run ended as {record.status}")
             if status == "failed" else None)
    return response_object(response_id, record.model, status, output, usage=usage,
                           created_at=record.created_at, error=error)
