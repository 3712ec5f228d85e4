"""The answer a reply gives, and what lm-eval compares: a number found in the text ("The
answer is N", "####", ``\\boxed{}``, else the last number), written one canonical way."""

from __future__ import annotations

import re

#: What lm-eval's own ``gsm8k`` task removes before comparing prediction and target
#: (``metric_list[0].regexes_to_ignore``), applied in this order, then lower-cased.
GSM8K_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")

# A number as people write it: optional sign, digits with thousands commas, a fraction.
# The sign counts only where a word does not touch it ("2-3" is not "-3").
_NUM = r"(?:(?<![\w])-)?\$?\d(?:[\d,]*\d)?(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUM)
# The stated answer: "The (final) answer is N", "Answer: N", "#### N", "\boxed{N}".
_STATED_RE = re.compile(
    r"(?i)answer\s*(?:is|:|=)\s*[:*\s]*\\?\$?\s*(" + _NUM + r")"
    r"|####\s*\$?\s*(" + _NUM + r")"
    r"|\\boxed\{\s*\\?\$?\s*(" + _NUM + r")"
)


def canonical_number(text: str) -> str:
    """``text`` (a number as written: ``$1,250.00``, ``-3``, ``2.50``) without ``$``, commas,
    a ``+`` sign, leading zeros and trailing fractional zeros: ``1250``, ``-3``, ``2.5``.

    :class:`ValueError` if ``text`` is not a number.
    """
    cleaned = re.sub(r"[\s$,]", "", text).removeprefix("+")
    match = re.fullmatch(r"(-?)(\d*)(?:\.(\d*))?", cleaned)
    if match is None or not (match.group(2) or match.group(3)):
        raise ValueError(f"not a number: {text!r}")
    sign, whole, fraction = match.group(1), match.group(2).lstrip("0") or "0", match.group(3)
    fraction = (fraction or "").rstrip("0")
    number = f"{whole}.{fraction}" if fraction else whole
    return "0" if number == "0" else sign + number


def extract_answer(text: str | None, *, strict: bool = False) -> str | None:
    """The answer a reply gives, as :func:`canonical_number` writes it, or ``None``.

    The last stated answer wins ("The answer is N", "Answer: N", "#### N", ``\\boxed{N}``);
    with none, the last number of the reply, unless ``strict`` (only a stated answer counts,
    which measures whether the model followed the asked format).
    """
    if not text:
        return None
    stated = [next(g for g in m.groups() if g) for m in _STATED_RE.finditer(text)]
    if stated:
        return canonical_number(stated[-1])
    if strict:
        return None
    numbers = _NUMBER_RE.findall(text)
    return canonical_number(numbers[-1]) if numbers else None


def normalise(text: str) -> str:
    """What lm-eval's ``exact_match`` compares for the ``gsm8k`` task: ``text`` without the
    :data:`GSM8K_IGNORE` patterns, lower-cased (``ignore_case``)."""
    for pattern in GSM8K_IGNORE:
        text = re.sub(pattern, "", text)
    return text.lower()
