"""Kimi's special tokens as strings (K2: kimi-protocol.md §2; K3: §9). Constants only."""

from __future__ import annotations

BOS = "[BOS]"
EOS = "[EOS]"
IM_END = "<|im_end|>"
IM_USER = "<|im_user|>"
IM_ASSISTANT = "<|im_assistant|>"
IM_SYSTEM = "<|im_system|>"
IM_MIDDLE = "<|im_middle|>"
TOOL_CALLS_SECTION_BEGIN = "<|tool_calls_section_begin|>"
TOOL_CALLS_SECTION_END = "<|tool_calls_section_end|>"
TOOL_CALL_SECTION_BEGIN_SINGULAR = "<|tool_call_section_begin|>"
TOOL_CALL_BEGIN = "<|tool_call_begin|>"
TOOL_CALL_ARGUMENT_BEGIN = "<|tool_call_argument_begin|>"
TOOL_CALL_END = "<|tool_call_end|>"
MEDIA_BEGIN = "<|media_begin|>"
MEDIA_START_LEGACY = "<|media_start|>"
MEDIA_CONTENT = "<|media_content|>"
MEDIA_END = "<|media_end|>"
MEDIA_PAD = "<|media_pad|>"
THINK_BEGIN = "<think>"
THINK_END = "</think>"

#: Tokens an engine must stop on.
STOP_STRINGS: tuple[str, ...] = (IM_END, EOS)

#: Every control-token string; none of them may reach a prompt from user-supplied text.
CONTROL_TOKENS: tuple[str, ...] = (
    BOS,
    EOS,
    IM_END,
    IM_USER,
    IM_ASSISTANT,
    IM_SYSTEM,
    IM_MIDDLE,
    TOOL_CALLS_SECTION_BEGIN,
    TOOL_CALLS_SECTION_END,
    TOOL_CALL_SECTION_BEGIN_SINGULAR,
    TOOL_CALL_BEGIN,
    TOOL_CALL_ARGUMENT_BEGIN,
    TOOL_CALL_END,
    MEDIA_BEGIN,
    MEDIA_START_LEGACY,
    MEDIA_CONTENT,
    MEDIA_END,
    MEDIA_PAD,
    THINK_BEGIN,
    THINK_END,
)

#: The system prompt Kimi's templates put first when the client sends no system message.
DEFAULT_SYSTEM_PROMPT = "You are Kimi, an AI assistant created by Moonshot AI."

#: Header name of the system message that declares the tools.
TOOL_DECLARE = "tool_declare"

#: A placeholder Kimi sometimes writes as the content before its tool calls; parsers drop it.
NO_CONTENT_PLACEHOLDER = "(no content)"

#: Bracket-style special tokens of the tokenizer besides ``[BOS]``/``[EOS]`` (unused by the
#: chat format, but a client must not be able to inject them either).
OTHER_BRACKET_TOKENS: tuple[str, ...] = ("[EOT]",)

# -- Kimi K3 (XTML, kimi-protocol.md §9) ---------------------------------------------------

#: Opens an element: ``<|open|>TAG[ key="value"]*<|sep|>``.
XTML_OPEN = "<|open|>"
#: Closes an element: ``<|close|>TAG<|sep|>``.
XTML_CLOSE = "<|close|>"
#: Ends an element's header.
XTML_SEP = "<|sep|>"
#: Follows every top-level message; the generation stop.
XTML_END_OF_MSG = "<|end_of_msg|>"
#: What an image content part becomes in a K3 prompt.
XTML_IMAGE_PLACEHOLDER = "<|kimi_image_placeholder|>"

#: Tokens a K3 engine must stop on.
K3_STOP_STRINGS: tuple[str, ...] = (XTML_END_OF_MSG, EOS)

#: The special tokens K3 output may hold (what its parser treats as structure).
XTML_CONTROL_TOKENS: tuple[str, ...] = (BOS, EOS, XTML_OPEN, XTML_CLOSE, XTML_SEP, XTML_END_OF_MSG)
