"""Kimi's wire format: render a chat into a Kimi prompt, parse what the model writes back.

Pure functions and small state machines, no I/O and no globals; nothing outside this package
is imported. The format is described in ``kimi-protocol.md`` (the families, §1; the special
tokens, §2; rendering, §3; K2.5's TypeScript tool declaration, §4; parsing, §5; K2.6 and
K2.7-Code, §8; K3's XTML, §9). The entry points serve every family: they dispatch on the
family's wire format (:class:`FamilyInfo`), so callers never branch on the family.

Example::

    >>> from kimi_modes.protocol import render_prompt, parse_output, StreamingParser
    >>> prompt = render_prompt({"messages": [{"role": "user", "content": "Hi"}]}, "k2.5")
    >>> prompt.endswith("<|im_assistant|>assistant<|im_middle|><think>")
    True
    >>> raw = ('Easy.</think>Calling it.<|tool_calls_section_begin|><|tool_call_begin|>'
    ...        'functions.now:0<|tool_call_argument_begin|>{}<|tool_call_end|>'
    ...        '<|tool_calls_section_end|>')
    >>> answer = parse_output(raw, "k2.5")
    >>> answer.reasoning_content, answer.content, answer.tool_calls[0].name
    ('Easy.', 'Calling it.', 'now')
    >>> parser = StreamingParser("k2.5")
    >>> deltas = [d for chunk in (raw[:7], raw[7:40], raw[40:]) for d in parser.feed(chunk)]
    >>> deltas += parser.close()
    >>> parser.result() == answer
    True
    >>> parser.result().to_openai_message()["tool_calls"][0]["function"]
    {'name': 'now', 'arguments': '{}'}
    >>> k3 = render_prompt({"messages": [{"role": "user", "content": "Hi"}]}, "k3", thinking=False)
    >>> k3.endswith('<|end_of_msg|><|open|>message role="assistant"<|sep|><|open|>response<|sep|>')
    True
    >>> out = "Hello!<|close|>response<|sep|><|close|>message<|sep|>"
    >>> parse_output(out, "k3", thinking=False).content
    'Hello!'
    >>> family_info("k3").stop_strings
    ('<|end_of_msg|>', '[EOS]')
"""

from kimi_modes.protocol import tokens
from kimi_modes.protocol.deltas import ContentDelta, Delta, ReasoningDelta, ToolCallDelta
from kimi_modes.protocol.errors import PromptError
from kimi_modes.protocol.families import Family, FamilyInfo, Sampling, family_info
from kimi_modes.protocol.format import format_output
from kimi_modes.protocol.ids import normalize_tool_call_ids
from kimi_modes.protocol.neutralize import neutralize_control_tokens
from kimi_modes.protocol.output import ParsedOutput, ToolCall
from kimi_modes.protocol.parse import StreamingParser, parse_output
from kimi_modes.protocol.render import continues_final, render_prompt
from kimi_modes.protocol.schema import validate_tool_call

__all__ = [
    "ContentDelta",
    "Delta",
    "Family",
    "FamilyInfo",
    "ParsedOutput",
    "PromptError",
    "ReasoningDelta",
    "Sampling",
    "StreamingParser",
    "ToolCall",
    "ToolCallDelta",
    "continues_final",
    "family_info",
    "format_output",
    "neutralize_control_tokens",
    "normalize_tool_call_ids",
    "parse_output",
    "render_prompt",
    "tokens",
    "validate_tool_call",
]
