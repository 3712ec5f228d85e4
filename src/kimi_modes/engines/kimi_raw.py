"""Engine for an upstream ``/v1/completions`` serving Kimi weights with no parsers of its own.

We render the chat into the family's prompt (:func:`kimi_modes.protocol.render_prompt`: K2.x's
template or K3's XTML encoder, with K3's ``thinking_effort`` and K2.6's ``preserve_thinking``),
ask the upstream to keep special tokens and to stop on the family's stop strings
(``<|im_end|>``; K3: ``<|end_of_msg|>``), and parse the raw text with
:class:`kimi_modes.protocol.StreamingParser`. This is exact to the token: what the model sees
is what Moonshot's template or encoder produces, whatever the engine's own chat template does.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from kimi_modes.engines._http import UpstreamClient, usage_from
from kimi_modes.engines.base import (
    ChatRequest,
    Choice,
    Event,
    Finish,
    Logprobs,
    UpstreamRejected,
    Usage,
    stop_sequence,
)
from kimi_modes.engines.choices import from_completion
from kimi_modes.engines.dialects import merge_into
from kimi_modes.protocol import (
    Family,
    StreamingParser,
    continues_final,
    family_info,
    render_prompt,
)

# Sampling keys of the chat API that /v1/completions takes as they are.
_PASSTHROUGH = ("temperature", "top_p", "max_tokens", "seed")
_IMAGE_PART_TYPES = ("image_url", "image")
#: The fewest tokens asked for when the prompt (by its upper bound) leaves less room.
MIN_MAX_TOKENS = 16


def default_max_tokens(prompt: str, window: int) -> int:
    """``max_tokens`` for a request that gave none: what the context window leaves.

    The prompt's size in tokens is bounded from above by its size in UTF-8 bytes (a BPE token,
    special tokens included, is never shorter than one byte), so the answer never pushes
    prompt + completion past ``window`` whatever the text (punctuation, CJK, emoji). At
    least :data:`MIN_MAX_TOKENS`: for a prompt near the window, the upstream then answers
    briefly (``finish_reason`` ``length``) or says the prompt itself is too long.
    """
    return max(MIN_MAX_TOKENS, window - len(prompt.encode("utf-8")))


def _choice_name(choice: dict[str, Any]) -> str:
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    return str(name) if name else "?"


class KimiRawEngine:
    """``stream()`` a chat through an upstream's raw ``/v1/completions``."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        family: str = Family.K2_5,
        model: str | None = None,
        api_key: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 300.0,
    ) -> None:
        self.name = name
        self.family = family
        self._info = family_info(family)
        self._client = UpstreamClient(
            name,
            base_url,
            model=model,
            api_key=api_key,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    def build_body(self, request: ChatRequest, model: str) -> dict[str, Any]:
        """The JSON body sent upstream for ``request`` (exposed for tests and debugging).

        Raises :class:`UpstreamRejected` (400) for what raw text completion cannot carry or
        enforce, rather than dropping it silently: image parts, a ``tool_choice`` that forces
        a call (``"required"`` or a named function) and a ``response_format`` other than
        ``{"type": "text"}``; and for a ``thinking_effort`` or ``preserve_thinking`` the family
        cannot take.
        """
        self._check_supported(request)
        chat: dict[str, Any] = {"messages": request.messages}
        if request.tools and request.tool_choice != "none":
            chat["tools"] = request.tools
        try:
            prompt = render_prompt(
                chat,
                self.family,
                thinking=request.thinking,
                thinking_effort=request.effort(self._info.thinking_efforts),
                preserve_thinking=request.preserve_thinking,
            )
        except ValueError as exc:  # PromptError included
            raise UpstreamRejected(self.name, f"cannot render the prompt: {exc}") from None
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": [*self._info.stop_strings, *(request.stop or ())],
            # Tool-call and think markers (K3: the XTML markers) must survive detokenisation.
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
        }
        for key in _PASSTHROUGH:
            value = getattr(request, key)
            if value is not None:
                body[key] = value
        if request.n > 1:
            body["n"] = request.n
        if request.logprobs is not None:  # the completions API's form: how many alternatives
            body["logprobs"] = request.logprobs
        merge_into(body, {k: v for k, v in request.extra.items() if k != "response_format"})
        return body

    def _check_supported(self, request: ChatRequest) -> None:
        for index, message in enumerate(request.messages):
            content = message.get("content")
            if isinstance(content, list) and any(
                isinstance(part, dict) and part.get("type") in _IMAGE_PART_TYPES
                for part in content
            ):
                raise UpstreamRejected(
                    self.name,
                    f"messages[{index}] holds an image, and images need an openai_chat "
                    "upstream: a kimi_raw upstream's /v1/completions takes text only",
                )
        choice = request.tool_choice
        if request.tools and (choice == "required" or isinstance(choice, dict)):
            wanted = (
                "'required'"
                if choice == "required"
                else f"naming a function ({_choice_name(choice)!r})"
            )
            raise UpstreamRejected(
                self.name,
                f"tool_choice {wanted} cannot be enforced through a kimi_raw upstream (raw "
                "text completion has no way to force a tool call); send tool_choice 'auto' or "
                "use an openai_chat upstream",
            )
        response_format = request.extra.get("response_format")
        if response_format is not None and response_format != {"type": "text"}:
            kind = response_format.get("type") if isinstance(response_format, dict) else None
            raise UpstreamRejected(
                self.name,
                f"response_format {kind or response_format!r} cannot be enforced through a "
                "kimi_raw upstream (raw text completion has no constrained decoding); leave it "
                "out or use an openai_chat upstream",
            )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        body = self.build_body(request, request.model or await self._client.model_name())
        if "max_tokens" not in body:
            # /v1/completions defaults to 16 tokens on vLLM; a chat answer needs the rest of
            # the context, as the chat endpoint would give it.
            window = await self._client.max_model_len() or self._info.context_window
            body["max_tokens"] = default_max_tokens(body["prompt"], window)
        # A continued assistant message goes on in the answer: no reasoning comes first.
        thinking = request.thinking and not continues_final(request.messages)
        parsers = [StreamingParser(self.family, thinking=thinking, tools=request.tools)
                   for _ in range(request.n)]
        finishes: list[str | None] = [None] * request.n
        fired: list[str | None] = [None] * request.n
        several = request.n > 1
        current = 0
        top = request.logprobs
        usage: Usage | None = None
        async for chunk in self._client.post_stream("/completions", body):
            if chunk.get("usage"):
                usage = usage_from(chunk["usage"])
            for choice in chunk.get("choices") or ():
                index = int(choice.get("index") or 0)
                if not 0 <= index < len(parsers):
                    continue
                if several and index != current:
                    current = index
                    yield Choice(index)
                if top is not None:
                    logprobs = from_completion(choice.get("logprobs"), top)
                    if logprobs:
                        yield Logprobs(logprobs)
                text = choice.get("text")
                if text:
                    for event in parsers[index].feed(text):
                        yield event
                if choice.get("finish_reason"):
                    finishes[index] = choice["finish_reason"]
                    fired[index] = stop_sequence(request, choice.get("stop_reason"))
        for index, parser in enumerate(parsers):
            if several:
                yield Choice(index)
            for event in parser.close():
                yield event
            if usage is not None and not several:
                yield usage
            finish = finishes[index]
            if parser.result().tool_calls and finish in (None, "stop"):
                finish = "tool_calls"
            yield Finish(finish or "stop", fired[index] if finish in (None, "stop") else None)
        if usage is not None and several:
            yield usage

    async def aclose(self) -> None:
        await self._client.aclose()
