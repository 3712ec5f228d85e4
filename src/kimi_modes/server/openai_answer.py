"""The models of what the OpenAI routes answer: the ``chat.completion`` object and the error
body. They describe the answers in the OpenAPI document (:mod:`kimi_modes.server.openapi`);
the encoders in :mod:`kimi_modes.server.openai_api` and :mod:`kimi_modes.server.errors` write
the same shapes, and the gateway's schema tests hold the two together.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class _AnswerFunction(BaseModel):
    name: str
    arguments: str


class _AnswerToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: _AnswerFunction
    #: Not OpenAI's: why the call failed validation (valid calls have no such key).
    error: str | None = None


class _AnswerMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    #: Not OpenAI's (vLLM's and Moonshot's): the model's reasoning, when it thought.
    reasoning_content: str | None = None
    tool_calls: list[_AnswerToolCall] | None = None


class _TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class _TokenLogprob(_TopLogprob):
    top_logprobs: list[_TopLogprob]


class _ChoiceLogprobs(BaseModel):
    """The logprobs of every token of the choice, as the engine gave them (docs/api.md)."""

    content: list[_TokenLogprob] | None


class _AnswerChoice(BaseModel):
    index: int
    message: _AnswerMessage
    #: ``null`` unless the request asked for ``logprobs``.
    logprobs: _ChoiceLogprobs | None
    finish_reason: str


class _CompletionTokenDetails(BaseModel):
    reasoning_tokens: int


class Usage(BaseModel):
    """Token counts, as the engine reported them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: _CompletionTokenDetails | None = None


class ChatCompletion(BaseModel):
    """A whole answer of ``POST /v1/chat/completions``; ``usage`` is ``null`` when the engine
    reported none."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[_AnswerChoice]
    usage: Usage | None


class _OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error body, on every ``/v1/...`` route but ``/v1/messages``."""

    error: _OpenAIErrorDetail
