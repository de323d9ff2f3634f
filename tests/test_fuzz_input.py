"""Property tests: valid requests with one value replaced by something odd (a wrong type, an extreme number or date,
deep nesting, NUL, a very long string) never cost a 5xx, every 4xx is an OperationOutcome, and no card cites an
out-of-range date. Bounded examples, so the suite stays fast; the cases it found are in test_hostile_input.py."""

from __future__ import annotations

import copy
import re
import uuid
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.fixtures import find_fixture
from cds_service.services import order_sign, patient_view
from cds_service.state import state
from tests.support import assert_operation_outcome

PV = "/cds-services/fbss-miss-advisor"
SIGN = "/cds-services/fbss-miss-orders"
VIEW = find_fixture("recurrent-herniation")
ORDERS = find_fixture("order-mixed-bundle")
EXTREME_DATES = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31", "0001-01-01",
                 "2019-13-45", "20190101", ""]
# An extreme date as a card would print it; a bare "9999" also turns up in card and suggestion uuids (hex).
_EXTREME_CITED = re.compile(r"\b(9999|0001)-\d\d-\d\d")
DATE_KEY = re.compile(r"(?i)(date|time|authoredOn|issued|onset|performed|effective|start|end|birth)")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


ODD = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=30), st.just("a\x00b"), st.just("x" * 100_000), st.just("\ud800"),
    st.sampled_from(EXTREME_DATES), st.just([]), st.just({}),
    st.integers(min_value=1, max_value=200).map(_nested),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(document: Any, path: tuple, value: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


PV_BODY = VIEW.hook_request(patient_view.SERVICE.prefetch, VIEW.anchor)
SIGN_BODY = ORDERS.hook_request(order_sign.SERVICE.prefetch, ORDERS.anchor, hook="order-sign",
                                context=copy.deepcopy(ORDERS.expected["context"]))
FEEDBACK_BODY = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                               "outcomeTimestamp": "2026-12-04T09:00:00Z",
                               "overrideReason": {"reason": {"system": "http://example.org", "code": "c",
                                                             "display": "d"}, "userComment": "x"}}]}
TARGETS = [(PV, PV_BODY, _paths(PV_BODY)), (SIGN, SIGN_BODY, _paths(SIGN_BODY)),
           (PV + "/feedback", FEEDBACK_BODY, _paths(FEEDBACK_BODY))]


def _send(app, url: str, document: Any):
    try:
        data = orjson.dumps(document)
    except (TypeError, orjson.JSONEncodeError):  # a lone surrogate or nesting orjson will not write: send it raw
        import json  # noqa: PLC0415

        data = json.dumps(document).encode("utf-8", "surrogatepass")
    return app.test_client().post(url, data=data, content_type="application/json")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(target=st.sampled_from(range(len(TARGETS))), choice=st.data(), odd=ODD)
def test_one_odd_value_anywhere_is_never_a_server_error(app, target, choice, odd):
    state(app).clock = lambda: VIEW.anchor
    url, document, paths = TARGETS[target]
    path = choice.draw(st.sampled_from(paths))
    response = _send(app, url, _replace(document, path, odd))
    assert response.status_code < 500, (path, response.get_data(as_text=True)[:300])
    if response.status_code >= 400:
        assert_operation_outcome(response, response.status_code)
    elif url != PV + "/feedback" and isinstance(odd, str) and odd in EXTREME_DATES[:4] \
            and isinstance(path[-1], str) and DATE_KEY.search(path[-1]):
        text = response.get_data(as_text=True)
        assert not _EXTREME_CITED.search(text), path  # never cited as evidence


def test_every_date_and_quantity_in_a_request_taking_an_extreme_value_is_never_a_server_error(app):
    """Exhaustive where the random search is thin: every date-like field of the patient-view and order-sign
    requests set to each extreme date, every numeric `value` to each extreme number."""
    state(app).clock = lambda: VIEW.anchor
    failures = []
    for url, document, paths in TARGETS[:2]:
        date_paths = [p for p in paths if isinstance(p[-1], str) and DATE_KEY.search(p[-1])
                      and isinstance(_value_at(document, p), str)]
        value_paths = [p for p in paths if p[-1] == "value" and isinstance(_value_at(document, p), int | float)]
        cases = [(p, d) for p in date_paths for d in EXTREME_DATES[:4]]
        cases += [(p, n) for p in value_paths for n in (1e300, -1e300, 10**30, 0)]
        for path, odd in cases:
            response = _send(app, url, _replace(document, path, odd))
            if response.status_code >= 500:
                failures.append((url, path, odd, response.status_code))
            elif response.status_code == 200 and isinstance(odd, str) and _cites_an_extreme_date(response):
                failures.append((url, path, odd, "cited"))
        assert date_paths and value_paths
    assert failures == []


def _cites_an_extreme_date(response) -> bool:
    text = response.get_data(as_text=True)
    return bool(_EXTREME_CITED.search(text))


def _value_at(document: Any, path: tuple) -> Any:
    for step in path:
        document = document[step]
    return document
