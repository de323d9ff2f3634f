"""Verify a CDS client's JWT (CDS Hooks 2.0 §security, conformance S5-S12) with PyJWT — no hand-rolled crypto.

Order of checks: the algorithm against the allow-list (so `none` and HMAC never reach key selection); the issuer
against the trusted issuers; the key by `kid` (a `jku` header only if the issuer allow-lists it); signature, `aud`,
`exp`, `iat` (not in the future beyond the leeway) and required claims by PyJWT; the lifetime cap; the tenant; and
last the replay check, so a token is recorded only once it is otherwise valid. Every failure raises
`AuthenticationFailed` whose reason goes to the log, never to the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from cds_service.errors import AuthenticationFailed, NotEnabled
from cds_service.security.issuers import TrustedIssuer
from cds_service.security.keys import KeyStore
from cds_service.security.replay import ReplayStore
from cds_service.security.site_options import SiteOptions, site_options_for
from cds_service.storage.models import SeenToken

JTI_MAX_LENGTH = SeenToken.__table__.c.jti.type.length
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


@dataclass(frozen=True)
class VerifiedClient:
    """Who called: the claims that may be logged (never the token)."""

    iss: str
    jti: str
    tenant: str | None


class TokenVerifier:
    def __init__(self, issuers: Mapping[str, TrustedIssuer], keys: KeyStore, replay: ReplayStore, *,
                 algorithms: Iterable[str], leeway_seconds: int = 60, max_lifetime_seconds: int = 3600) -> None:
        self.issuers = dict(issuers)
        self.keys = keys
        self.replay = replay
        self.algorithms = frozenset(algorithms) & ASYMMETRIC
        self.leeway = leeway_seconds
        self.max_lifetime = max_lifetime_seconds

    def site_options(self, iss: str | None, tenant: str | None) -> SiteOptions | None:
        """What a verified client's site is answered with (its issuer's `site_options`), or None: everything."""
        issuer = self.issuers.get(iss) if iss is not None else None
        return site_options_for(issuer.site_options, tenant) if issuer is not None else None

    def verify(self, token: str, audience: str) -> VerifiedClient:
        try:
            # One unverified parse gives both the header and the issuer claim (each parse costs as much as the rest).
            parts = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationFailed("malformed token", "malformed") from None
        header, unverified = parts["header"], parts["payload"]
        alg, kid, jku = header.get("alg"), header.get("kid"), header.get("jku")
        if alg not in self.algorithms:
            raise AuthenticationFailed(f"algorithm {alg!r} is not allowed", "algorithm")
        if header.get("typ") not in (None, "JWT"):
            raise AuthenticationFailed("typ is not JWT", "algorithm")
        issuer = self.issuers.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if issuer is None:
            raise AuthenticationFailed("issuer is not trusted", "issuer")
        if not isinstance(kid, str) or (jku is not None and not isinstance(jku, str)):
            raise AuthenticationFailed("kid missing", "key")
        key = self.keys.key(issuer, kid, jku)
        if key is None:
            raise AuthenticationFailed("no trusted key for kid" + (" (jku not allow-listed)" if jku and
                                                                      not self.keys.jku_allowed(issuer, jku) else ""),
                                       "key")
        if key.algorithm_name not in (alg, None) and getattr(key, "_jwk_data", {}).get("alg") not in (None, alg):
            raise AuthenticationFailed("key is for another algorithm", "key")
        claims = self._decode(token, key, alg, audience, issuer.iss)
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise AuthenticationFailed("token lifetime exceeds the maximum", "lifetime")
        tenant = claims.get("tenant")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            # Authenticated, not enabled: 403 says what is wrong (the tenant named is the client's own claim; the
            # list of enabled tenants is not told). The jti is not recorded: the same token may be retried once the
            # tenant is enabled.
            named = f"tenant {tenant!r}" if isinstance(tenant, str) else "a token without a tenant claim"
            raise NotEnabled(f"The client token is valid, but {named} is not enabled for issuer {issuer.iss} at this "
                             "service; ask its operator to add it (CDS_TRUSTED_ISSUERS, the issuer's 'tenant' list).",
                             "tenant is not enabled")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthenticationFailed("jti missing", "claims")
        if len(claims["jti"]) > JTI_MAX_LENGTH:  # the replay store's column; the database must not be the one to say
            raise AuthenticationFailed(f"jti longer than {JTI_MAX_LENGTH} characters", "claims")
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        if not self.replay.first_use(issuer.iss, claims["jti"], expires):
            raise AuthenticationFailed("jti was already used (replay)", "replay")
        return VerifiedClient(issuer.iss, claims["jti"], tenant if isinstance(tenant, str) else None)

    def _decode(self, token: str, key: Any, alg: str, audience: str, iss: str) -> dict[str, Any]:
        try:
            return jwt.decode(token, key=key.key, algorithms=[alg], audience=audience, issuer=iss,
                              leeway=self.leeway, options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("token expired", "expired") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("aud is not this endpoint", "audience") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationFailed("iat or nbf is in the future", "claims") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"claim missing: {exc.claim}", "claims") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"invalid token ({type(exc).__name__})", "claims") from None
