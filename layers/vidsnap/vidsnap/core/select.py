"""Which frames an asynchronous job captures (README): ``inter``, ``key``, ``avg``, ``dhash``, ``scene``.

:func:`select_frames` turns a :class:`~vidsnap.core.plan.Selection` into a lazy stream of
:class:`~vidsnap.core.decode.Picked` frames, in presentation order, each carrying its exact time.
Frames are produced one at a time so a caller can encode and drop each before the next is decoded.

Shared rules:

* ``sel.exact`` False (MPS ``intra``) replaces each planned time by the keyframe at or before it.
* The same frame is never yielded twice in a row (several planned times can map to one frame:
  keyframe mode, variable frame rate, a clip shorter than ``avg`` needs).
* ``num`` > 0 caps the count (the engine has already rejected ``num`` > ``max_frames``, and the
  cap is applied defensively anyway); with ``num`` 0 the job stops at ``max_frames`` and appends a
  warning when the selection had more frames.
* ``sel.first`` (MPS ``BlackLevel``, ``"Time": "auto"``) replaces the first frame by one chosen in a
  bounded window after the start (:func:`first_unblack`, :func:`poster_frame`); later frames that
  fall at or before it are dropped, so the frames stay in time order and distinct.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
from av.video.reformatter import VideoReformatter

from vidsnap.core.decode import Picked, Video
from vidsnap.core.errors import SourceEndsEarly
from vidsnap.core.parallel import frames_at
from vidsnap.core.plan import FirstFrame, Selection

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from vidsnap.core.poster import Gray
    from vidsnap.core.scene import Sample

__all__ = [
    "BLACK_SCAN_MS",
    "DEFAULT_AVG_NUM",
    "DEFAULT_DHASH_INTERVAL_MS",
    "POSTER_CANDIDATES",
    "POSTER_WINDOW_MS",
    "After",
    "dhash",
    "dhash_times",
    "first_unblack",
    "poster_frame",
    "poster_window",
    "select_frames",
    "small_gray",
]

DEFAULT_AVG_NUM = 10
DEFAULT_DHASH_INTERVAL_MS = Fraction(1000)
#: dhash with ``num`` > 0: keep the best candidates' frames in memory while this many bytes of
#: pictures suffice; above it, remember only times and decode the winners again in a second pass.
_DHASH_KEEP_BYTES = 64 << 20
#: Planned times handed to the decoders at once: bounds the memory of a plan made from a claimed
#: duration (a header may claim 10¹² ms), while letting parallel decoders share the runs of many
#: times. A new chunk costs the decoders' clones a container open and at most one seek more (one
#: GOP of extra decoding); 1024 keeps ordinary jobs (a 10-minute video sampled every second) in
#: one chunk, as they were before chunking.
_CHUNK = 1024
#: A chunk ending with this many planned times on one frame asks the decoder where the next frame
#: is (see _planned): rare in ordinary video (16 samples of one frame), and one decode at most.
_SKIP_RUN = 16


def dhash(frame: av.VideoFrame) -> int:
    """64-bit difference hash: 9×8 grayscale, bit set where a pixel is brighter than its right neighbour.

    Bits are read row by row, left to right, most significant first. Area interpolation averages
    the whole picture instead of sampling a few pixels, so small noise does not flip bits.

    The 9×8 gray picture comes straight from swscale (one pass, no full-size conversion) through a
    reused context, and is read without numpy: the same values as ``frame.to_ndarray(format="gray",
    width=9, height=8, interpolation="AREA")``, 1.8 → ~1.2 ms per 1080p sample, and no numpy import.
    """
    small = _reformatter().reformat(frame, width=9, height=8, format="gray", interpolation="AREA")
    plane = small.planes[0]
    data, stride = bytes(plane), plane.line_size
    value = 0
    for y in range(8):
        row = data[y * stride : y * stride + 9]
        for x in range(8):
            value = (value << 1) | (row[x] > row[x + 1])
    return value


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's swscale context for dhash pictures (an SwsContext is not thread-safe)."""
    reformatter: VideoReformatter | None = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter


def _score(prev: int | None, cur: int) -> Fraction:
    """Change score 0..100: Hamming distance × 100 / 64; the first sample scores 100."""
    if prev is None:
        return Fraction(100)
    return Fraction((prev ^ cur).bit_count() * 100, 64)


def _ms(t: Fraction) -> str:
    """A time for a warning: whole milliseconds as an int, else 3 decimals (as ``plan.report_ms``)."""
    return str(int(t)) if t.denominator == 1 else f"{float(t):.3f}"


@dataclass(frozen=True)
class After:
    """Where an earlier attempt at a job stopped: it wrote ``count`` frames, the last one ``pts`` at
    ``time_ms``. A selection resumed there yields what a single pass would yield after that frame."""

    count: int
    pts: int
    time_ms: Fraction


def _after(picks: Iterator[Picked], after: After | None) -> Iterator[Picked]:
    """The frames after ``after`` (all of them when None)."""
    if after is None:
        return picks
    return (p for p in picks if p.pts > after.pts)


def _dedupe(picks: Iterable[Picked]) -> Iterator[Picked]:
    last: int | None = None
    for p in picks:
        if p.pts != last:
            last = p.pts
            yield p


class _Steps:
    """start, start+step, … while < end (exact arithmetic, no drift): planned lazily, and able to
    skip the times that would all show one frame (see :func:`_planned`)."""

    def __init__(self, start: Fraction, step: Fraction, end: Fraction) -> None:
        self.start, self.step, self.end = start, step, end
        self.i = 0

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Fraction:
        t = self.start + self.i * self.step
        if t >= self.end:
            raise StopIteration
        self.i += 1
        return t

    def skip_to(self, t: Fraction) -> None:
        """Plan no time before ``t`` any more."""
        self.i = max(self.i, math.ceil((t - self.start) / self.step))

    def last(self) -> Fraction | None:
        """The last time still to plan, or None when none is left."""
        count = math.ceil((self.end - self.start) / self.step)
        return self.start + (count - 1) * self.step if count > self.i else None


def _limited(
    picks: Iterator[Picked], num: int, max_frames: int, warnings: list[str], done: int = 0
) -> Iterator[Picked]:
    """At most ``num`` (0: ``max_frames``) frames; warn when ``max_frames`` cut the selection short.

    Once ``num`` frames are out, the next one is not even asked for (it would cost a decode, and
    the selection's end is no news); only ``max_frames`` needs one more to tell whether it cut.
    ``done``: frames an earlier attempt already took (a resumed selection counts on from there).
    """
    cap = min(num, max_frames) if num > 0 else max_frames
    capped_by_limit = num == 0 or num > max_frames
    if done >= cap and not capped_by_limit:
        return
    for count, p in enumerate(picks, start=done + 1):
        if count > cap:
            warnings.append(
                f"stopped at the frame limit of {max_frames} frames (MAX_FRAMES); "
                "the selection has more frames"
            )
            return
        yield p
        if count == cap and not capped_by_limit:
            return


def _every(video: Video, sel: Selection, start: Fraction) -> Iterator[Picked]:
    if sel.exact:
        yield from video.every_frame(start)
        return
    # Every frame, as keyframes: the keyframe shown at ss, then every later keyframe.
    first = video.frame_at(start, exact=False)
    yield first
    for p in video.keyframes(start):
        if p.pts > first.pts:
            yield p


def _inter(
    video: Video, sel: Selection, decoders: int | None, warnings: list[str], start: Fraction
) -> Iterator[Picked]:
    step = sel.interval_ms
    interval = video.frame_interval_ms
    if step <= 0 or (interval is not None and step < interval):
        yield from _every(video, sel, start)
        return
    times = _Steps(sel.start_ms, step, video.duration_ms)
    # Resumed: a planned time before the last frame written shows a frame at or before it.
    times.skip_to(start)
    for _, p in _planned(video, times, exact=sel.exact, decoders=decoders, warnings=warnings):
        yield p


def _avg(
    video: Video, sel: Selection, decoders: int | None, warnings: list[str], start: Fraction
) -> Iterator[Picked]:
    n = sel.num or DEFAULT_AVG_NUM
    span = max(Fraction(0), video.duration_ms - sel.start_ms)
    # Lazy like the others: n is at most MAX_FRAMES (the engine rejects more), but nothing is
    # planned ahead of what the decoders need.
    planned = (sel.start_ms + i * span / n for i in range(n))
    times = (t for t in planned if t >= start)
    for _, p in _planned(video, times, exact=sel.exact, decoders=decoders, warnings=warnings):
        yield p


def _planned(
    video: Video,
    times: Iterator[Fraction] | _Steps,
    *,
    exact: bool,
    decoders: int | None,
    warnings: list[str],
) -> Iterator[tuple[Fraction, Picked]]:
    """(planned time, frame) for lazily planned ascending times, in bounded chunks.

    Times are planned from the duration the container *claims*; a header can claim 10¹² ms for a
    clip of two seconds. So the times are never listed up front: they are taken ``_CHUNK`` at a
    time and handed to the decoders (:func:`vidsnap.core.parallel.frames_at`), and the caller's limit
    (``num``, ``MAX_FRAMES``) stops the generator, which stops the decoders. When the stream really
    ends before a planned time (:class:`SourceEndsEarly`: the decoder reached the end of the data
    well before the claimed duration), the frames before it are kept, a warning says why the
    selection stopped early, and nothing more is planned; unless the container's index lists
    frames past that point (``SourceEndsEarly.truncated``: a cut file): then the error stands.

    Evenly spaced times (:class:`_Steps`) also skip what the file does not hold: when a chunk ends
    with ``_SKIP_RUN`` times or more all showing one frame (a still picture, a gap in the
    timestamps: a crafted file can put its second frame at 10¹² ms), the decoder is asked where the
    next frame is and the times before it are not planned: they would all show that same frame.
    """
    last: Picked | None = None

    def ended(cut: SourceEndsEarly) -> None:
        if cut.truncated:
            raise cut  # the index lists frames past the cut: a damaged file, not a long claim
        end = f"at {_ms(last.time_ms)} ms" if last is not None else "before its first planned time"
        warnings.append(
            f"the video stream ends {end}, long before the {_ms(video.duration_ms)} ms its header "
            "claims (truncated, or a wrong duration): the selection stops there"
        )

    while True:
        chunk = list(itertools.islice(times, _CHUNK))
        if not chunk:
            return
        run = 0  # planned times at the end of the chunk showing the same frame as the one before
        picks = frames_at(video, chunk, exact=exact, decoders=decoders)
        try:
            for t, p in zip(chunk, picks, strict=False):
                run = run + 1 if last is not None and p.pts == last.pts else 0
                last = p
                yield t, p
        except SourceEndsEarly as cut:
            ended(cut)
            return
        finally:
            # Before the video is used again below: the decoders of the chunk stop here.
            close = getattr(picks, "close", None)
            if close is not None:
                close()
        if isinstance(times, _Steps) and run >= _SKIP_RUN:
            try:
                following = video.next_frame_ms(chunk[-1], exact=exact)
                if following is None:
                    # That frame is the last: every later time shows it, or lies past the real
                    # end of a stream whose header claims more (then say so).
                    final = times.last()
                    if final is not None:
                        video.frame_at(final, exact=exact)
                    return
            except SourceEndsEarly as cut:
                ended(cut)
                return
            times.skip_to(following)


def _dhash_samples(
    video: Video, sel: Selection, decoders: int | None, warnings: list[str], start: Fraction | None = None
) -> Generator[tuple[Fraction, Picked, Fraction], None, None]:
    """(planned time, picked frame, score) for every sample (``start``: from the sample before
    ``start``, which is measured for the next one's score but not yielded)."""
    step = sel.interval_ms if sel.interval_ms > 0 else DEFAULT_DHASH_INTERVAL_MS
    times = _Steps(sel.start_ms, step, video.duration_ms)
    warm_up = False
    if start is not None:
        times.skip_to(start)
        warm_up = times.i > 0
        times.i = max(0, times.i - 1)  # the sample before: its hash scores the next one
    prev: int | None = None
    for t, p in _planned(video, times, exact=sel.exact, decoders=decoders, warnings=warnings):
        h = dhash(p.frame)
        if not warm_up:
            yield t, p, _score(prev, h)
        warm_up = False
        prev = h


def dhash_times(  # noqa: PLR0913
    video: Video,
    sel: Selection,
    *,
    after: After | None,
    until: Fraction | None,
    limit: int,
    warnings: list[str],
    decoders: int | None = None,
) -> list[Fraction]:
    """The planned times of the samples an unranked dhash selection (``num`` 0) takes after
    ``after`` and before ``until`` (frames shown at or after it are not taken), at most ``limit``:
    the frames :func:`select_frames` yields there, scored as it scores them (from the sample before
    ``after``), but only counted. Decoding each of these times again gives the same frame."""
    thr = Fraction(sel.threshold)
    start = after.time_ms if after is not None else None
    chosen: list[Fraction] = []
    last: int | None = None
    samples = _dhash_samples(video, sel, decoders, warnings, start)
    try:
        for t, p, score in samples:
            if until is not None and p.time_ms >= until:
                break
            if score <= thr or p.pts == last or (after is not None and p.pts <= after.pts):
                continue
            last = p.pts
            chosen.append(t)
            if len(chosen) >= limit:
                break
    finally:
        samples.close()  # the decoders of the chunk stop before the video is used again
    return chosen


def _dhash(  # noqa: PLR0913
    video: Video,
    sel: Selection,
    max_frames: int,
    warnings: list[str],
    decoders: int | None,
    *,
    after: After | None,
    chosen: Sequence[Fraction] | None = None,
) -> Iterator[Picked]:
    thr = Fraction(sel.threshold)
    done = after.count if after is not None else 0
    if chosen is not None:
        # Settled by a count pass (dhash_times): the frames are known, nothing is scored.
        picks = frames_at(video, chosen, exact=sel.exact, decoders=decoders)
        try:
            yield from _limited(_dedupe(picks), 0, max_frames, warnings, done)
        finally:
            close = getattr(picks, "close", None)
            if close is not None:
                close()
        return
    if sel.num <= 0:
        # No ranking: events stream out as they are found; nothing is held. Resumed: from the
        # sample before the last frame written (its hash scores the next sample, as in one pass).
        start = after.time_ms if after is not None else None
        samples = _dhash_samples(video, sel, decoders, warnings, start)
        events = (p for _, p, score in samples if score > thr)
        yield from _limited(_after(_dedupe(events), after), 0, max_frames, warnings, done)
        return
    # Ranked: every sample is measured again (the ranking needs them all); only the winners after
    # the last frame written are handed out.
    yield from _after(
        _dhash_ranked(video, sel, num_cap=min(sel.num, max_frames), warnings=warnings, decoders=decoders),
        after,
    )


def _dhash_ranked(
    video: Video, sel: Selection, *, num_cap: int, warnings: list[str], decoders: int | None
) -> Iterator[Picked]:
    thr = Fraction(sel.threshold)
    num = num_cap
    frame_bytes = max(1, video.coded_width * video.coded_height * 3 // 2)
    keep_frames = num * frame_bytes <= _DHASH_KEEP_BYTES
    # Min-heap of the best `num`: the root is the weakest (lowest score; on ties the later one).
    heap: list[tuple[Fraction, int, int, Fraction, Picked | None]] = []
    last_pts: int | None = None
    for idx, (t, p, score) in enumerate(_dhash_samples(video, sel, decoders, warnings)):
        if score <= thr or p.pts == last_pts:
            continue
        last_pts = p.pts
        item = (score, -idx, p.pts, t, p if keep_frames else None)
        if len(heap) < num:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)
    chosen = sorted(heap, key=lambda it: -it[1])  # back to time order
    if keep_frames:
        for it in chosen:
            picked = it[4]
            assert picked is not None
            yield picked
        return
    # Second pass: decode only the winners again, at the same planned times (same frames).
    yield from frames_at(video, [it[3] for it in chosen], exact=sel.exact, decoders=decoders)


#: MPS ``BlackLevel``: how far after the start the first snapshot may move past black frames.
BLACK_SCAN_MS = Fraction(5000)
#: ``t_auto``: the window a poster is chosen from (after the start; centred on ``t_auto_<ms>``).
POSTER_WINDOW_MS = Fraction(6000)
#: ``t_auto``: candidates decoded in the window (keyframes when the window holds enough of them).
POSTER_CANDIDATES = 12
#: Width of the gray pictures that posters and black frames are measured on (px): enough for the
#: Laplacian to see a 1080p motion blur, small enough that measuring costs well under 1 ms.
GRAY_WIDTH = 256
#: Poster candidates' decoded pictures are kept (to render the winner without decoding it again)
#: while they fit in this many bytes.
_POSTER_KEEP_BYTES = 64 << 20


def small_gray(frame: av.VideoFrame, width: int = GRAY_WIDTH) -> Gray:
    """A small full-range gray picture of ``frame`` (area-averaged, aspect kept) as a numpy array."""
    import numpy as np  # posters and scenes only: a plain snapshot does not import numpy

    w = min(width, frame.width)
    h = max(1, round(frame.height * w / frame.width))
    small = _reformatter().reformat(frame, width=w, height=h, format="gray", interpolation="AREA")
    plane = small.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(h, plane.line_size)
    return np.ascontiguousarray(rows[:, :w])


def first_unblack(
    video: Video, start_ms: Fraction, *, level: int, threshold: int, keyonly: bool = False
) -> Picked:
    """The first frame from ``start_ms`` (within :data:`BLACK_SCAN_MS`) that is not black.

    Black: more than ``level`` % of the pixels darker than ``threshold`` (MPS ``BlackLevel`` and
    ``PixelBlackThreshold``). ``keyonly``: keyframes only (MPS ``FrameType`` intra). Falls back to
    the frame at ``start_ms`` when every frame of the window is black. Decodes forward and stops at
    the first frame that is not black, so the cost is the black lead-in's.
    """
    from vidsnap.core.poster import is_black

    fallback = video.frame_at(start_ms, exact=not keyonly)
    if not is_black(small_gray(fallback.frame), level, threshold):
        return fallback
    end = start_ms + BLACK_SCAN_MS
    frames = video.keyframes(start_ms) if keyonly else video.every_frame(start_ms)
    for p in frames:
        if p.time_ms >= end:
            break
        if p.pts > fallback.pts and not is_black(small_gray(p.frame), level, threshold):
            return p
    return fallback


def poster_window(video: Video, around_ms: Fraction | None) -> tuple[Fraction, Fraction]:
    """The window a poster is chosen from: :data:`POSTER_WINDOW_MS` from the start (``around_ms``
    None) or centred on ``around_ms``, kept inside the video."""
    duration = video.duration_ms
    if around_ms is None:
        lo = Fraction(0)
    else:
        lo = max(Fraction(0), around_ms - POSTER_WINDOW_MS / 2)
        if duration > 0:
            lo = min(lo, max(Fraction(0), duration - POSTER_WINDOW_MS))
    hi = lo + POSTER_WINDOW_MS
    if duration > 0:
        hi = min(hi, duration)
    return lo, max(hi, lo)


def _poster_candidates(
    video: Video, lo: Fraction, hi: Fraction, keyonly: bool
) -> tuple[list[Fraction], bool]:
    """(candidate times, exact): keyframes when the window holds at least half as many distinct
    keyframes as candidates (a GOP of 1 s or less: a keyframe costs one decode, an exact frame the
    frames before it; fewer keyframes would leave too few candidates to choose from)."""
    n = POSTER_CANDIDATES
    span = hi - lo
    times = [lo + (2 * i + 1) * span / (2 * n) for i in range(n)] if span > 0 else [lo]
    if keyonly:
        return times, False
    desc = video.description
    keys = {desc.keyframe_before(desc.target(t)) for t in times} if desc.key_ts else set()
    return times, 2 * len(keys) < n


def poster_frame(video: Video, lo: Fraction, hi: Fraction, *, keyonly: bool = False) -> Picked:
    """The best poster frame in ``[lo, hi)`` (:mod:`vidsnap.core.poster`), deterministic.

    :data:`POSTER_CANDIDATES` evenly spaced times in the window, served as the keyframes at or
    before them when the window has enough keyframes (or ``keyonly``), else as exact frames (one
    forward decode through the window); each is measured on a small gray picture.
    """
    from vidsnap.core.poster import best_index

    if video.is_cover_art:
        return video.frame_at(0)
    times, exact = _poster_candidates(video, lo, hi, keyonly)
    keep = len(times) * video.coded_width * video.coded_height * 3 // 2 <= _POSTER_KEEP_BYTES
    kept: list[Picked | None] = []
    found: list[Fraction] = []
    grays: list[Gray] = []
    for p in _dedupe(video.frames_at(times, exact=exact)):
        grays.append(small_gray(p.frame))
        found.append(p.time_ms)
        kept.append(p if keep else None)  # else decoded again if it wins
    best = best_index(grays)
    return kept[best] or video.frame_at(found[best], exact=exact)


def _first_frame(video: Video, sel: Selection, first: FirstFrame) -> Picked:
    keyonly = not sel.exact or sel.mode == "key"
    if first.kind == "skip_black":
        return first_unblack(
            video,
            sel.start_ms,
            level=first.black_level,
            threshold=first.pixel_black_threshold,
            keyonly=keyonly,
        )
    lo, hi = poster_window(video, None if sel.start_ms == 0 else sel.start_ms)
    return poster_frame(video, lo, hi, keyonly=keyonly)


def _with_first(video: Video, sel: Selection, first: FirstFrame, picks: Iterator[Picked]) -> Iterator[Picked]:
    """The chosen first frame, then the selection's frames after it (``picks`` is not started
    before the first frame is chosen: one cursor, used by one search at a time)."""
    chosen = _first_frame(video, sel, first)
    yield chosen
    for p in picks:
        if p.pts > chosen.pts:
            yield p


#: ``scene`` mode: the sampling step when ``inter`` is 0 (each cut is then found to the frame).
DEFAULT_SCENE_INTERVAL_MS = Fraction(500)
#: ``scene`` mode: the width of the HSV pictures compared (px).
SCENE_WIDTH = 128


def _small_rgb(frame: av.VideoFrame, width: int = SCENE_WIDTH) -> npt.NDArray[np.uint8]:
    """A small RGB picture of ``frame`` (area-averaged, aspect kept) as an h×w×3 numpy array."""
    import numpy as np

    w = min(width, frame.width)
    h = max(1, round(frame.height * w / frame.width))
    small = _reformatter().reformat(frame, width=w, height=h, format="rgb24", interpolation="AREA")
    plane = small.planes[0]
    rows = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(h, plane.line_size)
    return np.ascontiguousarray(rows[:, : 3 * w].reshape(h, w, 3))


@dataclass
class _ShotSample:
    """One sampled frame of a scene job: where it is and what the shot finder measured."""

    time_ms: Fraction
    pts: int
    sample: Sample


def _scene_samples(
    video: Video, sel: Selection, decoders: int | None, warnings: list[str]
) -> list[_ShotSample]:
    """Every sample of the scene job, measured (small numbers only are kept, not pictures)."""
    from vidsnap.core.scene import Sample, content_change, hsv, is_dark, sharpness

    step = sel.interval_ms if sel.interval_ms > 0 else DEFAULT_SCENE_INTERVAL_MS
    times = _Steps(sel.start_ms, step, video.duration_ms)
    out: list[_ShotSample] = []
    prev = None
    for _, p in _planned(video, times, exact=sel.exact, decoders=decoders, warnings=warnings):
        if out and p.pts == out[-1].pts:
            continue
        cur = hsv(_small_rgb(p.frame))
        change = content_change(prev, cur) if prev is not None else None
        out.append(_ShotSample(p.time_ms, p.pts, Sample(change, is_dark(cur), sharpness(cur))))
        prev = cur
    return out


def _cut_frame(
    video: Video, before: _ShotSample, at: _ShotSample, *, fade: bool, threshold: float
) -> tuple[float, _ShotSample] | None:
    """The first frame of a shot that starts between two samples, and its change score.

    A fade-in: the first bright frame. A cut: the bright frame that changed most from the frame
    before it, if that change passes ``threshold``; None when no single step does (a pan or a
    zoom moved the picture between the samples, gradually: no cut). Decodes the frames between.
    """
    from vidsnap.core.scene import Sample, content_change, hsv, is_dark, sharpness

    best: tuple[float, _ShotSample] | None = None
    prev = None
    for p in video.every_frame(before.time_ms):
        if p.pts > at.pts:
            break
        cur = hsv(_small_rgb(p.frame))
        if prev is not None and p.pts > before.pts and not is_dark(cur):
            here = _ShotSample(p.time_ms, p.pts, Sample(None, False, sharpness(cur)))
            change = content_change(prev, cur)
            if fade:
                return change, here
            if change > threshold and (best is None or change > best[0]):
                best = (change, here)
        prev = cur
    return best


def _shots(video: Video, samples: list[_ShotSample], threshold: float) -> list[tuple[float, _ShotSample]]:
    """(score, first frame) of every shot, in time order: the candidates the samples suggest,
    each found to the frame (and a cut confirmed) by :func:`_cut_frame`."""
    from vidsnap.core.scene import shot_starts

    found: list[tuple[float, _ShotSample]] = []
    for i, score, kind in shot_starts([s.sample for s in samples], threshold):
        if i == 0:
            found.append((score, samples[0]))
            continue
        cut = _cut_frame(video, samples[i - 1], samples[i], fade=kind != "cut", threshold=threshold)
        if cut is not None:
            found.append((cut[0] if kind == "cut" else score, cut[1]))
    return found


def _scene_times(video: Video, sel: Selection, decoders: int | None, warnings: list[str]) -> list[Fraction]:
    """The time of the frame each kept shot is represented by, in time order."""
    from vidsnap.core.scene import DEFAULT_THRESHOLD

    samples = _scene_samples(video, sel, decoders, warnings)
    threshold = float(sel.threshold or DEFAULT_THRESHOLD)
    shots = _shots(video, samples, threshold)
    bounds = [first.pts for _, first in shots[1:]]
    kept = list(range(len(shots)))
    if sel.num > 0:
        # The num strongest shot starts (ties: the earlier), back in time order.
        kept = sorted(sorted(kept, key=lambda k: -shots[k][0])[: sel.num])
    chosen: list[Fraction] = []
    for k in kept:
        first = shots[k][1]
        if sel.pick_best:
            end = bounds[k] if k < len(bounds) else None
            inside = [s for s in samples if s.pts > first.pts and (end is None or s.pts < end)]
            candidates = [first, *(s for s in inside if not s.sample.dark)]
            first = max(candidates, key=lambda s: s.sample.sharp)  # max keeps the earliest of ties
        chosen.append(first.time_ms)
    return chosen


def _scene(  # noqa: PLR0913
    video: Video,
    sel: Selection,
    max_frames: int,
    warnings: list[str],
    decoders: int | None,
    *,
    after: After | None,
) -> Iterator[Picked]:
    """One frame per shot (README: Request languages, ``m_scene``); see :mod:`vidsnap.core.scene`.

    Resumed, the shots are found again (they depend on every sample); only frames after the last
    one written are decoded and handed out."""
    times = _scene_times(video, sel, decoders, warnings)
    if after is not None:
        times = [t for t in times if t > after.time_ms]
    picks = frames_at(video, times, exact=True, decoders=decoders)
    done = after.count if after is not None else 0
    yield from _limited(_after(_dedupe(picks), after), sel.num, max_frames, warnings, done)


def select_frames(  # noqa: PLR0913
    video: Video,
    sel: Selection,
    *,
    max_frames: int,
    warnings: list[str],
    decoders: int | None = None,
    after: After | None = None,
    chosen: Sequence[Fraction] | None = None,
) -> Generator[Picked, None, None]:
    """The frames a selection asks for (README: Request languages), lazily, in presentation order.

    ``warnings`` receives a message when ``max_frames`` stops a ``num`` 0 selection early, and when
    the video's duration, over which times are planned, may be short (``Video.duration_note``).
    ``decoders`` caps the decoders serving planned times at once (see :mod:`vidsnap.core.parallel`).
    An attached picture (cover art) is the one frame of any selection.

    ``after``: resume where an earlier attempt stopped; the frames a single pass yields after that
    one, counted on from it (``num`` and ``max_frames`` include the frames done). Planned times
    before it are not decoded (``inter``, ``key``, ``avg``, unranked ``dhash``: the last frame
    written, or for dhash the sample before it, is decoded once more); ranked ``dhash`` and ``scene``
    measure every sample again but decode no earlier winner.

    ``chosen`` (unranked ``dhash`` only): the planned times of the frames to take, as
    :func:`dhash_times` found them (a window of a long task); they are decoded, not scored again.
    """
    if video.is_cover_art:
        if after is None:
            yield video.frame_at(0)
        return
    if video.duration_note and sel.mode in ("inter", "avg", "dhash", "scene"):
        # These plan their times over the duration: say why a result may stop early.
        warnings.append(f"{video.duration_note}: the selection may end before the video does")
    if sel.mode == "dhash":
        yield from _dhash(video, sel, max_frames, warnings, decoders, after=after, chosen=chosen)
        return
    if sel.mode == "scene":
        yield from _scene(video, sel, max_frames, warnings, decoders, after=after)
        return
    start = sel.start_ms if after is None else after.time_ms
    picks: Iterator[Picked]
    if sel.mode == "key":
        picks = video.keyframes(start)
    elif sel.mode == "avg":
        picks = _avg(video, sel, decoders, warnings, start)
    else:
        picks = _inter(video, sel, decoders, warnings, start)
    if sel.first is not None and after is None:  # resumed: the chosen first frame is written
        picks = _with_first(video, sel, sel.first, picks)
    done = after.count if after is not None else 0
    yield from _limited(_after(_dedupe(picks), after), sel.num, max_frames, warnings, done)
