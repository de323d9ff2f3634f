"""The JWT issuers this deployment trusts, from the JSON file named by CDS_TRUSTED_ISSUERS.

    {"issuers": [
      {"iss": "https://ehr.example.org", "jwks_uri": "https://ehr.example.org/.well-known/jwks.json",
       "jku": ["https://ehr.example.org/.well-known/jwks.json"], "tenant": ["hospital-a"]},
      {"iss": "https://other.example", "jwks": {"keys": [...]}},
      {"iss": "https://third.example", "jwks_file": "third-jwks.json"},
      {"iss": "https://fourth.example", "jwks_uri": "...", "jku_list_uri": "https://fourth.example/allowed-jku.json",
       "site_options": {"*": {"minimum_indicator": "warning"}}}
    ]}

`jku` lists the JWKS URLs a token's `jku` header may name (anything else is refused and never fetched);
`jku_list_uri` names a URL where the issuer serves that list itself (a JSON array of https URLs, or an object with a
`jku` array), fetched and cached by cds_service.security.keys; `tenant`, when given, lists the tenants accepted;
`site_options` sets what each tenant (or `*`, every tenant) is answered with (cds_service.security.site_options).
The local profile also trusts the public CDS Hooks Sandbox (its public key ships with the service); the production
profile trusts nothing that is not configured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from cds_service.clinical.knowledge import declared_card_types
from cds_service.security.site_options import SiteOptions, parse_site_options

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = ("https://sandbox.cds-hooks.org/.well-known/jwks.json",
               "https://raw.githubusercontent.com/cds-hooks/sandbox/master/keys/jwk-keypair.json")


@dataclass(frozen=True)
class TrustedIssuer:
    iss: str
    jwks: Mapping[str, Any] | None = None          # keys known in advance (inline or from a file)
    jwks_uri: str | None = None                    # keys fetched (and cached) from here
    jku: tuple[str, ...] = ()                      # JWKS URLs a token's jku header may name
    tenants: tuple[str, ...] | None = None         # accepted `tenant` claims (None: any)
    jku_list_uri: str | None = None                # where the issuer serves its allowed jku URLs
    site_options: Mapping[str, SiteOptions] = field(default_factory=dict)  # by tenant, or "*"


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ValueError("expected a string or a list of strings")
    return tuple(values)


def _issuer(entry: Any, base: Path) -> TrustedIssuer:
    if not isinstance(entry, dict) or not isinstance(entry.get("iss"), str) or not entry["iss"]:
        raise ValueError("each issuer needs an 'iss' string")
    sources = [k for k in ("jwks", "jwks_uri", "jwks_file") if k in entry]
    if len(sources) != 1:
        raise ValueError(f"issuer {entry['iss']}: give exactly one of jwks, jwks_uri, jwks_file")
    jwks = entry.get("jwks")
    if "jwks_file" in entry:
        jwks = orjson.loads((base / entry["jwks_file"]).read_bytes())
    if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)):
        raise ValueError(f"issuer {entry['iss']}: a JWKS is an object with a 'keys' array")
    uri = entry.get("jwks_uri")
    if uri is not None and not (isinstance(uri, str) and uri.startswith("https://")):
        raise ValueError(f"issuer {entry['iss']}: jwks_uri must be an https URL")
    jku = _as_tuple(entry.get("jku"))
    if any(not url.startswith("https://") for url in jku):
        raise ValueError(f"issuer {entry['iss']}: jku URLs must be https")
    tenants = _as_tuple(entry["tenant"]) if "tenant" in entry else None
    jku_list_uri = entry.get("jku_list_uri")
    if jku_list_uri is not None and not (isinstance(jku_list_uri, str) and jku_list_uri.startswith("https://")):
        raise ValueError(f"issuer {entry['iss']}: jku_list_uri must be an https URL")
    options = parse_site_options(entry.get("site_options"), entry["iss"], declared_card_types())
    unknown = set(options) - {"*"} - set(tenants or ())
    if tenants is not None and unknown:
        raise ValueError(f"issuer {entry['iss']}: site_options for tenant(s) not enabled: {sorted(unknown)}")
    return TrustedIssuer(entry["iss"], jwks, uri, jku, tenants, jku_list_uri, options)


def sandbox_issuer() -> TrustedIssuer:
    """The public CDS Hooks Sandbox: trusted in the local profile only (its private key is public)."""
    jwks = orjson.loads(resources.files(__package__).joinpath("cds-hooks-sandbox-jwks.json").read_bytes())
    return TrustedIssuer(SANDBOX_ISSUER, jwks, None, SANDBOX_JKU)


def load_trusted_issuers(path: str | None, *, local: bool) -> dict[str, TrustedIssuer]:
    """The trusted issuers by `iss` (ValueError naming the problem when the file is wrong)."""
    issuers: dict[str, TrustedIssuer] = {SANDBOX_ISSUER: sandbox_issuer()} if local else {}
    if path:
        file = Path(path)
        document = orjson.loads(file.read_bytes())
        if not isinstance(document, dict) or not isinstance(document.get("issuers"), list):
            raise ValueError("expected {\"issuers\": [...]}")
        for entry in document["issuers"]:
            issuer = _issuer(entry, file.parent)
            issuers[issuer.iss] = issuer
    return issuers
