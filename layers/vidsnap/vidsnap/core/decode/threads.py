"""How many cores there are, and how many threads one decoder gets.

Every open decoder keeps its threads until it is freed, and several decoders often run at once
(:mod:`vidsnap.core.parallel`, a busy server): the counts here keep the threads in use at about one
per core (docs/ARCHITECTURE.md, decode).
"""

from __future__ import annotations

import os

__all__ = ["MAX_DECODER_THREADS", "THREAD_TYPE_BULK", "THREAD_TYPE_SINGLE", "cpu_cores", "decoder_threads"]

# Threading, measured on this 2-core machine (PyAV 18 / FFmpeg 8; synth 1920×1080 30 fps H.264,
# GOP 250, 2 B-frames, 60 s; open + one frame per call, mean of 10 calls at scattered times;
# before frames that cannot be the answer were skipped, see Cursor._skip_mode):
#                 exact frame   keyframe (m_fast)   frames_at every 10 s
#   SLICE           0.215 s        0.023 s              0.95 s
#   FRAME           0.327 s        0.064 s              1.22 s
#   AUTO (both)     0.192 s        0.052 s              0.74 s
# With non-reference frames skipped (skip_frame NONREF) what is left to decode is the chain of
# reference frames, each predicted from the one before: frame threads have little to overlap and
# keep their pipeline latency. Benchmark 1080p 14 Mbit/s, GOP 250, 3 B-frames (open + frame_at,
# median of 7 × 4 times): exact AUTO 145 ms / SLICE 140 ms; keyframe AUTO 70 ms / SLICE 42 ms.
# 900 frames from a keyframe, NONREF: FRAME 0.58-0.71 s (0.8 s CPU), SLICE 0.62 s (0.63 s CPU);
# every frame: FRAME 0.94-1.26 s, SLICE 1.14-1.63 s. Bulk jobs either skip (inter/avg/dhash) or
# are bound by converting and encoding the many frames they output (every frame, keyframes), so
# one decoding core is enough and the second one converts and encodes (engine pipelines them).
# The thread type must be fixed before the decoder opens, so it is chosen per Video.
THREAD_TYPE_SINGLE = "SLICE"
THREAD_TYPE_BULK = "SLICE"
# Threads of one decoder, at most. FFmpeg's automatic count (thread_count 0) is cores + 1, up to 16,
# and every open decoder keeps its threads until it is freed: a local server on a 16-core machine
# with 40 requests decoding at once ran 17 × 40 threads. The one-frame and skipping bulk paths
# gain little past a few threads (the table above: one reference chain; x264 writes one slice per
# picture), and several decoders at once (vidsnap.core.parallel, a busy server) share the cores
# anyway, so a decoder gets one thread per core up to this cap unless told fewer.
MAX_DECODER_THREADS = 4


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a Lambda sandbox or container sets)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def decoder_threads(sharing: int = 1) -> int:
    """Threads for one decoder when ``sharing`` decoders run at once: the cores split between
    them, at least 1, at most :data:`MAX_DECODER_THREADS`."""
    return max(1, min(cpu_cores(), MAX_DECODER_THREADS) // max(1, sharing))
