"""The link from a card to the evidence app (a SMART on FHIR app the service serves under /smart/).

A clinician who wants to see what a card stands on opens the app from the card: a timeline of the patient's
surgeries, symptoms with their onset, imaging, orders and medications, read from the EHR's FHIR server with the
launch's own token, with the rows the card cited marked. The card names itself in `appContext` (CDS Hooks 2.0: the
client passes it to the app in the launch's token response): its uuid, its type and the references of its evidence.
`autolaunchable` is false: the app opens only when the clinician asks.

A client that cannot launch SMART links (or does not pass `appContext`) gets an `absolute` link to the app's
standalone launch against the call's FHIR server instead (the site option `app_link`, or CDS_APP_LINK); `none` leaves
the link out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

APP_LINK_MODES = ("smart", "absolute", "none")
APP_PATH = "/smart/"
_MAX_EVIDENCE = 20  # references named in appContext; a card cites a handful


@dataclass(frozen=True)
class AppLink:
    """How this call's cards link to the evidence app: the app's launch URL, the link type and the FHIR server."""

    launch_url: str
    label: str
    mode: str = "smart"
    fhir_server: str | None = None

    def link(self, card_uuid: str, card_type: str, evidence: Iterable[str]) -> dict[str, Any] | None:
        """The card's link to the app, or None (mode `none`, or an absolute link without a FHIR server to read)."""
        if self.mode == "smart":
            references = list(dict.fromkeys(evidence))[:_MAX_EVIDENCE]
            context = {"card": card_uuid, "type": card_type, "evidence": references}
            return {"label": self.label, "url": self.launch_url, "type": "smart",
                    "appContext": orjson.dumps(context).decode(), "autolaunchable": False}
        if self.mode == "absolute" and self.fhir_server:
            query = urlencode({"iss": self.fhir_server, "card": card_type})
            return {"label": self.label, "url": f"{self.launch_url}?{query}", "type": "absolute"}
        return None
