"""A storyboard's thumbnail track, planned without decoding (README: Compositions, ``f_vtt``).

``video/sprite,...,f_vtt`` answers a WebVTT track whose cues point, with ``#xywh=`` fragments, into
sprite sheets that are themselves synchronous ``video/sprite`` requests of the same object: sheet k
is the same request starting ``k`` sheets later. A player (or the local server's page) fetches the
track, then only the sheets the viewer hovers over; each sheet is computed, cached and ETagged on
its own. Everything here is arithmetic on the stream header: the times of an interval selection,
the tile size from the geometry, the sheet layout.
"""

from __future__ import annotations

from fractions import Fraction

from vidsnap.core.compose import Cue, SheetLayout, Tile, fragment, webvtt
from vidsnap.core.errors import BadRequest
from vidsnap.core.imaging import Geometry
from vidsnap.core.plan import ComposeRequest

__all__ = ["storyboard_track"]


def _times(req: ComposeRequest, duration_ms: Fraction, max_tiles: int) -> list[Fraction]:
    sel = req.job.selection
    if sel.mode != "inter" or sel.interval_ms <= 0:
        raise BadRequest(
            "f: a storyboard track (f_vtt) is planned from times: use m_inter with inter_<ms> > 0",
            param="f",
        )
    times: list[Fraction] = []
    t = sel.start_ms
    while t < duration_ms and len(times) < max_tiles:
        times.append(t)
        t += sel.interval_ms
    if not times:
        raise BadRequest(
            f"ss: {sel.start_ms} ms is at or past the end of the video ({duration_ms} ms)", param="ss"
        )
    return times


def _sheet_url(req: ComposeRequest, start_ms: Fraction, tiles: int) -> str:
    """The synchronous request of the sheet that starts at ``start_ms`` and holds ``tiles`` tiles."""
    params = {name: value for name, value in req.params if name not in ("ss", "num", "f")}
    fmt = req.job.sprite.format if req.job.sprite else "jpg"
    items = [f"ss_{int(start_ms)}", *(f"{k}_{v}" for k, v in params.items()), f"num_{tiles}", f"f_{fmt}"]
    return "?x-oss-process=" + ",".join(["video/sprite", *items])


def storyboard_track(req: ComposeRequest, tile: Geometry, duration_ms: Fraction, *, max_tiles: int) -> bytes:
    """The WebVTT track of the storyboard ``req`` asks for (``video/sprite,...,f_vtt``), whose tiles
    have the geometry ``tile``: at most ``max_tiles`` cues, each pointing into the sheet request that
    holds its tile."""
    sprite = req.job.sprite
    if sprite is None:
        raise BadRequest("f: only video/sprite has a thumbnail track (f_vtt)", param="f")
    width, height = tile.width, tile.height
    layout = SheetLayout(sprite.columns, sprite.rows, width, height, sprite.pad, sprite.margin)
    layout.check(sprite.format, param="sprite")
    times = _times(req, duration_ms, max_tiles)
    per_sheet = layout.per_sheet
    cues: list[Cue] = []
    for i, start in enumerate(times):
        sheet, x, y = layout.place(i)
        first = sheet * per_sheet
        url = _sheet_url(req, times[first], min(per_sheet, len(times) - first))
        box = Tile(sheet, x, y, width, height, start)
        end = times[i + 1] if i + 1 < len(times) else duration_ms
        cues.append(Cue(start, end, fragment(url, box)))
    return webvtt(cues).encode("utf-8")
