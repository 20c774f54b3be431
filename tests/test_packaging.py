"""Packaging checks (README: Deploy): ``sam build`` of template.yaml, sizes, and what Lambda will import.

How it works, and why:

- **aws-sam-cli comes from PyPI, into its own cached venv** (``$VIDSNAP_SAM_HOME``, default
  ``<the test venv>/sam-cli``). It pins many packages (cfn-lint, boto3, Flask, jsonschema, pydantic,
  ...) that overlap the project's dev dependencies (moto[server] brings Flask, cfn-lint is used
  directly), so installing it into the project venv would let either side break the other. The first
  run pays about a minute for the install; later runs reuse it (a stamp file records the version
  spec). If PyPI cannot be reached the test is skipped with that reason; any other install failure
  is a failure.
- **``sam build`` without a container**: the layer uses ``BuildMethod: makefile``
  (layers/vidsnap/Makefile), which downloads manylinux wheels for CPython 3.13 whatever Python runs
  it; the two functions have no requirements, so the python builder only copies them.
- **The import check runs the way Lambda does**: a fresh interpreter with *only* the function
  directory, the built layer (``/opt/python`` and ``/opt/python/lib/python3.13/site-packages``) and a
  stand-in for the runtime's own boto3 (``/var/runtime``) on its path: ``-I -S`` drops site-packages,
  user site and ``PYTHON*`` variables. The layer's numpy and Pillow are CPython 3.13 builds, so this
  needs a CPython 3.13 interpreter: ``$VIDSNAP_PYTHON313``, ``python3.13`` on PATH, or one under
  ``~/.pyenv/versions`` (these machines ship one there). Without one, the same Makefile builds a
  second variant of the layer for the host Python (``PY_VERSION``/``PYTHON`` overrides) and the import
  check runs against that, while the cp313 layer is still checked for its contents and size.
- Beyond importing, each process decodes a real H.264 clip with the layer's PyAV/FFmpeg through
  ``vidsnap.core.engine.snapshot`` and answers a function URL event through the handler (mangum →
  Starlette → parser), so a layer missing a shared library or a data file fails here, not in AWS.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: aws-sam-cli release line the checks are written against (any 1.x from 1.130 has makefile builds
#: without a container and the python3.13 runtime).
SAM_SPEC = "aws-sam-cli>=1.130,<2"
#: Lambda's limit for a function and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
LAYER = "VidsnapLayer"
FUNCTIONS = {
    "ObjectGetFunction": "functions/object_get",
    "AsyncSnapshotsFunction": "functions/async_snapshots",
    "FanoutFunction": "functions/fanout",
}
NETWORK_ERRORS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


# --------------------------------------------------------------------------------------------------
# helpers


def _du(path: Path) -> int:
    """Unzipped size of a directory tree in bytes (file sizes, as Lambda counts them)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock across processes (pytest-xdist workers share the caches)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], *, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )


def _pip_failed(what: str, result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    if any(marker in output for marker in NETWORK_ERRORS):
        pytest.skip(f"PyPI is unreachable, cannot install {what}: {output.strip().splitlines()[-1]}")
    pytest.fail(f"installing {what} failed (exit {result.returncode}):\n{output[-4000:]}")


def _sam_home() -> Path:
    if os.environ.get("VIDSNAP_SAM_HOME"):
        return Path(os.environ["VIDSNAP_SAM_HOME"])
    if os.access(sys.prefix, os.W_OK) and sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "sam-cli"  # inside the test venv: goes away with it
    return Path.home() / ".cache" / "vidsnap" / "sam-cli"


def _ensure_sam(home: Path) -> Path:
    """The ``sam`` executable of a venv at ``home/venv`` holding ``SAM_SPEC`` (installed once)."""
    venv = home / "venv"
    sam = venv / "bin" / "sam"
    stamp = venv / ".vidsnap-sam-spec"
    with _locked(home / ".lock"):
        if sam.is_file() and stamp.is_file() and stamp.read_text() == SAM_SPEC:
            return sam
        shutil.rmtree(venv, ignore_errors=True)
        # The base interpreter, not this venv's: the SAM venv must not inherit the project's packages.
        base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        made = _run([str(base if base.exists() else sys.executable), "-m", "venv", str(venv)], timeout=300)
        assert made.returncode == 0, made.stderr
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
        result = _run([*pip, SAM_SPEC], timeout=900)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            _pip_failed("aws-sam-cli", result)
        stamp.write_text(SAM_SPEC)
    return sam


def _find_python313() -> str | None:
    """A CPython 3.13 interpreter (Lambda's python3.13 runtime), if this machine has one."""
    candidates = [os.environ.get("VIDSNAP_PYTHON313"), shutil.which("python3.13")]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.13*/bin/python3.13"), reverse=True)
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        probe = _run(
            [candidate, "-c", "import sys; print(sys.implementation.name, sys.version_info[:2])"], timeout=30
        )
        if probe.returncode == 0 and probe.stdout.strip() == "cpython (3, 13)":
            return candidate
    return None


def _runtime_boto3(home: Path, python: str) -> Path:
    """A folder with boto3 and its dependencies: what the Lambda runtime provides in /var/runtime."""
    target = home / f"lambda-runtime-{Path(python).name}"
    stamp = target / ".done"
    with _locked(home / ".lock"):
        if not stamp.is_file():
            shutil.rmtree(target, ignore_errors=True)
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
            result = _run([*pip, "--no-compile", "--target", str(target), "boto3"], timeout=600)
            if result.returncode != 0:
                _pip_failed("boto3 (the runtime's stand-in)", result)
            stamp.write_text("ok")
    return target


# --------------------------------------------------------------------------------------------------
# the build (once per session, shared by xdist workers)


@dataclass
class Built:
    build_dir: Path
    seconds: float
    log: str
    python313: str | None
    runtime_dir: Path | None
    #: The layer the import check uses: the cp313 one, or a host-Python variant without python3.13.
    import_layer: Path
    import_python: str


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("make") is None:
        pytest.skip("make is not installed (the layer's BuildMethod is makefile)")
    home = _sam_home()
    sam = _ensure_sam(home)
    # One build per test session even under xdist: workers share the parent of their basetemp.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    work = shared / "sam-build"
    result_file = work / "result.json"
    with _locked(shared / "sam-build.lock"):
        if not result_file.is_file():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_CONTACT_TELEMETRY": "0"}
            started = time.monotonic()
            result = _run(
                [
                    str(sam),
                    "build",
                    "--template-file",
                    str(REPO / "template.yaml"),
                    "--build-dir",
                    str(work / "build"),
                    "--cache-dir",
                    str(work / "cache"),
                ],
                timeout=1200,
                cwd=work,
                env=env,
            )
            seconds = time.monotonic() - started
            log = result.stdout + result.stderr
            assert result.returncode == 0, f"sam build failed (exit {result.returncode}):\n{log[-6000:]}"
            result_file.write_text(json.dumps({"seconds": seconds, "log": log}))
    done = json.loads(result_file.read_text())
    build_dir = work / "build"

    python313 = _find_python313()
    if python313:
        return Built(
            build_dir,
            done["seconds"],
            done["log"],
            python313,
            _runtime_boto3(home, python313),
            build_dir / LAYER,
            python313,
        )
    # No CPython 3.13 here: build the same layer for the host Python and import from that one.
    host_layer = shared / "host-layer"
    with _locked(shared / "host-layer.lock"):
        if not (host_layer / "python" / "vidsnap").is_dir():
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            result = _run(
                [
                    "make",
                    "-C",
                    str(REPO / "layers" / "vidsnap"),
                    "build-VidsnapLayer",
                    f"ARTIFACTS_DIR={host_layer}",
                    f"PY_VERSION={version}",
                    f"PYTHON={sys.executable}",
                ],
                timeout=1200,
            )
            assert result.returncode == 0, f"host-Python layer build failed:\n{result.stdout}{result.stderr}"
    return Built(
        build_dir,
        done["seconds"],
        done["log"],
        None,
        _runtime_boto3(home, sys.executable),
        host_layer,
        sys.executable,
    )


# --------------------------------------------------------------------------------------------------
# the checks


def test_sam_build_succeeds_without_a_container(built: Built) -> None:
    assert "Build Succeeded" in built.log
    template = built.build_dir / "template.yaml"
    assert template.is_file()
    for name, source in FUNCTIONS.items():
        assert (built.build_dir / name / "app.py").read_bytes() == (REPO / source / "app.py").read_bytes()
    print(f"sam build: {built.seconds:.1f} s")


def test_layer_contents_for_python313(built: Built) -> None:
    site = built.build_dir / LAYER / "python"
    assert (site / "vidsnap" / "__init__.py").is_file()
    # The runtime only: every module of vidsnap.core and vidsnap.aws, and nothing of the local tools
    # (CLI, local server and its page, demo, media synthesiser) or of the tests.
    source = REPO / "layers" / "vidsnap" / "vidsnap"
    runtime = {
        p.relative_to(source).as_posix()
        for p in source.rglob("*.py")
        if p.relative_to(source).parts[0] in {"core", "aws", "__init__.py"}
    }
    shipped = {p.relative_to(site / "vidsnap").as_posix() for p in (site / "vidsnap").rglob("*")}
    assert runtime <= shipped
    assert (site / "vidsnap" / "py.typed").is_file()
    unwanted = [p for p in shipped if p.startswith("local") or p == "__main__.py" or "test" in p]
    assert not unwanted, f"not runtime code: {unwanted}"
    assert not any((site / "vidsnap").rglob("*.html")), "the local server's page is not for Lambda"
    # PyAV with its bundled FFmpeg (the .so files a "python" build method has been seen to drop).
    assert list((site / "av").glob("*.so")), "PyAV's extension modules are missing"
    libs = {p.name.split("-")[0] for p in (site / "av.libs").glob("*.so*")}
    assert {"libavcodec", "libavformat", "libavutil", "libswscale"} <= libs, libs
    # Lambda's python3.13 runtime: version-specific extensions must be CPython 3.13 builds.
    numpy_ext = list(site.glob("numpy/_core/_multiarray_umath.cpython-*.so"))
    assert numpy_ext, "numpy's core extension is missing"
    assert all("cpython-313-x86_64-linux-gnu" in p.name for p in numpy_ext), numpy_ext
    assert list(site.glob("PIL/_imaging.cpython-313-x86_64-linux-gnu.so"))
    for package in ("PIL", "numpy", "mangum", "starlette", "aws_lambda_powertools"):
        assert (site / package).is_dir(), f"{package} is missing from the layer"
    # boto3 comes with the runtime; a copy in the layer would only cost space.
    assert not (site / "boto3").exists()
    assert not (site / "botocore").exists()


def test_layer_and_functions_fit_lambdas_limit(built: Built) -> None:
    layer = _du(built.build_dir / LAYER)
    lines = [f"layer {LAYER}: {layer / 1e6:.1f} MB unzipped"]
    for name in FUNCTIONS:
        function = _du(built.build_dir / name)
        lines.append(f"{name}: {function / 1e3:.1f} kB; with the layer {(layer + function) / 1e6:.1f} MB")
        assert layer + function < LAMBDA_UNZIPPED_LIMIT, "\n".join(lines)
        # The functions are glue: anything big in them means dependencies were bundled by mistake.
        assert function < 1024 * 1024, f"{name} is {function} bytes"
    print("\n".join(lines))


#: Runs in a fresh interpreter with only the Lambda paths: imports the handler, proves where every
#: heavy module came from, decodes H.264 through the layer's FFmpeg, answers a function URL event.
LAMBDA_PROBE = r"""
import base64, io, json, sys
function_dir, layer, runtime, events, kind = sys.argv[1:6]
ver = "python%d.%d" % sys.version_info[:2]
sys.path[:0] = [function_dir, f"{layer}/lib/{ver}/site-packages", layer, runtime]

import app  # the handler module, as the runtime imports "app.handler"
assert callable(app.handler)

import av, numpy, PIL.Image, mangum, starlette, aws_lambda_powertools, boto3, vidsnap
from fractions import Fraction
origins = {m.__name__: m.__file__ for m in (av, numpy, PIL.Image, mangum, starlette,
                                             aws_lambda_powertools, vidsnap, boto3)}

# Encode a few H.264 frames in memory, then snapshot one through vidsnap: FFmpeg libs load and work.
buf = io.BytesIO()
with av.open(buf, "w", format="mp4") as out:
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(10):
        frame = av.VideoFrame.from_ndarray(numpy.full((48, 64, 3), i * 20, numpy.uint8), format="rgb24")
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
buf.seek(0)
from vidsnap.core.engine import snapshot
from vidsnap.core.lang import parse_sync
rendered = snapshot(buf, parse_sync("video/snapshot,t_200,f_png"))
assert rendered.content_type == "image/png" and rendered.width == 64, rendered

answer = None
if kind == "function-url":
    # A bad request is answered by the app (mangum -> Starlette -> parser) before any AWS call.
    event = json.load(open(f"{events}/function-url-get.json"))
    event["rawQueryString"] = "x-oss-process=video/snapshot,t_-1"
    event["queryStringParameters"] = {"x-oss-process": "video/snapshot,t_-1"}
    class Context:
        aws_request_id = "probe"
        function_name = "probe"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:probe"
        memory_limit_in_mb = 2048
        def get_remaining_time_in_millis(self): return 60000
    reply = app.handler(event, Context())
    body = reply["body"]
    if reply.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    answer = {"status": reply["statusCode"], "body": json.loads(body)}

print(json.dumps({"origins": origins, "snapshot_bytes": len(rendered.data), "answer": answer,
                  "version": list(sys.version_info[:2]), "path": sys.path}))
"""


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_handlers_import_from_only_the_layer_and_function(
    built: Built, function: str, tmp_path: Path
) -> None:
    function_dir = built.build_dir / function
    layer = built.import_layer / "python"
    assert built.runtime_dir is not None
    env = {
        # What the Lambda runtime and template.yaml set; no credentials: nothing here calls AWS.
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "SOURCE_BUCKET": "vidsnap-source",
        "OUTPUT_BUCKET": "vidsnap-output",
        "TASK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/vidsnap-tasks",
        "TASK_TABLE": "vidsnap-tasks",
        "POWERTOOLS_SERVICE_NAME": "vidsnap",
        "POWERTOOLS_METRICS_NAMESPACE": "vidsnap",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    result = _run(
        [
            built.import_python,
            "-I",  # isolated: no PYTHON* variables, no user site, no script dir on the path
            "-S",  # no site-packages: only what we put on sys.path
            "-c",
            LAMBDA_PROBE,
            str(function_dir),
            str(layer),
            str(built.runtime_dir),
            str(REPO / "events"),
            "function-url" if function == "ObjectGetFunction" else "sqs",
        ],
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (
        f"{function} failed to import/run:\n{result.stdout}\n{result.stderr[-4000:]}"
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, origin in report["origins"].items():
        allowed = [str(built.runtime_dir)] if name == "boto3" else [str(layer)]
        assert any(origin.startswith(a) for a in allowed), f"{name} imported from {origin}, not the layer"
    assert report["snapshot_bytes"] > 0
    if built.python313:
        assert report["version"] == [3, 13]
    if function == "ObjectGetFunction":
        assert report["answer"]["status"] == 400
        assert report["answer"]["body"]["EC"] == "0053-00000101"


def test_import_check_used_the_lambda_python_when_available(built: Built) -> None:
    """Report which interpreter the import check used (3.13 = the runtime's; else a host variant)."""
    if built.python313 is None:
        pytest.skip(
            "no CPython 3.13 here: the import check ran on a host-Python build of the layer "
            f"({sys.version_info.major}.{sys.version_info.minor}); the cp313 layer was checked for "
            "contents only"
        )
    assert built.import_layer == built.build_dir / LAYER
