"""The patient as a keyed hash (HMAC-SHA256): enough to group a patient's cards, useless without the key."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


class PatientHasher:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the patient hash secret must be at least 16 bytes")
        # Keyed once; each call copies the keyed state. The one-shot `hmac.digest(key, msg, "sha256")` looks the digest
        # up by name in OpenSSL on every call: fast in a loop, but several times the copy's cost per request inside the
        # service (bench/DECISIONS.md).
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def __call__(self, patient_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(patient_id.encode())
        return mac.hexdigest()

    def __repr__(self) -> str:  # keeps the key out of debug output
        return "PatientHasher(<secret>)"


def patient_hasher(configured: str | None, instance_path: str) -> PatientHasher:
    """The configured secret, else one generated once and kept (mode 0600) in the instance folder."""
    if configured:
        return PatientHasher(configured.encode())
    path = Path(instance_path, "patient-hash.secret")
    if not path.exists():
        # Written whole under a name of its own, then linked into place: instances starting together on one shared
        # instance folder (compose replicas, pods on one volume) all end up with the one secret that won, and none
        # reads a file another is still writing.
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another instance's secret is in place: use it
        finally:
            draft.unlink()
    return PatientHasher(path.read_text().strip().encode())
