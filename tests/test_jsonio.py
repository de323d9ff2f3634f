"""compact(): the G2 rule (no null or empty values) applied to anything the service emits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cds_service.jsonio import compact
from tests.support import empty_values

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=30,
)


def test_compact_removes_nested_empties_and_keeps_falsy_scalars():
    value = {"a": None, "b": "", "c": [], "d": {}, "e": {"f": [None, {}, ""]}, "g": 0, "h": False, "i": [0, "x"]}
    assert compact(value) == {"g": 0, "h": False, "i": [0, "x"]}


@given(json_values)
def test_compact_leaves_no_empty_value_below_the_top(value):
    result = compact(value)
    if isinstance(result, dict | list) and result:
        assert empty_values(result) == []


@given(json_values)
def test_compact_is_idempotent(value):
    assert compact(compact(value)) == compact(value)
