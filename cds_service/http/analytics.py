"""`GET /analytics/feedback` (JSON) and `GET /analytics` (a page): which cards clinicians accept, per card type.

Both are authenticated like the CDS endpoints in production (a client JWT whose `aud` is the URL called). The page is
server-rendered HTML with an inline SVG chart and no external assets, so it works on an isolated network.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, current_app, jsonify, request

from cds_service.errors import InvalidRequest
from cds_service.http.pages import html_page
from cds_service.render.catalogue import OVERRIDE_REASON_SYSTEM, declared_override_reasons
from cds_service.state import state
from cds_service.storage.ledger import CALL_SOURCES
from cds_service.storage.report import FeedbackReport, feedback_report, report_csv

bp = Blueprint("analytics", __name__, template_folder="templates")


def _date(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date (YYYY-MM-DD).") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _until() -> datetime | None:
    """`?until=`: cards issued up to and including that day (a time, if given, is the exclusive end)."""
    until = _date("until")
    if until is not None and len(request.args["until"]) == 10:  # a bare date: the whole day counts
        until += timedelta(days=1)
    return until


def _sources() -> tuple[str, ...] | None:
    """`?source=`: `ehr` (the default: calls from CDS clients), `all`, or a comma-separated list of CALL_SOURCES."""
    value = request.args.get("source", "ehr")
    if value == "all":
        return None
    sources = tuple(part.strip() for part in value.split(",") if part.strip())
    if not sources or any(source not in CALL_SOURCES for source in sources):
        raise InvalidRequest(f"'source' must be 'all' or a comma-separated list of {', '.join(CALL_SOURCES)}.")
    return sources


def _report() -> FeedbackReport:
    return feedback_report(state(current_app).database, _date("since"),
                           declared_reasons=declared_override_reasons(), reason_system=OVERRIDE_REASON_SYSTEM,
                           sources=_sources(), until=_until())


@bp.get("/analytics/feedback")
def feedback_json() -> Response:
    return jsonify(_report().as_json())


@bp.get("/analytics/feedback.csv")
def feedback_csv() -> Response:
    response = Response(report_csv(_report()), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="card-acceptance.csv"'
    return response


@bp.get("/analytics")
def page() -> Response:
    report = _report()
    bars = [(row.card_type, row.knowledge_version, row.acceptance_rate, row.issued) for row in report.rows]
    return html_page("analytics.html", report=report, bars=bars, query=request.query_string.decode("latin-1"),
                     knowledge_version=state(current_app).knowledge_version)
