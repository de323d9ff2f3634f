"""A CDS client's JWT issuer for tests: real keys generated here, tokens signed with PyJWT."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

LOCAL_ROOT = "http://localhost"  # the Flask test client's URL root: the audience when CDS_PUBLIC_BASE_URL is unset


class Issuer:
    def __init__(self, iss: str = "https://ehr.example.org", alg: str = "ES384") -> None:
        self.iss, self.alg = iss, alg
        self.rotate()

    def rotate(self) -> None:
        """A new key pair with a new kid (key rotation)."""
        self.kid = str(uuid.uuid4())
        if self.alg.startswith("ES"):
            self.private_key = ec.generate_private_key(ec.SECP384R1())
            public = json.loads(ECAlgorithm.to_jwk(self.private_key.public_key()))
        else:
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        self.public_jwk = {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def token(self, aud: str | list[str], *, header: dict[str, Any] | None = None, key: Any = None,
              alg: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.iss, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        headers = {"kid": self.kid, "typ": "JWT", **(header or {})}
        return jwt.encode(payload, key or self.private_key, algorithm=alg or self.alg, headers=headers)

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"iss": self.iss, "jwks": self.jwks, **extra}


def trusted_issuers_file(path: Path, *entries: dict[str, Any]) -> str:
    path.write_text(json.dumps({"issuers": list(entries)}))
    return str(path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
