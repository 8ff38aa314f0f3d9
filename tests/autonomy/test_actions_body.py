"""The action body's direct check (``ActionCreateSerializer.validated``) agrees with the
serializer it stands in for: whatever it accepts, the serializer accepts identically."""

from hypothesis import example, given, settings
from hypothesis import strategies as st

from autonomy.api.actions import ActionCreateSerializer, plain_body

text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from([" ", "\t", "\n", "\x00", "\ud800", "a", "é", "."])),
    st.integers(min_value=140, max_value=2010).map(lambda n: " " + "x" * n + " "),
)
value = st.one_of(
    text,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
body = st.dictionaries(
    st.sampled_from(["operation", "params", "reason", "risk_tier"]), value, max_size=4
)


def serializer_says(data):
    serializer = ActionCreateSerializer(data=data)
    return serializer.validated_data if serializer.is_valid() else None


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(body, value))
@example(data={"operation": "erp.post\ud800"})
@example(data={"operation": "erp.post", "reason": "a\x00"})
@example(data={"operation": " erp.post ", "reason": " " + "x" * 2000})
@example(data={"operation": "\t"})
def test_the_direct_check_never_accepts_what_the_serializer_would_not(data):
    fast = plain_body(data)
    if fast is not None:
        assert serializer_says(data) == fast


@given(
    operation=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and "\x00" not in s),
    reason=st.text(max_size=30).filter(lambda s: "\x00" not in s),
    params=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
def test_usual_bodies_take_the_direct_check_and_get_the_serializers_answer(
    operation, reason, params
):
    try:
        (operation + reason).encode("utf-8")
    except UnicodeEncodeError:
        return
    data = {"operation": operation, "params": params, "reason": reason}
    assert plain_body(data) is not None
    assert ActionCreateSerializer.validated(data) == serializer_says(data)


def test_a_bad_body_still_gets_the_serializers_errors():
    import pytest
    from rest_framework.exceptions import ValidationError

    with pytest.raises(ValidationError) as raised:
        ActionCreateSerializer.validated({"operation": "  ", "params": [], "colour": 1})
    assert set(raised.value.detail) == {"colour"}  # unknown fields are named first
    with pytest.raises(ValidationError) as raised:
        ActionCreateSerializer.validated({"operation": "  ", "params": None})
    assert set(raised.value.detail) == {"operation", "params"}
