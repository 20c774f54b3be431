"""Run vidsnap's SAM application locally and offline: ``sam local`` against moto's server as AWS.

Used by ``./dev sam-local`` (for users) and ``tests/test_sam_local.py`` (the suite). What it needs,
and why each piece is made this way:

- **A runtime image without any registry.** ``sam local`` runs a function in the image
  ``public.ecr.aws/lambda/python:<version>-<arch>`` (samcli/local/docker/lambda_image.py), which
  ``--skip-pull-image`` uses when it is already present. These machines reach no registry, so the
  image is made here: a Debian root filesystem (``debootstrap --variant=minbase`` of the suite
  whose ``python3`` is the template's ``Runtime``: trixie has 3.13), ``awslambdaric`` and ``boto3``
  (manylinux wheels from PyPI) in ``/var/runtime`` as Lambda's runtime has them, and a
  ``/var/runtime/bootstrap`` that runs ``python3 -m awslambdaric <handler>`` with Lambda's path
  order (function, then layers under ``/opt/python``, then the runtime). ``docker import`` turns
  the tree into the image; no Dockerfile, no base image. SAM adds the Runtime Interface Emulator,
  which ships inside the aws-sam-cli package, and the layer on top. The image carries a label with
  the hash of this recipe, so it is rebuilt only when the recipe changes; debootstrap's package
  cache stays under ``.sam-local/`` (ignored by git).
- **AWS is moto's server on the Docker bridge address** (172.17.0.1 usually): the containers reach
  it there and nothing listens beyond this machine. A small WSGI layer in front of moto answers
  S3 Object Lambda's ``WriteGetObjectResponse`` (moto does not implement it) and keeps each call,
  and puts every resource in the account the emulator reports in function ARNs (012345678912).
- **The endpoint reaches the functions through the template.** ``sam local`` passes only the
  variables a template declares (``--env-vars`` overrides them, it cannot add any), so a copy of
  the *built* template (same code, same layer) declares ``AWS_ENDPOINT_URL`` too;
  ``AWS_DISABLE_HOST_PREFIX_INJECTION`` keeps ``WriteGetObjectResponse`` on that endpoint instead
  of ``<route>.<endpoint>``. The deployed template never carries either.

Command line (``./dev sam-local`` runs this with the project's venv)::

    python tools/samlocal.py image                    # build the runtime image (once; cached)
    python tools/samlocal.py invoke EVENT.json [FUNCTION]
    python tools/samlocal.py start-lambda [--port 3001]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Caches of this tool (debootstrap's packages, logs): ignored by git.
CACHE = REPO / ".sam-local"
#: The aws-sam-cli release line (the same spec as tests/test_packaging.py, so the venv is shared).
SAM_SPEC = "aws-sam-cli>=1.130,<2"
REGION = "us-east-1"
#: The account of moto's resources: the one the Runtime Interface Emulator puts in the function's ARN
#: (``context.invoked_function_arn``), from which the worker builds topic ARNs by name.
ACCOUNT = "012345678912"
#: Moto accepts any credentials; fake ones make sure real ones are never used.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
#: Host variables that would send boto3 or SAM somewhere else than moto.
UNSET_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)

# The resources the sample events in events/ name, created in moto for each run.
SOURCE_BUCKET = "vidsnap-source"
OUTPUT_BUCKET = "vidsnap-output"
TASK_QUEUE = "vidsnap-tasks"
TASK_TABLE = "vidsnap-tasks"
TOPIC = "vidsnap-notify"
NOTIFY_QUEUE = "vidsnap-notify-queue"
#: A queue subscribed to the topic (raw delivery): where a run reads the notifications back.
INBOX_QUEUE = "vidsnap-notify-inbox"
CLIP = "videos/clip.mp4"
UPLOAD = "videos/my clip+1.mp4"  # what events/s3-put.json's "videos/my+clip%2B1.mp4" decodes to
#: The placeholder ETag of the sample upload events; replaced by the uploaded object's real one.
EVENT_ETAG = "d41d8cd98f00b204e9800998ecf8427e"


def b64(text: str) -> str:
    """URL-safe base64 without padding, as OSS process strings spell bucket/topic names."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


#: What an upload under videos/ runs locally: three frames, and a notification on the topic, so a
#: run can see the notification (the template's default rule has no notify step).
UPLOAD_PROCESS = f"video/snapshots,f_jpg,m_avg,num_3,w_80|notify,topic_{b64(TOPIC)}"
FUNCTIONS = ("ObjectGetFunction", "AsyncSnapshotsFunction")


def log(message: str) -> None:
    """Progress on stderr (stdout carries results)."""
    print(f"samlocal: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )


# --------------------------------------------------------------------------------------------------
# the runtime


@dataclass(frozen=True)
class Runtime:
    """The template's Lambda runtime, e.g. ``python3.13`` on ``x86_64``."""

    name: str
    architecture: str = "x86_64"

    @property
    def version(self) -> str:
        """``3.13`` for ``python3.13``."""
        return self.name.removeprefix("python")

    @property
    def image(self) -> str:
        """The name SAM looks for (``Runtime.get_image_name_tag`` in samcli's lambda_image.py)."""
        return f"public.ecr.aws/lambda/python:{self.version}-{self.architecture}"


#: Debian suites by the python3 they ship: the image's Python must be the template's Runtime.
DEBIAN_SUITES = {"3.11": "bookworm", "3.13": "trixie"}
PIP_PLATFORMS = {
    "x86_64": ["manylinux2014_x86_64", "manylinux_2_28_x86_64"],
    "arm64": ["manylinux2014_aarch64", "manylinux_2_28_aarch64"],
}
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


def template_runtime(template: Path = REPO / "template.yaml") -> Runtime:
    """The ``Runtime`` and first ``Architectures`` entry of template.yaml's function globals."""
    text = template.read_text()
    runtime = re.search(r"^\s+Runtime:\s*(python3\.\d+)\s*$", text, re.MULTILINE)
    if runtime is None:
        raise SystemExit(f"no python Runtime in {template}")
    arch = re.search(r"^\s+Architectures:\s*\[\s*(x86_64|arm64)\s*\]", text, re.MULTILINE)
    return Runtime(runtime.group(1), arch.group(1) if arch else "x86_64")


#: /var/runtime/bootstrap: what the Runtime Interface Emulator starts. The path order is Lambda's
#: (function code, the layers' python folders, then the runtime's own boto3).
BOOTSTRAP = """#!/bin/sh
# Stand-in for Lambda's {runtime} runtime, made by tools/samlocal.py for `sam local`.
task="${{LAMBDA_TASK_ROOT:-/var/task}}"
export PYTHONPATH="$task:/opt/python/lib/{runtime}/site-packages:/opt/python:/var/runtime"
cd "$task"
exec /usr/bin/python3 -m awslambdaric "${{_HANDLER:-$AWS_LAMBDA_FUNCTION_HANDLER}}"
"""
#: Image settings, as `docker import --change` instructions. Lambda's own variables (LANG, TZ, the
#: task and runtime roots); the entry point is SAM's (the emulator), set when it runs a container.
IMAGE_CHANGES = [
    "ENV LANG=C.UTF-8",
    "ENV TZ=:UTC",
    "ENV LAMBDA_TASK_ROOT=/var/task",
    "ENV LAMBDA_RUNTIME_DIR=/var/runtime",
    "ENV PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin",
    "WORKDIR /var/task",
    'ENTRYPOINT ["/var/runtime/bootstrap"]',
]
#: Debian packages besides minbase, and runtime packages from PyPI (as Lambda's runtime has them).
DEBIAN_PACKAGES = ["python3", "ca-certificates"]
RUNTIME_PACKAGES = ["awslambdaric", "boto3"]
IMAGE_LABEL = "org.vidsnap.samlocal.recipe"


def recipe_hash(runtime: Runtime) -> str:
    """A short hash of everything the image is made from: a change rebuilds it."""
    recipe = {
        "runtime": runtime.name,
        "architecture": runtime.architecture,
        "suite": DEBIAN_SUITES.get(runtime.version),
        "debian": DEBIAN_PACKAGES,
        "pypi": RUNTIME_PACKAGES,
        "bootstrap": BOOTSTRAP,
        "changes": IMAGE_CHANGES,
        "version": 1,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no docker command (./dev test installs Debian's docker.io when it runs as root with apt)"
    try:
        result = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if result.returncode != 0 or not result.stdout.strip():
        return f"no Docker daemon answers ({(result.stderr or result.stdout).strip()[-300:]})"
    return None


def image_recipe_label(name: str) -> str | None:
    """The recipe label of a local image, or None when there is no such image."""
    template = f'{{{{index .Config.Labels "{IMAGE_LABEL}"}}}}'
    result = _run(["docker", "image", "inspect", "--format", template, name], timeout=60)
    return result.stdout.strip() if result.returncode == 0 else None


def image_problem(runtime: Runtime) -> str | None:
    """Why the runtime image cannot be built here (None when it can, or when it is current)."""
    if image_recipe_label(runtime.image) == recipe_hash(runtime):
        return None
    if runtime.version not in DEBIAN_SUITES:
        return f"no Debian suite ships python{runtime.version} (known: {sorted(DEBIAN_SUITES)})"
    if os.geteuid() != 0:
        return "building the runtime image needs root (debootstrap)"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (./dev test installs it as root with apt)"
    return None


def ensure_image(runtime: Runtime, *, python: str = sys.executable) -> float:
    """Build ``runtime.image`` unless the current one is there; the seconds spent (0 when cached).

    One build at a time on this machine (a lock file): a second caller waits, then finds it built.
    """
    import fcntl

    CACHE.mkdir(exist_ok=True)
    with (CACHE / "image.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_image(runtime, python)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_image(runtime: Runtime, python: str) -> float:
    digest = recipe_hash(runtime)
    if image_recipe_label(runtime.image) == digest:
        return 0.0
    problem = image_problem(runtime)
    if problem:
        raise RuntimeError(problem)
    started = time.monotonic()
    suite = DEBIAN_SUITES[runtime.version]
    mirror = os.environ.get("VIDSNAP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    debs = CACHE / "debootstrap" / f"{suite}-{DEBIAN_ARCH[runtime.architecture]}"
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as work:
        root = Path(work) / "rootfs"
        log(f"building {runtime.image}: debootstrap {suite} ({mirror}), about a minute and a half")
        result = _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--arch={DEBIAN_ARCH[runtime.architecture]}",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                f"--cache-dir={debs.resolve()}",
                suite,
                str(root),
                mirror,
            ],
            timeout=1200,
        )
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap {suite} failed:\n{(result.stdout + result.stderr)[-3000:]}")
        probe = "import sys; print('%d.%d' % sys.version_info[:2])"
        found = _run(["chroot", str(root), "python3", "-c", probe], timeout=60)
        if found.stdout.strip() != runtime.version:
            raise RuntimeError(f"{suite}'s python3 is {found.stdout.strip()!r}, not {runtime.version}")
        log(f"pip: {' '.join(RUNTIME_PACKAGES)} for CPython {runtime.version} into /var/runtime")
        platforms = [arg for p in PIP_PLATFORMS[runtime.architecture] for arg in ("--platform", p)]
        result = _run(
            [
                python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--no-warn-conflicts", "--no-compile", "--target", str(root / "var" / "runtime"), *platforms,
                "--python-version", runtime.version, "--implementation", "cp", "--only-binary=:all:",
                *RUNTIME_PACKAGES,
            ],
            timeout=900,
        )  # fmt: skip
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-3000:]
            raise RuntimeError(f"pip install into the image failed:\n{output}")
        bootstrap = root / "var" / "runtime" / "bootstrap"
        bootstrap.write_text(BOOTSTRAP.format(runtime=runtime.name))
        bootstrap.chmod(0o755)
        for folder in ("var/task", "opt"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        # Not needed at run time: downloaded packages (kept in the cache above), apt lists, docs.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
        previous = _run(["docker", "image", "inspect", "--format", "{{.Id}}", runtime.image], timeout=60)
        log(f"docker import -> {runtime.image}")
        changes = [arg for c in [*IMAGE_CHANGES, f"LABEL {IMAGE_LABEL}={digest}"] for arg in ("--change", c)]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", *changes, "-", runtime.image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr[-2000:]}")
        if previous.returncode == 0 and previous.stdout.strip():
            _run(["docker", "rmi", previous.stdout.strip()], timeout=120)  # the outdated image
    seconds = time.monotonic() - started
    log(f"{runtime.image} built in {seconds:.0f} s")
    return seconds


# --------------------------------------------------------------------------------------------------
# SAM CLI


def sam_home() -> Path:
    """Where the SAM venv lives: the same place tests/test_packaging.py installs it."""
    if os.environ.get("VIDSNAP_SAM_HOME"):
        return Path(os.environ["VIDSNAP_SAM_HOME"])
    if os.access(sys.prefix, os.W_OK) and sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "sam-cli"
    return Path.home() / ".cache" / "vidsnap" / "sam-cli"


def ensure_sam(home: Path | None = None) -> Path:
    """The ``sam`` executable of its own venv (installed once from PyPI; stamp shared with the tests)."""
    venv = (home or sam_home()) / "venv"
    sam, stamp = venv / "bin" / "sam", venv / ".vidsnap-sam-spec"
    if sam.is_file() and stamp.is_file() and stamp.read_text() == SAM_SPEC:
        return sam
    log(f"installing {SAM_SPEC} into {venv} (once, about a minute)")
    shutil.rmtree(venv, ignore_errors=True)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(base if base.exists() else sys.executable), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "install", "--quiet"]
    subprocess.run([*pip, SAM_SPEC], check=True)
    stamp.write_text(SAM_SPEC)
    return sam


def sam_env() -> dict[str, str]:
    """The environment for SAM CLI: fake credentials, no telemetry, nothing pointing elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET_ENV}
    return {**env, **FAKE_CREDENTIALS, "SAM_CLI_TELEMETRY": "0", "SAM_CLI_CONTACT_TELEMETRY": "0"}


def sam_build(sam: Path, build_dir: Path, *, template: Path = REPO / "template.yaml") -> float:
    """``sam build`` (no container: the layer is a makefile build of manylinux wheels); seconds."""
    started = time.monotonic()
    result = _run(
        [str(sam), "build", "--template-file", str(template), "--build-dir", str(build_dir),
         "--cache-dir", str(build_dir.parent / "sam-cache"), "--cached"],
        timeout=1200, cwd=REPO, env=sam_env(),
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"sam build failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return time.monotonic() - started


def local_template(build_dir: Path, endpoint: str, *, name: str = "template-local.json") -> Path:
    """A copy of the built template whose functions also get ``AWS_ENDPOINT_URL`` (see the module doc).

    Written next to the built template, so the code and layer paths in it stay valid.
    """
    from cfnlint.decode import decode  # the dev dependency that reads CloudFormation's YAML tags

    template, problems = decode(str(build_dir / "template.yaml"))
    if template is None or problems:
        raise RuntimeError(f"cannot read {build_dir / 'template.yaml'}: {problems}")
    function = template.setdefault("Globals", {}).setdefault("Function", {})
    variables = function.setdefault("Environment", {}).setdefault("Variables", {})
    variables["AWS_ENDPOINT_URL"] = endpoint
    variables["AWS_DISABLE_HOST_PREFIX_INJECTION"] = "true"
    path = build_dir / name
    path.write_text(json.dumps(template, indent=1))
    return path


def function_env(endpoint: str, *, upload_rules: str | None = None) -> dict[str, dict[str, str]]:
    """``--env-vars`` content: the values template.yaml would resolve to, for moto's resources."""
    return {
        "Parameters": {
            "SOURCE_BUCKET": SOURCE_BUCKET,
            "OUTPUT_BUCKET": OUTPUT_BUCKET,
            "ALLOWED_OUTPUT_BUCKETS": "",
            "ALLOWED_TOPICS": TOPIC,
            "ALLOWED_QUEUES": NOTIFY_QUEUE,
            "TASK_QUEUE_URL": f"{endpoint}/{ACCOUNT}/{TASK_QUEUE}",
            "TASK_TABLE": TASK_TABLE,
            "UPLOAD_RULES": upload_rules
            or json.dumps([{"prefix": "videos/", "suffix": ".mp4", "process": UPLOAD_PROCESS}]),
            "SIGNING_SECRET": "",
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
        }
    }


def function_for(event: dict[str, Any]) -> str:
    """Which function takes a sample event: function URL and Object Lambda events go to object-GET."""
    if "getObjectContext" in event or event.get("version") == "2.0" or "requestContext" in event:
        return "ObjectGetFunction"
    return "AsyncSnapshotsFunction"


# --------------------------------------------------------------------------------------------------
# moto's server, reachable from the containers


def bridge_address() -> str:
    """The host's address on Docker's default bridge (where containers reach the host)."""
    result = _run(["docker", "network", "inspect", "bridge", "--format", "{{json .}}"], timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"docker network inspect bridge: {result.stderr.strip()}")
    network = json.loads(result.stdout)
    for config in (network.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
        if config.get("Subnet") and ":" not in config["Subnet"]:
            # Older engines list only the subnet: the bridge takes its first address.
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    raise RuntimeError(f"no IPv4 address on Docker's bridge network: {network.get('IPAM')}")


class WriteGetObjectResponses:
    """WSGI layer in front of moto: answers ``POST /WriteGetObjectResponse`` and keeps the calls;
    puts every other request in :data:`ACCOUNT` (moto's ``x-moto-account-id``; its default is
    another account, and ``MOTO_ACCOUNT_ID`` would change it for every moto in this process)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/WriteGetObjectResponse":
            length = environ.get("CONTENT_LENGTH")
            stream = environ["wsgi.input"]
            body = stream.read(int(length)) if length else stream.read()
            headers = {
                key[5:].replace("_", "-").lower(): value
                for key, value in environ.items()
                if key.startswith("HTTP_")
            }
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            with self._lock:
                self.calls.append({"headers": headers, "body": body})
            start_response("200 OK", [("Content-Length", "0"), ("x-amz-request-id", "samlocal")])
            return [b""]
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = ACCOUNT
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


@dataclass
class LocalAws:
    """moto's server on ``host`` (a free port), with vidsnap's resources created by :meth:`seed`."""

    host: str
    port: int = 0
    recorder: WriteGetObjectResponses | None = None
    _server: Any = None
    _thread: threading.Thread | None = None
    etags: dict[str, str] = field(default_factory=dict)

    def start(self) -> LocalAws:
        import logging

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        self.recorder = WriteGetObjectResponses(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self.host, self.port, self.recorder, threaded=True, request_handler=MotoRequestHandler
        )
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, service: str) -> Any:
        import boto3

        factory: Any = boto3.client  # any service: the stubs' overloads want a literal name
        return factory(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
        )

    def queue_url(self, name: str) -> str:
        return f"{self.endpoint}/{ACCOUNT}/{name}"

    def seed(self, clip: bytes) -> dict[str, str]:
        """Reset moto, then create the buckets, queues, topic and table the events name, and upload
        the clip as ``videos/clip.mp4`` and ``videos/my clip+1.mp4``; the uploads' ETags."""
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=30
        ).read()
        if self.recorder is not None:
            self.recorder.calls.clear()
        s3, sqs, sns = self.client("s3"), self.client("sqs"), self.client("sns")
        for bucket in (SOURCE_BUCKET, OUTPUT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        self.etags = {
            key: s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=clip)["ETag"].strip('"')
            for key in (CLIP, UPLOAD)
        }
        sqs.create_queue(QueueName=TASK_QUEUE)
        sqs.create_queue(QueueName=NOTIFY_QUEUE)
        inbox = sqs.create_queue(QueueName=INBOX_QUEUE)["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic = sns.create_topic(Name=TOPIC)["TopicArn"]
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"}
        )
        self.client("dynamodb").create_table(
            TableName=TASK_TABLE,
            KeySchema=[{"AttributeName": "TaskId", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "TaskId", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        return self.etags

    def prepare_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A sample event made to fit this moto: the uploads' real ETag in place of the placeholder,
        and an Object Lambda event's ``inputS3Url`` presigned for moto's copy of the object."""
        text = json.dumps(event)
        if self.etags:
            text = text.replace(EVENT_ETAG, self.etags[UPLOAD])
        prepared: dict[str, Any] = json.loads(text)
        context = prepared.get("getObjectContext")
        if isinstance(context, dict):
            path = urllib.parse.urlsplit(str(context.get("inputS3Url", ""))).path
            key = urllib.parse.unquote(path.lstrip("/")) or CLIP
            context["inputS3Url"] = self.client("s3").generate_presigned_url(
                "get_object", Params={"Bucket": SOURCE_BUCKET, "Key": key}, ExpiresIn=600
            )
        return prepared

    def drain(self, queue: str) -> list[dict[str, Any]]:
        """Every message on a queue (read and deleted), JSON bodies decoded."""
        sqs, url = self.client("sqs"), self.queue_url(queue)
        messages: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return messages
            for message in got:
                messages.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def keys(self, bucket: str = OUTPUT_BUCKET) -> list[str]:
        listed = self.client("s3").list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))


# --------------------------------------------------------------------------------------------------
# sam local invoke / start-lambda


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Invoked:
    """One answer of a function: its payload (decoded JSON), the seconds it took, SAM's log."""

    payload: Any
    seconds: float
    log: str = ""
    error: str | None = None


def sam_invoke(
    sam: Path, template: Path, env_file: Path, function: str, event: dict[str, Any], *, workdir: Path
) -> Invoked:
    """``sam local invoke FUNCTION -e EVENT --skip-pull-image`` (one container start)."""
    event_file = workdir / f"event-{function}-{time.monotonic_ns()}.json"
    event_file.write_text(json.dumps(event))
    started = time.monotonic()
    result = _run(
        [str(sam), "local", "invoke", function, "--template", str(template), "--event", str(event_file),
         "--env-vars", str(env_file), "--skip-pull-image"],
        timeout=900, cwd=workdir, env=sam_env(),
    )  # fmt: skip
    seconds = time.monotonic() - started
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"sam local invoke failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return Invoked(json.loads(lines[-1]), seconds, result.stderr)


class StartLambda:
    """``sam local start-lambda`` with warm containers: one container per function, reused, and
    Lambda's Invoke API on ``127.0.0.1:port`` for boto3."""

    def __init__(self, sam: Path, template: Path, env_file: Path, *, workdir: Path, port: int = 0) -> None:
        self.sam, self.template, self.env_file, self.workdir = sam, template, env_file, workdir
        self.port = port or free_port()
        self.log_path = workdir / f"start-lambda-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 600) -> StartLambda:
        started = time.monotonic()
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.sam), "local", "start-lambda", "--template", str(self.template),
                 "--env-vars", str(self.env_file), "--skip-pull-image", "--warm-containers", "EAGER",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.workdir, env=sam_env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_default_sigint,  # noqa: PLW1509 - only signal(): safe after fork
            )  # fmt: skip
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"sam local start-lambda exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
            except urllib.error.HTTPError:
                break  # the service answers (404 on /): the containers are up
            except OSError:
                time.sleep(0.5)
                continue
            break
        else:
            self.stop()
            raise RuntimeError(f"sam local start-lambda not up after {timeout} s")
        self.started_in = time.monotonic() - started
        return self

    def invoke(self, function: str, event: dict[str, Any]) -> Invoked:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(read_timeout=900, connect_timeout=10, retries={"max_attempts": 0}),
        )
        started = time.monotonic()
        answer = client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        raw = answer["Payload"].read()
        seconds = time.monotonic() - started
        return Invoked(json.loads(raw) if raw else None, seconds, "", answer.get("FunctionError"))

    def stop(self) -> None:
        """Stop SAM as Ctrl-C would (it removes its containers), then make sure that it is gone and
        that no container it logged (``SAM_CONTAINER_ID``) is left behind."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        if self.log_path.is_file():
            text = self.log_path.read_text(errors="replace")
            ids = re.findall(r"SAM_CONTAINER_ID: ([0-9a-f]{12,64})", text)
            if ids:
                _run(["docker", "rm", "--force", *sorted(set(ids))], timeout=120)


def _default_sigint() -> None:
    """In the child: Ctrl-C's default action, even when this process ignores SIGINT (a background
    job of a non-interactive shell does), so SAM can be stopped the way it cleans up after itself."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def rapid_image_ids(runtime: Runtime) -> set[str]:
    """The images SAM built on top of the runtime image (``samcli/lambda-python:3.13-x86_64-...``)."""
    template = "{{.Repository}}:{{.Tag}} {{.ID}}"
    listed = _run(["docker", "images", "--no-trunc", "--format", template], timeout=60)
    prefix = f"samcli/lambda-python:{runtime.version}-{runtime.architecture}-"
    return {line.split()[1] for line in listed.stdout.splitlines() if line.startswith(prefix)}


def remove_rapid_images(runtime: Runtime, seen: Iterable[str] = ()) -> None:
    """Remove SAM's images (tagged now, or ``seen`` earlier and since replaced by a rebuild): SAM
    rebuilds them at every run when a layer is local, so keeping them would only fill the disk."""
    for image in rapid_image_ids(runtime) | set(seen):
        _run(["docker", "rmi", image], timeout=120)


# --------------------------------------------------------------------------------------------------
# ./dev sam-local


def _usable_runtime() -> Runtime:
    """The template's runtime, once Docker answers and its image can be built; else exit saying why."""
    problem = docker_problem()
    if problem:
        raise SystemExit(f"samlocal: {problem}")
    runtime = template_runtime()
    problem = image_problem(runtime)
    if problem:
        raise SystemExit(f"samlocal: cannot build {runtime.image}: {problem}")
    return runtime


@contextlib.contextmanager
def local_stack(workdir: Path) -> Iterator[tuple[Path, Path, Path, LocalAws, Runtime]]:
    """Image, ``sam build``, moto with the sample resources, local template and env file."""
    runtime = _usable_runtime()
    ensure_image(runtime)
    sam = ensure_sam()
    build_dir = workdir / "build"
    log(f"sam build -> {build_dir}")
    log(f"sam build: {sam_build(sam, build_dir):.1f} s")
    aws = LocalAws(bridge_address()).start()
    try:
        from vidsnap.local import synth

        clip = workdir / "clip.mp4"
        if not clip.is_file():
            synth.make_video(clip, width=320, height=180, duration_s=4, gop=25, bframes=2)
        aws.seed(clip.read_bytes())
        log(
            f"moto's server (AWS) on {aws.endpoint}: s3://{SOURCE_BUCKET}/{CLIP}, s3://{SOURCE_BUCKET}/{UPLOAD}"
        )
        template = local_template(build_dir, aws.endpoint)
        env_file = workdir / "env.json"
        env_file.write_text(json.dumps(function_env(aws.endpoint), indent=1))
        yield sam, template, env_file, aws, runtime
    finally:
        aws.stop()
        remove_rapid_images(runtime)


def _show(invoked: Invoked, out: Path) -> None:
    payload = invoked.payload
    if isinstance(payload, dict) and payload.get("isBase64Encoded") and "statusCode" in payload:
        body = base64.b64decode(payload["body"])
        kind = str((payload.get("headers") or {}).get("content-type", ""))
        if kind.startswith("image/"):
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"answer.{kind.split('/', 1)[1]}"
            path.write_bytes(body)
            payload = {**payload, "body": f"<{len(body)} bytes of {kind}, written to {path}>"}
    print(json.dumps(payload, indent=1))


def _interrupted(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev sam-local", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="build the runtime image (skipped when the current one exists)")
    invoke = sub.add_parser("invoke", help="sam local invoke one event against moto")
    invoke.add_argument("event", type=Path, help="an event file, e.g. events/function-url-get.json")
    invoke.add_argument(
        "function", nargs="?", choices=FUNCTIONS, help="default: the function that takes the event"
    )
    invoke.add_argument(
        "--upload",
        action="append",
        default=[],
        metavar="FILE=KEY",
        help=f"also put FILE into s3://{SOURCE_BUCKET}/KEY before invoking (your own video)",
    )
    start = sub.add_parser("start-lambda", help="sam local start-lambda against moto until Ctrl-C")
    start.add_argument("--port", type=int, default=3001)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)  # stop as on Ctrl-C: SAM, its containers, moto
    for name in UNSET_ENV:
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)
    CACHE.mkdir(exist_ok=True)
    if args.command == "image":
        runtime = _usable_runtime()
        seconds = ensure_image(runtime)
        print(f"{runtime.image}: " + (f"built in {seconds:.0f} s" if seconds else "up to date"))
        return 0
    workdir = CACHE / "run"
    workdir.mkdir(exist_ok=True)
    with local_stack(workdir) as (sam, template, env_file, aws, _runtime):
        if args.command == "invoke":
            s3 = aws.client("s3")
            for upload in args.upload:
                local, _, key = upload.partition("=")
                s3.upload_file(local, SOURCE_BUCKET, key or Path(local).name)
                log(f"uploaded {local} as s3://{SOURCE_BUCKET}/{key or Path(local).name}")
            event = aws.prepare_event(json.loads(args.event.read_text()))
            function = args.function or function_for(event)
            log(f"sam local invoke {function} -e {args.event} (first run builds SAM's image, ~20 s)")
            invoked = sam_invoke(sam, template, env_file, function, event, workdir=workdir)
            print(invoked.log, file=sys.stderr)
            _show(invoked, REPO / "out" / "sam-local")
            log(f"answered in {invoked.seconds:.1f} s; output bucket now holds: {aws.keys() or 'nothing'}")
            notes = aws.drain(INBOX_QUEUE)
            for note in notes:
                log(f"notification: {json.dumps(note)[:400]}")
            for call in aws.recorder.calls if aws.recorder else []:
                log(f"WriteGetObjectResponse: {call['headers'].get('x-amz-fwd-status', '200')} "
                    f"{len(call['body'])} bytes")  # fmt: skip
            return 0
        lam = StartLambda(sam, template, env_file, workdir=workdir, port=args.port).start()
        log(f"sam local start-lambda on {lam.endpoint} (up in {lam.started_in:.0f} s); AWS is {aws.endpoint}")
        print(
            f"Invoke with: aws lambda invoke --endpoint-url {lam.endpoint} --no-sign-request "
            "--function-name ObjectGetFunction --cli-binary-format raw-in-base64-out "
            "--payload file://events/function-url-get.json answer.json\n"
            f"Objects: AWS_ENDPOINT_URL={aws.endpoint} AWS_ACCESS_KEY_ID=testing "
            f"AWS_SECRET_ACCESS_KEY=testing aws s3 ls s3://{OUTPUT_BUCKET} --recursive\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        try:
            while lam.process is not None and lam.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            lam.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
