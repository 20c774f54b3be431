"""The decode budget: how many frames one requested frame may cost (docs/LIMITS.md, Decode budget).

An exact frame is decoded forward from the keyframe before it; with sparse keyframes that can mean
tens of thousands of frames, past a function's timeout. The cursor asks here how many frames it may
decode for one request, checks the container's per-packet index before decoding when there is one,
and counts frames as they decode otherwise; over the budget, the request fails with
:class:`DecodeBudgetExceeded` (the message tells what to ask for instead).
"""

from __future__ import annotations

import bisect
from typing import Any

from vidsnap.core.decode.guard import INDEX_ERRORS
from vidsnap.core.decode.stream import StreamDescription
from vidsnap.core.errors import DecodeBudgetExceeded

__all__ = ["exceeded", "frames_allowed", "indexed_frames"]

#: The decode budget (``decode_budget_frames``) counts frames of this size.
_REFERENCE_PIXELS = 1920 * 1080


def _entry_ts(entry: Any) -> int:
    return int(entry.timestamp)


def frames_allowed(budget: int | None, desc: StreamDescription, *, keyonly: bool) -> int | None:
    """The decode budget for one requested frame at this picture size; None: no budget.

    ``budget`` (``decode_budget_frames``) counts 1080p frames: decoding costs about in proportion
    to the pixels, so a larger picture gets proportionally fewer (4K: a quarter), a smaller one no
    more (decoding tiny frames still costs per frame). Keyframe requests decode keyframes only.
    """
    if budget is None or (keyonly and not desc.numbered_in_order):
        return None
    pixels = desc.coded_width * desc.coded_height
    if pixels > _REFERENCE_PIXELS:
        budget = max(1, budget * _REFERENCE_PIXELS // pixels)
    return budget


def indexed_frames(stream: Any, desc: StreamDescription, position: int | None, target: int) -> int | None:
    """How many frames the container's index lists after ``position`` (the decoder's: after a seek,
    the keyframe it landed on) up to ``target``; None when the index cannot tell.

    Only containers with a per-packet index (MP4/MOV/AVI) can tell; the others (Matroska cues list
    keyframes only, MPEG-TS and raw streams have none) are bounded by counting the frames as they
    decode. The count comes from the index, not from the duration, so a target past the real end
    costs no more than the frames that exist.
    """
    if position is None or target <= position or desc.index_entries <= len(desc.key_ts):
        return None
    try:
        entries = stream.index_entries
        lo = bisect.bisect_right(entries, position - desc.dts_shift, key=_entry_ts)
        hi = bisect.bisect_right(entries, target, key=_entry_ts, lo=lo)
    except INDEX_ERRORS:
        return None
    return hi - lo


def exceeded(
    desc: StreamDescription,
    target: int,
    frames: int,
    *,
    allowed: int,
    requested: int | None,
    position: int | None = None,
) -> DecodeBudgetExceeded:
    """The error for a request at ``target`` that needs ``frames`` frames, more than ``allowed``
    (``requested``: the budget before scaling to the picture size). ``position``: the pts the
    index counted from (the keyframe a seek landed on); None when counted while decoding."""
    at = float((target - desc.start_pts) * desc.time_base)
    scaled = (
        f" for this {desc.coded_width}x{desc.coded_height} picture"
        if requested is not None and allowed != requested
        else ""
    )
    if position is None:
        what = f"decoding towards the frame at {at:.3f} s passed {frames} frames"
    else:
        key = float((max(position, desc.start_pts) - desc.start_pts) * desc.time_base)
        what = f"the frame at {at:.3f} s is {frames} frames after the keyframe at {key:.3f} s"
    return DecodeBudgetExceeded(
        f"{what}: more than the decode budget of {allowed} frames{scaled} (DECODE_BUDGET_FRAMES). "
        "Ask for the keyframe before it instead (m_fast), or re-encode the video with keyframes "
        "more often"
    )
