"""POST /cds-services/{id}/feedback: the 2.0 feedback shape is checked (F2-F7); wrong shapes are 400."""

from __future__ import annotations

import pytest

from tests.support import assert_operation_outcome

URL = "/cds-services/fbss-miss-advisor/feedback"
CARD = "9f5e0a0e-3b6d-4a43-a5b3-4d4e0b7e2a11"


def _item(**fields):
    item = {"card": CARD, "outcome": "accepted", "acceptedSuggestions": [{"id": "s-1"}],
            "outcomeTimestamp": "2025-06-01T12:05:31Z"}
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


@pytest.mark.parametrize("item", [
    _item(),
    _item(outcome="overridden", acceptedSuggestions=None),
    _item(outcome="overridden", acceptedSuggestions=None, overrideReason={
        "reason": {"code": "patient-declined", "system": "urn:spine-cds:override-reason", "display": "Declined"},
        "userComment": "Patient wants to wait"}),
    # The public sandbox omits `system`; a client may add a code the service never offered (F5).
    _item(outcome="overridden", acceptedSuggestions=None, overrideReason={"reason": {"code": "x", "display": "X"}}),
    _item(outcome="overridden", acceptedSuggestions=None, overrideReason={"userComment": "free text"}),
    _item(outcomeTimestamp="2025-06-01T12:05:31.123+02:00"),
])
def test_valid_feedback_is_200(client, item):
    response = client.post(URL, json={"feedback": [item]})
    assert response.status_code == 200


def test_the_same_feedback_twice_is_200_both_times(client):
    body = {"feedback": [_item()]}
    assert client.post(URL, json=body).status_code == 200
    assert client.post(URL, json=body).status_code == 200


@pytest.mark.parametrize(("body", "named"), [
    ({}, "'feedback'"),
    ({"feedback": []}, "'feedback'"),
    ({"feedback": ["x"]}, "feedback[0]"),
    ({"feedback": [_item(card=None)]}, "feedback[0].card"),
    ({"feedback": [_item(outcome="ignored")]}, "feedback[0].outcome"),
    ({"feedback": [_item(acceptedSuggestions=None)]}, "acceptedSuggestions"),
    ({"feedback": [_item(acceptedSuggestions=[{}])]}, "acceptedSuggestions"),
    ({"feedback": [_item(outcomeTimestamp=None)]}, "outcomeTimestamp"),
    ({"feedback": [_item(outcomeTimestamp="yesterday")]}, "outcomeTimestamp"),
    ({"feedback": [_item(outcomeTimestamp="2025-06-01T12:05:31")]}, "time zone"),
    ({"feedback": [_item(outcome="overridden", acceptedSuggestions=None, overrideReason={})]}, "overrideReason"),
    ({"feedback": [_item(outcome="overridden", acceptedSuggestions=None,
                         overrideReason={"reason": "text"})]}, "overrideReason.reason"),
])
def test_wrong_shape_is_400(client, body, named):
    assert_operation_outcome(client.post(URL, json=body), 400, named)


def test_feedback_for_unknown_service_is_404(client):
    assert_operation_outcome(client.post("/cds-services/nope/feedback", json={"feedback": [_item()]}), 404)


def test_feedback_must_be_json(client):
    assert_operation_outcome(client.post(URL, data="x", content_type="text/plain"), 415)
