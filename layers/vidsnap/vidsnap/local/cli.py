"""The ``vidsnap`` command line (README: What it is): ``run`` a request locally, ``serve`` a folder, ``demo``.

``vidsnap run SOURCE PROCESS --out DIR`` prints the notification document (README) on stdout and
exits 0, or prints the documented error body on stderr and exits 1 (2 for command-line usage errors).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from vidsnap.core.engine import Limits, Output, Source, run_task, snapshot
from vidsnap.core.errors import BadRequest, as_vidsnap_error
from vidsnap.core.naming import split_s3_uri
from vidsnap.core.plan import SnapshotRequest, SourceRef, Task
from vidsnap.core.writer import Composition


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vidsnap`` console script and ``python -m vidsnap``."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidsnap", description="Video frame capture, on the exact frame.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a snapshot request or task on a local file or s3:// object")
    run.add_argument("source", help="a local video file or s3://bucket/key")
    run.add_argument(
        "process", help="a process string (video/snapshot,... or video/snapshots,...) or a JSON task file"
    )
    run.add_argument("--out", required=True, type=Path, help="folder the images are written under")
    run.add_argument(
        "--max-frames", type=int, default=Limits.max_frames, help="frames per task (default %(default)s)"
    )
    run.add_argument("--max-pixels", type=int, default=Limits.max_pixels, help="pixels per image")
    run.add_argument(
        "--decoders", type=_positive, default=None, help="decoders at once (default: one per core, at most 4)"
    )
    run.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    run.set_defaults(func=_cmd_run)

    serve = sub.add_parser("serve", help="serve a folder of videos over HTTP on 127.0.0.1")
    serve.add_argument("--root", required=True, type=Path, help="folder of videos to serve")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="run the end-to-end demo on an embedded AWS (moto); no account needed")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="folder for the demo's images")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    request_id = str(uuid.uuid4())
    started = datetime.now(UTC)
    limits = Limits(max_frames=args.max_frames, max_pixels=args.max_pixels, decoders=args.decoders)
    try:
        request = _load_request(args.process)
        with ExitStack() as stack:
            source, ref = _open_source(args.source, stack)
            compositions: list[Composition] = []
            if isinstance(request, SnapshotRequest):
                outputs, warnings, task = _run_sync(source, ref, request, args.out, limits), [], None
            else:
                task = request
                bar = None if args.no_progress else _ProgressBar.for_stream(sys.stderr)
                outcome = run_task(
                    task, source, _local_sink(args.out), limits=limits, progress=bar, source_ref=ref
                )
                if bar:
                    bar.close()
                outputs, warnings = outcome.outputs, outcome.warnings
                compositions = outcome.compositions
    except Exception as exc:  # the edge: every failure becomes a documented body and a non-zero exit
        err = as_vidsnap_error(exc)
        print(json.dumps(err.to_dict(request_id)), file=sys.stderr)
        return 1
    manifest = _manifest(
        task, ref, request_id, started, outputs=outputs, warnings=warnings, compositions=compositions
    )
    print(json.dumps(manifest, indent=2))
    return 0


def _load_request(process: str) -> SnapshotRequest | Task:
    """A process string, or a path to a JSON task file (IMM/MPS/OSS forms)."""
    from vidsnap.core.lang import parse_process, parse_task

    path = Path(process)
    if process.lstrip().startswith(("{", "[")):
        return parse_task(process)
    if not process.startswith(("video/", "image/")) and path.suffix.lower() == ".json":
        try:
            return parse_task(path.read_bytes())
        except OSError as exc:
            raise BadRequest(
                f"cannot read the task file {process!r}: {exc.strerror}", param="process"
            ) from exc
    return parse_process(process)


def _open_source(source: str, stack: ExitStack) -> tuple[Source, SourceRef]:
    if source.startswith("s3://"):
        from vidsnap.aws.clients import Clients
        from vidsnap.aws.s3io import open_s3

        try:
            bucket, key = split_s3_uri(source)
        except ValueError:
            raise BadRequest(
                f"an s3:// source needs a bucket and a key, got {source!r}", param="source"
            ) from None
        reader: BinaryIO = stack.enter_context(open_s3(Clients().s3, bucket, key))
        return reader, SourceRef(key=key, bucket=bucket)
    if not Path(source).is_file():
        from vidsnap.core.errors import NotFound

        raise NotFound(f"no such file: {source}")
    return source, SourceRef(key=source)


def _local_sink(out: Path) -> Any:
    from vidsnap.aws.storage import LocalSink

    return LocalSink(out)


def _run_sync(
    source: Source, ref: SourceRef, req: SnapshotRequest, out: Path, limits: Limits
) -> list[Output]:
    rendered = snapshot(source, req, limits=limits)
    name = Path(ref.key).stem or "snapshot"
    key = f"{name}_t{req.time_ms}{'' if req.exact else '_fast'}.{req.image.format}"
    uri = _local_sink(out).put(None, key, rendered.data, rendered.content_type)
    return [Output(uri, rendered.time_ms, rendered.width, rendered.height, len(rendered.data))]


def _manifest(
    task: Task | None,
    ref: SourceRef,
    request_id: str,
    started: datetime,
    *,
    outputs: list[Output],
    warnings: list[str],
    compositions: list[Composition],
) -> dict[str, Any]:
    from vidsnap.aws.notify import build_message

    if task:
        from vidsnap.core.plan import task_id

        tid = task_id(ref, None, task)
    else:
        tid = f"sync-{request_id}"
    return build_message(
        tid,
        "Succeeded",
        code="Success",
        message="",
        request_id=request_id,
        start=started,
        end=datetime.now(UTC),
        sources=[ref.uri],
        outputs=outputs,
        warnings=warnings,
        user_data=task.user_data if task else None,
        compositions=compositions,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from vidsnap.local.serve import serve

        return serve(args.root, host=args.host, port=args.port)
    except KeyboardInterrupt:  # Ctrl+C outside the server loop: while starting, or stopping again
        print("vidsnap serve: stopped", file=sys.stderr)
        return 130  # 128 + SIGINT, as serve() returns after Ctrl+C


def _cmd_demo(args: argparse.Namespace) -> int:
    from vidsnap.local.demo import run_demo

    return run_demo(args.out)


class _ProgressBar:
    """A dependency-free progress bar on a terminal's stderr; silent elsewhere."""

    WIDTH = 30

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.last = -1

    @classmethod
    def for_stream(cls, stream: TextIO) -> _ProgressBar | None:
        """A bar when ``stream`` is a terminal, else None (pipes and CI stay clean)."""
        return cls(stream) if stream.isatty() else None

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * 100)
        if percent == self.last:
            return
        self.last = percent
        filled = self.WIDTH * percent // 100
        elapsed = time.monotonic() - self.started
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3d}% {elapsed:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        self.stream.write("\n")
        self.stream.flush()


__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
