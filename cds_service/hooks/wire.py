"""A hook request read off the wire keeping only what the service reads: a typed msgspec decode.

An EHR's resources are mostly fields no rule reads (narrative, meta, identifiers, encounter and performer
references, reference ranges, dosage text...). Decoding them into Python objects and freeing them again is most of
the cost of `orjson.loads` on a real request. msgspec, given the shape below, skips every other field while parsing
and returns plain dicts holding only the named keys: about 0.4 to 0.6 times the cost of `orjson.loads` on EHR-style
data (bench/), and the rest of the service sees the same dicts it would have seen, minus fields it never reads.

Leaf values the service reads are typed `Any`, so odd values (a list-valued `status`, a number where a string belongs)
decode as they are and the defensive readers in cds_service.fhir.record deal with them. The containers are typed (the
prefetch object, a Bundle's `entry` list, an entry's `resource`, and CodeableConcept, Coding, Dosage, Quantity shapes,
so that their unread parts are skipped as well); a body that does not fit them (invalid FHIR), or is not valid JSON,
is parsed again with `orjson.loads` in full, the general path, which gives exactly the behaviour (and error messages)
the service has for any body.

`RESOURCE_FIELDS` must name every element of a prefetched resource that any reader uses: the PatientRecord builder,
prefetch resolution (Bundle `entry` and `link`, OperationOutcome `issue`), the patient check (`subject`, `patient`).
tests/test_wire.py proves that records built from the slim decode equal records built from the full parse, for every
fixture and for generated garbage.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec
import orjson

# Elements of prefetched resources that the service reads (cds_service.fhir.record, cds_service.fhir.resolve).
RESOURCE_FIELDS = (
    "resourceType", "id", "status", "intent", "code", "procedureCode", "component", "verificationStatus",
    "clinicalStatus", "onsetDateTime", "onsetPeriod", "onsetAge", "recordedDate", "abatementDateTime",
    "abatementPeriod", "abatementAge", "performedDateTime", "performedPeriod", "performedAge", "bodySite",
    "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued", "dataAbsentReason", "valueQuantity",
    "valueInteger", "valueCodeableConcept", "medicationCodeableConcept", "medicationReference", "contained",
    "dosageInstruction", "authoredOn", "dispenseRequest", "occurrenceDateTime", "occurrencePeriod", "conclusion",
    "description", "series", "started", "birthDate", "link", "issue", "subject", "patient",
)


class WireCoding(TypedDict, total=False):
    """Coding: what evidence cites (system, code, display); `version`, `userSelected`, extensions are skipped."""

    system: Any
    code: Any
    display: Any


class WireConcept(TypedDict, total=False):
    """CodeableConcept."""

    coding: list[WireCoding]
    text: Any


class WireRepeat(TypedDict, total=False):
    boundsPeriod: Any


class WireTiming(TypedDict, total=False):
    repeat: WireRepeat


class WireDosage(TypedDict, total=False):
    """Dosage: only the timing bounds (an EHR's dosage text, routes and dose rates are skipped)."""

    timing: WireTiming


class WireDispense(TypedDict, total=False):
    expectedSupplyDuration: Any


class WireQuantity(TypedDict, total=False):
    value: Any
    unit: Any
    code: Any


class WireReference(TypedDict, total=False):
    """Reference (subject, patient): only the literal reference is read (whose data it is: fhir/identity.py)."""

    reference: Any


class WireEntry(TypedDict, total=False):
    """Bundle.entry: only the resource is read."""

    resource: WireResource


# The bulky elements are read through shapes of their own, so that their unread parts are skipped too; a value of
# another shape (invalid FHIR) sends the whole body to the full parse.
_SHAPED = {"code": WireConcept, "clinicalStatus": WireConcept, "verificationStatus": WireConcept,
           "medicationCodeableConcept": WireConcept, "valueCodeableConcept": WireConcept,
           "dosageInstruction": list[WireDosage], "dispenseRequest": WireDispense, "valueQuantity": WireQuantity,
           "subject": WireReference, "patient": WireReference}

# Built from RESOURCE_FIELDS, which mypy cannot read (this module is not compiled; msgspec reads it at run time).
WireResource = TypedDict("WireResource", {**{name: _SHAPED.get(name, Any) for name in RESOURCE_FIELDS},  # type: ignore[misc]
                                          "entry": list[WireEntry]}, total=False)
WireResource.__doc__ = "A prefetched resource or Bundle, with only the elements the service reads."


class WireHookRequest(TypedDict, total=False):
    """The CDS Hooks request: the context (draft orders included) is kept whole; prefetch is read slim."""

    hook: Any
    hookInstance: Any
    fhirServer: Any
    fhirAuthorization: Any
    context: Any
    prefetch: dict[str, WireResource | None]


_DECODER = msgspec.json.Decoder(WireHookRequest)


def decode_slim(data: bytes) -> Any:
    """The slim decode alone: raises `msgspec.MsgspecError` for a body of another shape (tests use it to check that
    EHR-shaped requests take this path)."""
    return _DECODER.decode(data)


def decode_hook_request(data: bytes) -> Any:
    """The parsed body: slim when it has the shape of a hook request, otherwise the full parse (same errors as
    `orjson.loads`: a `ValueError` for malformed JSON)."""
    try:
        return _DECODER.decode(data)
    except (msgspec.MsgspecError, RecursionError):
        return orjson.loads(data)
