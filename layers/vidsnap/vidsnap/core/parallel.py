"""Serving a job's planned times with several decoders at once, one per core.

An asynchronous job's planned times (every 10 s, 10 evenly spaced, dhash samples) fall into *runs*:
times that one decoder serves going forward from one seek (:meth:`Video.runs`). Runs do not depend
on each other, so worker threads each serve some of them with their own decoder (the job's video
for the first worker, :meth:`Video.clone` for the others), and the caller gets the frames back in
the planned order. PyAV releases the GIL while it demuxes and decodes, so N workers use N cores.

Why not the decoder's own threads: once frames that cannot be the answer are skipped
(``decode.cursor``, NONREF), what is left is a chain of reference frames, each predicted from the one
before, and the x264/x265 streams people upload have one slice per picture: neither frame nor slice
threads find much to overlap there (measured in ``decode.threads``). Runs are
independent, so decoders on separate runs overlap fully. Measured on the benchmark machine's two
vCPUs (which give 1.6-1.8× one when both decode): decoding every 10 s of the 60 s 720p clip with
film grain 387 → 235 ms, every 60 s of the 10-minute 1080p one 700 → 620 ms; whole jobs: 720p grain
0.52 → 0.39 s, dhash every 1 s on the 1080p video 20.0 → 16.9 s (docs/PERFORMANCE.md, lever 17).

The work is shared before it starts: the runs in time order, each to the worker with the least
work so far (work estimated from the distance to the run's keyframe), so the workers advance
through the video side by side; each worker serves its runs in time order. Each worker keeps at
most ``_AHEAD`` frames ready, which bounds the memory: a decoded picture per slot, whatever the
job's length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction

from vidsnap.core.decode import Picked, Video, cpu_cores, decoder_threads
from vidsnap.core.errors import UndecodableMedia

__all__ = ["available_cores", "frames_at"]

#: More decoders than this bring nothing: the caller's conversion and encoding keep a core busy.
MAX_DECODERS = 4
#: Frames a worker may hold ready before the caller takes them: enough for a typical run (a GOP's
#: planned times), so that a worker finishing a run early goes on instead of waiting for the caller
#: (storyboard of the 10-minute 1080p video: 15.7 s with 2, 12.5 s with 4; ~10 MB more at 1080p).
_AHEAD = 4
#: How often a blocked worker checks whether the caller has gone (seconds).
_POLL_S = 0.05

_Item = tuple[int, Picked | None, BaseException | None]


def available_cores() -> int:
    """The cores this process may run on (see :func:`vidsnap.core.decode.cpu_cores`)."""
    return cpu_cores()


def frames_at(
    video: Video, times_ms: Sequence[Fraction], *, exact: bool = True, decoders: int | None = None
) -> Iterator[Picked]:
    """:meth:`Video.frames_at` on up to ``decoders`` threads (None: one per core, at most 4).

    Yields the same frames in the same order. Falls back to ``video`` alone when there is one run,
    one decoder, or a source that cannot be opened twice (see :meth:`Video.clone`). A failure is
    raised where the sequential decode would have raised it: after the frames planned before it.
    """
    times = list(times_ms)
    wanted = min(available_cores(), MAX_DECODERS) if decoders is None else decoders
    runs = video.runs(times) if wanted > 1 and len(times) > 1 and video.can_clone else []
    if len(runs) < 2:
        yield from video.frames_at(times, exact=exact)
        return
    yield from _Pool(video, times, runs, min(wanted, len(runs)), exact).frames()


class _Pool:
    """Worker threads serving their share of runs; the frames come back in planned order."""

    def __init__(
        self, video: Video, times: list[Fraction], runs: list[range], workers: int, exact: bool
    ) -> None:
        self.video = video
        self.times = times
        self.exact = exact
        self.shares: list[list[range]] = [[] for _ in range(workers)]
        self.owner: list[int] = [0] * len(times)
        # Runs in time order, each to the worker with the least work so far: the caller takes the
        # frames in time order and a worker holds only _AHEAD of them, so the workers must advance
        # through the video side by side. Longest-first (LPT) balanced the totals as well, but it
        # gave each worker long stretches of consecutive runs when costs repeat (every GOP alike):
        # one worker then waited, its queue full, while the other did its stretch, and two
        # decoders took as long as one (a storyboard of the 10-minute video: 22 s either way).
        costs = [video.run_cost([times[i] for i in run]) for run in runs]
        load = [0] * workers
        for r, run in enumerate(runs):
            w = min(range(workers), key=load.__getitem__)
            load[w] += costs[r]
            self.shares[w].append(run)
            for i in run:
                self.owner[i] = w
        self.queues: list[queue.Queue[_Item]] = [queue.Queue(maxsize=_AHEAD) for _ in range(workers)]
        self.stop = threading.Event()

    def frames(self) -> Iterator[Picked]:
        threads = [
            threading.Thread(target=self._work, args=(w,), name=f"vidsnap-decode-{w}", daemon=True)
            for w in range(len(self.shares))
        ]
        for t in threads:
            t.start()
        try:
            for i, w in enumerate(self.owner):
                index, picked, error = self.queues[w].get()
                if error is not None:
                    raise error
                assert index == i
                assert picked is not None
                yield picked
        finally:
            self.stop.set()
            for t in threads:
                t.join()

    def _put(self, w: int, item: _Item) -> bool:
        """Hand ``item`` to the caller; False once the caller has stopped listening."""
        while not self.stop.is_set():
            try:
                self.queues[w].put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, w: int) -> None:
        video: Video | None = self.video if w == 0 else None
        index = -1
        try:
            if video is None:
                # The decoders share the cores: a clone's own decoder threads would only compete.
                video = self.video.clone(threads=decoder_threads(len(self.shares)))
                if video is None:
                    raise UndecodableMedia("the source could not be opened a second time")
            for run in self.shares[w]:
                frames = video.frames_at([self.times[i] for i in run], exact=self.exact)
                for index in run:
                    if self.stop.is_set() or not self._put(w, (index, next(frames), None)):
                        return
        except BaseException as exc:  # handed to the caller's thread, raised there
            self._put(w, (index, None, exc))
        finally:
            if video is not None and video is not self.video:
                video.close()
