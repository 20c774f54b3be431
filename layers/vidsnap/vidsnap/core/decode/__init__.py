"""Frame-accurate random access to a video with PyAV (README: Request languages).

The rule everything here implements: *the frame shown at t* is the last frame, in presentation
order, whose pts ≤ ``start_pts + t / 1000 / time_base``, compared as exact rationals. ``start_pts``
is the pts of the first frame in presentation order (normally ``stream.start_time``; decoding
the first frame also covers AVI/MPEG-4 files whose header start time is off by the B-frame delay).

The package, in the order a request goes through it (docs/ARCHITECTURE.md, decode):

* :mod:`.video` — :class:`Video`, the public face: times in milliseconds, errors mapped.
* :mod:`.opening` — opening a source builds its description, decoding what it must.
* :mod:`.stream` — :class:`StreamDescription`, what opening learnt, frozen and shared by a
  Video's clones; :class:`Picked`.
* :mod:`.cursor` — the decoding state machine (container, demuxer, position, last frame) and
  the seek strategy; a clone is a new cursor over the same description.
* :mod:`.quirks` — containers whose timestamps or seeking need special handling (AVI, raw
  elementary streams, MPEG-TS, MPEG program streams, open GOPs), each with its evidence.
* :mod:`.budget` — how many frames one requested frame may cost (docs/LIMITS.md).
* :mod:`.container`, :mod:`.guard`, :mod:`.threads` — opening a container within the size
  limit, the read guard and the errors caught at the PyAV boundary, decoder thread counts.

Every PyAV/FFmpeg or I/O failure is turned into :class:`~vidsnap.core.errors.UnsupportedMedia`
(not a media file we can read) or :class:`~vidsnap.core.errors.UndecodableMedia` (truncated,
corrupt, nothing at the requested time) at this boundary.
"""

from __future__ import annotations

from vidsnap.core.decode.stream import Picked, StreamDescription
from vidsnap.core.decode.threads import MAX_DECODER_THREADS, cpu_cores, decoder_threads
from vidsnap.core.decode.video import Video

__all__ = ["MAX_DECODER_THREADS", "Picked", "StreamDescription", "Video", "cpu_cores", "decoder_threads"]
