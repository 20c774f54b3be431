"""The HMAC secret for signed URLs: from a secret store, fetched once, never from the environment.

A deployment names where the secret is kept (``SIGNING_SECRET_PARAMETER``): an SSM Parameter
Store parameter (a SecureString, decrypted on read) or, when the name is a Secrets Manager ARN,
that secret. Environment variables are visible to anyone who may read the function's
configuration; the secret store is not, and rotating the secret there needs no redeployment of
the stack (a new cold start picks it up).

The secret is fetched lazily, on the first request that needs it (one without IAM
authentication), through powertools' parameter providers using the injected boto3 clients (so
moto serves it in tests), and kept for the life of the process. A secret that cannot be read is
an :class:`~vidsnap.core.errors.InternalError` (500): requests are refused, never served unsigned.

``SIGNING_SECRET`` (the secret itself) still works for local runs and tests; it wins when both
are set.
"""

from __future__ import annotations

import threading
from typing import Any

from vidsnap.core.errors import misconfigured


def is_secrets_manager_arn(name: str) -> bool:
    """True when ``name`` is a Secrets Manager secret ARN (``arn:aws:secretsmanager:...``)."""
    parts = name.split(":")
    return len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager"


class SigningSecret:
    """The signing secret of one process: a literal value, or fetched once from a secret store.

    Call the instance to get the secret (None: signing is disabled). Thread-safe: concurrent
    first calls fetch once.
    """

    def __init__(
        self,
        *,
        value: str | None = None,
        parameter: str | None = None,
        clients: Any = None,
    ) -> None:
        self._value = value or None
        self._parameter = parameter or None
        self._clients = clients
        self._lock = threading.Lock()
        if self._value is None and self._parameter and clients is None:
            raise ValueError("SIGNING_SECRET_PARAMETER is set but no AWS clients were given to read it")

    @classmethod
    def from_settings(cls, settings: Any, clients: Any = None) -> SigningSecret:
        """The secret ``settings`` describe (``signing_secret`` / ``signing_secret_parameter``)."""
        return cls(
            value=getattr(settings, "signing_secret", None),
            parameter=getattr(settings, "signing_secret_parameter", None),
            clients=clients,
        )

    @property
    def configured(self) -> bool:
        """True when requests must be signed (a value or a parameter name is set); no fetch."""
        return bool(self._value or self._parameter)

    def __call__(self) -> str | None:
        """The secret, fetched on the first call when it lives in a secret store."""
        if self._value is not None or not self._parameter:
            return self._value
        with self._lock:
            if self._value is None:
                self._value = self._fetch(self._parameter)
            return self._value

    def _fetch(self, name: str) -> str:
        # powertools' providers are imported here: only a deployment with a parameter pays for them.
        from aws_lambda_powertools.utilities import parameters

        try:
            raw: Any
            if is_secrets_manager_arn(name):
                secrets = parameters.SecretsProvider(boto3_client=self._clients.secretsmanager)
                raw = secrets.get(name)
            else:
                ssm = parameters.SSMProvider(boto3_client=self._clients.ssm)
                raw = ssm.get(name, decrypt=True)
        except Exception as exc:  # a missing parameter, a denied read: the function cannot serve
            raise misconfigured(RuntimeError(f"cannot read the signing secret {name!r}: {exc}")) from exc
        value = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw or "")
        if not value.strip():
            raise misconfigured(RuntimeError(f"the signing secret {name!r} is empty"))
        return value
