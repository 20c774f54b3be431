"""Shared fixtures: synthetic media built lazily with :mod:`vidsnap.local.synth` and cached per session,
a fake-AWS environment, and the Lambda functions with a Lambda context.

Media are small (160×90 to 320×180, 1–4 s) so the whole suite stays fast on two cores. Each
fixture file is built the first time a test asks for it, then reused.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vidsnap.core.blockio import BlockReader
from vidsnap.core.engine import OpenVideos
from vidsnap.local import synth

ROOT = Path(__file__).resolve().parents[1]

#: Fake credentials for moto: the machine's own must never be picked up by a test. Not the demo's
#: ``vidsnap.local.demo.FAKE_AWS_ENV``: that one also plays a Lambda container (a function name and
#: Powertools settings), which a test is only when it says so (see UNSET_AWS_ENV).
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
#: Variables that would send boto3 somewhere else than moto, or make the code think it runs in Lambda;
#: and a deployment's SIGNING_SECRET_PARAMETER, which would make handlers fetch a secret moto lacks.
UNSET_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_LAMBDA_FUNCTION_NAME",
    "SIGNING_SECRET_PARAMETER",
)

#: name -> (file name, make_video keyword arguments). Small on purpose.
MEDIA: dict[str, tuple[str, dict[str, Any]]] = {
    "mp4_h264": ("h264.mp4", {"duration_s": 3, "gop": 25, "bframes": 2}),
    "mp4_moov_end": ("moov_end.mp4", {"duration_s": 3, "gop": 25, "bframes": 2, "faststart": False}),
    "mov": ("clip.mov", {"duration_s": 2, "gop": 20, "bframes": 2}),
    "mkv": ("clip.mkv", {"duration_s": 2, "gop": 20, "bframes": 3, "audio": True}),
    "webm_vp9": ("clip.webm", {"codec": "libvpx-vp9", "duration_s": 2, "gop": 20, "bframes": 0}),
    "ts_open_gop": (
        "open.ts",
        {"duration_s": 3, "gop": 12, "bframes": 3, "open_gop": True, "start_time_s": 1.4, "audio": True},
    ),
    "avi_mpeg4": ("clip.avi", {"codec": "mpeg4", "duration_s": 2, "gop": 20, "bframes": 2}),
    "mp4_hevc": ("hevc.mp4", {"codec": "libx265", "duration_s": 2, "gop": 20, "bframes": 2}),
    "mp4_hevc10": (
        "hevc10.mp4",
        {"codec": "libx265", "duration_s": 2, "gop": 20, "bframes": 2, "pix_fmt": "yuv420p10le"},
    ),
    "mp4_vfr": ("vfr.mp4", {"duration_s": 3, "gop": 15, "bframes": 2, "vfr": True}),
    "mp4_rot90": ("rot90.mp4", {"duration_s": 1, "gop": 10, "rotation": 90}),
    "mp4_rot270": ("rot270.mp4", {"duration_s": 1, "gop": 10, "rotation": 270, "width": 320, "height": 180}),
    "mp4_offset": ("offset.mp4", {"duration_s": 2, "gop": 25, "bframes": 2, "start_time_s": 0.5}),
    "mp4_4s": ("four.mp4", {"duration_s": 4, "gop": 25, "bframes": 2}),
    "mp4_long_gop": ("longgop.mp4", {"duration_s": 4, "gop": 50, "bframes": 2, "fps": 30}),
    "mp4_cuts": ("cuts.mp4", {"duration_s": 4, "gop": 25, "bframes": 2, "scene_cuts": [1.5, 2.5, 3.2]}),
}
DEFAULTS: dict[str, Any] = {"width": 160, "height": 90}
#: One clip of every container and codec vidsnap is tested on (and of rotation, VFR, an offset start).
CONTAINERS = [
    "mp4_h264",
    "mp4_moov_end",
    "mov",
    "mkv",
    "webm_vp9",
    "ts_open_gop",
    "avi_mpeg4",
    "mp4_hevc",
    "mp4_hevc10",
    "mp4_vfr",
    "mp4_rot90",
    "mp4_rot270",
    "mp4_offset",
]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for synthesised media."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_media(media_dir: Path) -> Callable[[str], synth.SynthInfo]:
    """Factory: ``make_media(name)`` builds (once) the clip named in :data:`MEDIA`."""
    cache: dict[str, synth.SynthInfo] = {}

    def build(name: str) -> synth.SynthInfo:
        if name not in cache:
            filename, kwargs = MEDIA[name]
            cache[name] = synth.make_video(media_dir / filename, **{**DEFAULTS, **kwargs})
        return cache[name]

    return build


@pytest.fixture(scope="session")
def cover_m4a(media_dir: Path) -> Path:
    """An AAC .m4a with a PNG cover."""
    return Path(synth.make_audio_with_cover(media_dir / "cover.m4a"))


@pytest.fixture(scope="session")
def cover_mp3(media_dir: Path) -> Path:
    """An MP3 with a JPEG cover (ID3v2 APIC)."""
    return Path(synth.make_audio_with_cover(media_dir / "cover.mp3"))


@pytest.fixture(scope="session")
def audio_only(media_dir: Path) -> Path:
    """An AAC .m4a without a picture."""
    return Path(synth.make_audio_only(media_dir / "tone.m4a"))


@pytest.fixture(scope="session")
def gops(media_dir: Path) -> Path:
    """6 s at 25 fps, a keyframe every 30 frames (5 GOPs), 3 B-frames: the windows' tests' clip."""
    path = media_dir / "gops.mp4"
    synth.make_video(path, duration_s=6, gop=30, bframes=3, width=160, height=90)
    return path


def plan_of(task: Any, source: Path, **kw: Any) -> Any:
    """``plan_windows`` of ``task`` on the video at ``source``."""
    from vidsnap.core.engine import open_video
    from vidsnap.core.windows import plan_windows

    with open_video(source, bulk=True) as video:
        return plan_windows(video, task, **kw)


def handed_over(task: Any, plan: Any) -> tuple[Any, list[Any]]:
    """``task`` and ``plan``'s windows as an invocation gets them: through JSON."""
    from vidsnap.core.plan import Task
    from vidsnap.core.windows import Window

    task = Task.from_plain(json.loads(json.dumps(task.plain())))
    windows = [Window.from_plain(json.loads(json.dumps(w.plain()))) for w in plan.windows]
    assert windows == list(plan.windows)
    return task, windows


def saved_as(*parts: tuple[str, str]) -> Any:
    """A task of (process, key template) jobs: each OSS process saved as the template says."""
    import base64

    from vidsnap.core.lang import parse_process
    from vidsnap.core.plan import Task

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    jobs = tuple(
        j
        for process, template in parts
        for j in parse_process(f"{process}|sys/saveas,o_{b64(template)}").jobs
    )
    return Task(jobs=jobs)


def stop_every(frames: int) -> Callable[[], bool]:
    """A clock that runs out after every ``frames`` questions (roughly: frames written)."""
    asked = [0]

    def should_stop() -> bool:
        asked[0] += 1
        return asked[0] % frames == 0

    return should_stop


# -- AWS and Lambda ----------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake AWS credentials and region (:data:`FAKE_AWS_ENV`), no profile or endpoint override.

    Only the environment: start ``moto.mock_aws()`` in the test's own fixture.
    """
    for name in UNSET_AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)


def _load_function(name: str) -> ModuleType:
    """A fresh copy of ``functions/<name>/app.py`` (a cold start), imported from its file."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"{name}_app_{uuid.uuid4().hex}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_function() -> Callable[[str], ModuleType]:
    """Factory: ``load_function("object_get")`` imports ``functions/object_get/app.py`` afresh."""
    return _load_function


@pytest.fixture
def lambda_context() -> Callable[..., Any]:
    """Factory: ``lambda_context(function_name, memory_limit_in_mb=..., timeout_s=...)``.

    The Lambda context double of :mod:`vidsnap.local.demo` (a new ``aws_request_id`` each call, the ARN in
    moto's account).
    """
    from vidsnap.local.demo import LambdaContext

    return LambdaContext


class MemorySink:
    """A sink that keeps what it is given, to check keys, types and bytes."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str | None, str], tuple[bytes, str]] = {}

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:
        self.objects[(bucket, key)] = (data, content_type)
        return f"mem://{bucket or '-'}/{key}"


@dataclass
class CountingSink:
    """A sink keeping the last bytes of each key (bucket ignored) and counting every put."""

    objects: dict[str, bytes] = field(default_factory=dict)
    puts: list[str] = field(default_factory=list)

    def put(self, bucket: str | None, key: str, data: bytes, content_type: str) -> str:  # noqa: ARG002
        self.objects[key] = data
        self.puts.append(key)
        return f"mem://{bucket or '-'}/{key}"


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, float]]:
    """The metrics documents vidsnap.aws.observe would publish (inside Lambda), as {name: value}."""
    import vidsnap.aws.observe

    documents: list[dict[str, float]] = []

    def emit(values: dict[str, tuple[Any, float]]) -> None:
        documents.append({name: value for name, (_, value) in values.items()})

    monkeypatch.setattr(vidsnap.aws.observe, "emit", emit)
    return documents


class MemoryBlockReader(BlockReader):
    """A range-read source over bytes in memory, counting requests like the S3 reader does and
    recording the threads it fetched on."""

    def __init__(self, data: bytes, *, block_size: int, cache_blocks: int) -> None:
        super().__init__(size=len(data), block_size=block_size, cache_blocks=cache_blocks)
        self.data = data
        self.threads: set[str] = set()

    def _fetch(self, start: int, end: int) -> bytes:
        self.threads.add(threading.current_thread().name)
        return self.data[start : end + 1]


#: Every OpenVideos cache made so far (weakly: a cache still goes when its app goes).
_OPEN_VIDEOS: weakref.WeakSet[OpenVideos] = weakref.WeakSet()
_open_videos_init = OpenVideos.__init__


def _tracked_init(self: OpenVideos, *args: Any, **kwargs: Any) -> None:
    _open_videos_init(self, *args, **kwargs)
    _OPEN_VIDEOS.add(self)


OpenVideos.__init__ = _tracked_init  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _close_open_videos() -> Iterator[None]:
    """Close the videos that apps keep open between requests, at the end of each test.

    A deployed app keeps its last video open for the life of its process, for warm repeats; a test's
    app lives only as long as the test, and a file it left open would be closed by the garbage
    collector with a ResourceWarning, which fails the suite. A later test that shares a
    module-scoped app opens the video again, as a new process would.
    """
    yield
    for videos in list(_OPEN_VIDEOS):
        videos.close()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's server on 127.0.0.1 (a free port), for tests that need real HTTP (range requests,
    presigned URLs, a proxy in front); one per test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the timings tests/test_sam_local.py measured (worker output is not shown under xdist)."""
    for report in terminalreporter.stats.get("passed", []):
        for name, value in getattr(report, "user_properties", []):
            if name == "sam_local_seconds" and report.when == "call":
                terminalreporter.write_line(f"sam local timings (s): {value}")
