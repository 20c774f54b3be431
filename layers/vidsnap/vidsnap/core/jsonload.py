"""Bounded JSON loading for text from outside (request bodies, queue messages, event envelopes).

:func:`json.loads` recurses once per nesting level, so 200 KB of ``[[[…]]]`` would end in a
RecursionError (in the decoder, or later in anything walking the result). :func:`load_json` counts
the nesting first, without recursion, and refuses anything deeper than :data:`MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONTooDeep", "json_depth", "load_json"]

#: Deepest nesting of lists and objects accepted in JSON from outside. Every request language
#: (IMM, MPS, OSS, S3/SNS/EventBridge envelopes) nests well under 10.
MAX_JSON_DEPTH = 32

#: A JSON string (escapes included), to blank out before counting brackets. An unterminated one
#: runs to the end of the text (as for the parser, which fails there), so every match attempt
#: succeeds at once: no backtracking, linear even on 256 KB of quotes and backslashes.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*\\?(?:"|\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class JSONTooDeep(ValueError):
    """JSON text nested deeper than allowed (a :class:`ValueError`, like any other bad JSON)."""


def json_depth(text: str) -> int:
    """How deeply the lists and objects of JSON ``text`` nest, counted without recursion.

    Brackets inside strings do not count. For text that is not valid JSON the number is a bound
    the parser would reach at most, which is all a depth check needs.
    """
    depth = deepest = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub('""', text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def load_json(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """:func:`json.loads` for untrusted text: nesting deeper than ``max_depth`` is refused.

    Raises :class:`JSONTooDeep` (a ``ValueError``) for too deep a text, before parsing it, and
    also if the parser itself runs out of stack; other bad JSON raises ``json.JSONDecodeError`` as
    usual. ``kwargs`` go to :func:`json.loads`.
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8-sig")  # ValueError (UnicodeDecodeError) for junk
    if json_depth(text) > max_depth:
        raise JSONTooDeep(f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # defence in depth: the scan above should make this unreachable
        raise JSONTooDeep(f"the JSON nests deeper than {max_depth} levels") from None
