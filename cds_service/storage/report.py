"""The feedback report: per card type and knowledge version, what clinicians did with the cards.

Issued cards, and presentations: the same card shown again to the same user for the same patient within a short
window (an order-select session re-issues its cards on every change of the selection, each with a new uuid) is one
presentation (`presentations`). Per presentation: accepted (and which suggestions), overridden, no response; the
acceptance rate is accepted presentations over presentations. Override reasons with counts, and how many overrides
carried a comment. Feedback whose card is not in the ledger (an earlier deployment, another database) is counted apart
as `unknown cards`.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, Select, select

from cds_service.storage.models import Feedback, IssuedCard, IssuedSuggestion, SilentCall


@dataclass
class CardTypeStats:
    card_type: str
    knowledge_version: str
    issued: int = 0
    presentations: int = 0
    accepted: int = 0
    overridden: int = 0
    no_response: int = 0
    accepted_suggestions: Counter[str] = field(default_factory=Counter)
    override_reasons: Counter[str] = field(default_factory=Counter)
    comments: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Accepted presentations over presentations: a card re-issued in one session counts once."""
        return self.accepted / self.presentations if self.presentations else 0.0

    @property
    def reissued(self) -> int:
        """Cards issued again as the same presentation (superseded by a later identical card)."""
        return self.issued - self.presentations

    def as_json(self) -> dict[str, Any]:
        return {
            "cardType": self.card_type, "knowledgeVersion": self.knowledge_version, "issued": self.issued,
            "presentations": self.presentations, "reissued": self.reissued,
            "accepted": self.accepted, "overridden": self.overridden, "noResponse": self.no_response,
            "acceptanceRate": round(self.acceptance_rate, 4),
            "acceptedSuggestions": dict(self.accepted_suggestions.most_common()),
            "overrideReasons": dict(self.override_reasons.most_common()), "comments": self.comments,
        }


@dataclass
class SilentCardType:
    """One card type under the live and the silent knowledge version, over the same calls."""

    card_type: str
    live: int = 0        # calls on which the live version gave this card type
    silent: int = 0      # calls on which the silent version would have
    added: int = 0       # calls where only the silent version gives it
    dropped: int = 0     # calls where only the live version does
    live_acceptance_rate: float | None = None

    def per_100(self, count: int, calls: int) -> float:
        return round(100 * count / calls, 2) if calls else 0.0


@dataclass
class SilentComparison:
    """A silent knowledge version against the live one it ran beside (cds_service/silent.py)."""

    live_version: str
    silent_version: str
    calls: int
    card_types: list[SilentCardType]

    def as_json(self) -> dict[str, Any]:
        return {"liveVersion": self.live_version, "silentVersion": self.silent_version, "calls": self.calls,
                "cardTypes": [{"cardType": row.card_type, "livePer100Calls": row.per_100(row.live, self.calls),
                               "silentPer100Calls": row.per_100(row.silent, self.calls),
                               "live": row.live, "silent": row.silent, "added": row.added, "dropped": row.dropped,
                               "liveAcceptanceRate": None if row.live_acceptance_rate is None
                               else round(row.live_acceptance_rate, 4)} for row in self.card_types]}


@dataclass
class FeedbackReport:
    since: datetime | None
    rows: list[CardTypeStats]
    unknown_card_feedback: int
    sources: tuple[str, ...] | None = ("ehr",)
    until: datetime | None = None
    silent: list[SilentComparison] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "sources": list(self.sources) if self.sources is not None else "all",
                "cardTypes": [row.as_json() for row in self.rows],
                "unknownCardFeedback": self.unknown_card_feedback,
                "silent": [comparison.as_json() for comparison in self.silent]}


def override_reason(system: str | None, code: str, display: str | None, declared: Mapping[str, str],
                    own_system: str) -> tuple[tuple[str, str], str]:
    """An override reason's row key, (system, code), and its label: the display this service declared for the code
    (whatever display, or none, the client sent back: the public sandbox sends system and code only; a missing system
    is read as ours), else the code named as one it never offered."""
    if system in (None, "", own_system) and code in declared:
        return (own_system, code), declared[code]
    where = f" from {system}" if system else ""
    label = f"{display} (code {code}{where}, not offered by this service)" if display else \
        f"code {code}{where} (not offered by this service)"
    return (system or "", code), label


def feedback_report(engine: Engine, since: datetime | None = None, *, declared_reasons: Mapping[str, str] | None = None,
                    reason_system: str = "", sources: tuple[str, ...] | None = ("ehr",),
                    until: datetime | None = None) -> FeedbackReport:
    """The report. Override reasons are counted by (system, code), one row each, labelled by `override_reason` with the
    displays this service declared (`declared_reasons`, code -> display, of `reason_system`). Only cards of calls
    from `sources` count (EHR calls by default; None: every call), and feedback on other cards is left out."""
    declared = declared_reasons or {}
    cards_query = select(IssuedCard.card_uuid, IssuedCard.card_type, IssuedCard.knowledge_version,
                         IssuedCard.issued_at, IssuedCard.hook, IssuedCard.user_hash, IssuedCard.patient_hash,
                         IssuedCard.content_digest)
    cards_query = _within(cards_query, IssuedCard.issued_at, IssuedCard.source, since=since, until=until,
                          sources=sources).where(
        IssuedCard.silent.is_(False))  # a silent card was never shown
    calls_query = _within(select(SilentCall.live_version, SilentCall.silent_version, SilentCall.live_card_types,
                                 SilentCall.silent_card_types),
                          SilentCall.evaluated_at, SilentCall.source, since=since, until=until, sources=sources)
    with engine.connect() as connection:
        issued_rows = connection.execute(cards_query).all()
        silent_calls = connection.execute(calls_query).all()
        known = set(connection.execute(select(IssuedCard.card_uuid)).scalars())
        labels = dict(connection.execute(select(IssuedSuggestion.suggestion_uuid, IssuedSuggestion.label)).all())
        feedback = connection.execute(select(Feedback.card_uuid, Feedback.outcome, Feedback.accepted_suggestions,
                                             Feedback.override_system, Feedback.override_code,
                                             Feedback.override_display, Feedback.has_comment)).all()
    cards = {row.card_uuid: (row.card_type, row.knowledge_version) for row in issued_rows}
    presentation_of = presentations(issued_rows)
    stats: dict[tuple[str, str], CardTypeStats] = {}
    for card_type, version in cards.values():
        key = (card_type, version)
        stats.setdefault(key, CardTypeStats(card_type, version)).issued += 1
    outcomes: dict[str, set[str]] = defaultdict(set)
    labels_by_reason: dict[tuple[str, str], str] = {}  # one label per (system, code): the first display seen
    unknown = 0
    for card_uuid, outcome, accepted, system, code, display, has_comment in feedback:
        if card_uuid not in known:
            unknown += 1
            continue
        if card_uuid not in cards:
            continue  # issued before --since, or by a source the report leaves out
        row = stats[cards[card_uuid]]
        outcomes[card_uuid].add(outcome)
        if outcome == "accepted":
            for suggestion in orjson.loads(accepted):
                row.accepted_suggestions[labels.get(suggestion, "unknown suggestion")] += 1
        elif code:
            key, label = override_reason(system, code, display, declared, reason_system)
            row.override_reasons[labels_by_reason.setdefault(key, label)] += 1
        row.comments += int(bool(has_comment))
    # Outcomes per presentation: feedback on any uuid of a presentation counts for it.
    by_presentation: dict[str, set[str]] = defaultdict(set)
    for card_uuid in cards:
        by_presentation[presentation_of[card_uuid]] |= outcomes.get(card_uuid, set())
    for first_uuid, seen in by_presentation.items():
        row = stats[cards[first_uuid]]
        row.presentations += 1
        row.accepted += "accepted" in seen
        row.overridden += "overridden" in seen and "accepted" not in seen
        row.no_response += not seen
    ordered = sorted(stats.values(), key=lambda r: (r.card_type, r.knowledge_version))
    acceptance = {(row.card_type, row.knowledge_version): row.acceptance_rate for row in ordered if row.presentations}
    return FeedbackReport(since, ordered, unknown, sources, until, silent_comparisons(silent_calls, acceptance))


def _within(query: Select, when: Any, source: Any, *, since: datetime | None, until: datetime | None,
            sources: tuple[str, ...] | None) -> Select:
    """The query limited to [since, until) and to calls from `sources` (None: all)."""
    if since is not None:
        query = query.where(when >= since)
    if until is not None:
        query = query.where(when < until)
    return query.where(source.in_(sources)) if sources is not None else query


def silent_comparisons(calls: Iterable[Any], acceptance: Mapping[tuple[str, str], float]) -> list[SilentComparison]:
    """Per (live, silent) version pair: over the calls both evaluated, how often each card type fired under each, and
    on how many calls the silent version would add or drop it; with the live card's acceptance rate."""
    grouped: dict[tuple[str, str], list[tuple[set[str], set[str]]]] = defaultdict(list)
    for live_version, silent_version, live_types, silent_types in calls:
        grouped[(live_version, silent_version)].append((set(live_types.split()), set(silent_types.split())))
    comparisons = []
    for (live_version, silent_version), pairs in sorted(grouped.items()):
        rows: dict[str, SilentCardType] = {}
        for live, silent in pairs:
            for card_type in live | silent:
                row = rows.setdefault(card_type, SilentCardType(card_type, live_acceptance_rate=acceptance.get(
                    (card_type, live_version))))
                row.live += card_type in live
                row.silent += card_type in silent
                row.added += card_type in silent and card_type not in live
                row.dropped += card_type in live and card_type not in silent
        comparisons.append(SilentComparison(live_version, silent_version, len(pairs),
                                            sorted(rows.values(), key=lambda r: r.card_type)))
    return comparisons


PRESENTATION_WINDOW = timedelta(minutes=30)
"""How long after a card the same card counts as shown again rather than anew (an ordering session's length)."""
_WORKFLOWS = {"order-select": "order", "order-sign": "order"}  # the hooks of one ordering workflow


def presentations(issued: Iterable[Any]) -> dict[str, str]:
    """Each issued card's presentation, named by the uuid of its first card. The same card shown again is one with
    the same workflow (patient-view, or the order hooks together), user, patient, card type, knowledge version and
    content digest, issued within PRESENTATION_WINDOW of the previous one; the window slides, so a session of
    re-selections stays one presentation. A card without a user or digest (written before migration 0005) is its own."""
    chains: dict[tuple[Any, ...], tuple[str, datetime]] = {}
    presentation: dict[str, str] = {}
    for row in sorted(issued, key=lambda r: (r.issued_at, r.card_uuid)):
        if row.user_hash is None or row.content_digest is None:
            presentation[row.card_uuid] = row.card_uuid
            continue
        key = (_WORKFLOWS.get(row.hook, row.hook), row.user_hash, row.patient_hash, row.card_type,
               row.knowledge_version, row.content_digest)
        previous = chains.get(key)
        first = previous[0] if previous and row.issued_at - previous[1] <= PRESENTATION_WINDOW else row.card_uuid
        chains[key] = (first, row.issued_at)
        presentation[row.card_uuid] = first
    return presentation


CSV_COLUMNS = ("card_type", "knowledge_version", "issued", "presentations", "accepted", "overridden", "no_response",
               "acceptance_rate", "comments", "accepted_suggestions", "override_reasons")


def report_csv(report: FeedbackReport) -> str:
    """The report as CSV, one row per card type and knowledge version; suggestions and reasons as `label (n)` lists.
    Nothing about a patient is in the report, so nothing is in the file."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow([row.card_type, row.knowledge_version, row.issued, row.presentations, row.accepted,
                         row.overridden,
                         row.no_response, f"{row.acceptance_rate:.4f}", row.comments,
                         "; ".join(f"{label} ({n})" for label, n in row.accepted_suggestions.most_common()),
                         "; ".join(f"{label} ({n})" for label, n in row.override_reasons.most_common())])
    return out.getvalue()


def report_text(report: FeedbackReport) -> str:
    """The report as a plain-text table for the terminal."""
    header = (f"{'card type':24} {'knowledge':22} {'issued':>6} {'shown':>6} {'accept':>6} {'overr.':>6} "
              f"{'none':>6} {'rate':>6}")
    lines = [header, "-" * len(header)]
    for row in report.rows:
        lines.append(f"{row.card_type:24} {row.knowledge_version:22} {row.issued:6} {row.presentations:6} "
                     f"{row.accepted:6} {row.overridden:6} {row.no_response:6} {row.acceptance_rate:6.0%}")
        for label, count in row.accepted_suggestions.most_common():
            lines.append(f"{'':26}accepted: {label} ({count})")
        for reason, count in row.override_reasons.most_common():
            lines.append(f"{'':26}override: {reason} ({count})")
        if row.comments:
            lines.append(f"{'':26}comments: {row.comments}")
    if not report.rows:
        lines.append("No cards issued" + (f" since {report.since.date()}" if report.since else "")
                     + (f" before {report.until.isoformat()[:16]}" if report.until else "") + ".")
    lines.append(f"Feedback for cards not in the ledger: {report.unknown_card_feedback}")
    for comparison in report.silent:
        lines += ["", f"Silent knowledge {comparison.silent_version} beside live {comparison.live_version}, "
                      f"{comparison.calls} calls (per 100 calls):",
                  f"{'card type':24} {'live':>7} {'silent':>7} {'added':>6} {'dropped':>7} {'live acceptance':>16}"]
        for row in comparison.card_types:
            rate = "-" if row.live_acceptance_rate is None else f"{row.live_acceptance_rate:.0%}"
            lines.append(f"{row.card_type:24} {row.per_100(row.live, comparison.calls):7.1f} "
                         f"{row.per_100(row.silent, comparison.calls):7.1f} {row.added:6} {row.dropped:7} {rate:>16}")
    lines.append("Calls counted: " + (", ".join(report.sources) if report.sources is not None else "all"))
    return "\n".join(lines)
