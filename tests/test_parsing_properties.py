"""Property tests (hypothesis) of the CLI's value parsing and of schema validation.

They found real bugs, now fixed: grid values holding commas inside quotes or braces were
split apart; an unbalanced ']' silently glued every later value into one; values with
surrounding spaces (``-p bandwidth= cv``) were kept with the spaces; a parameter given twice
silently kept the last value; a huge integer given for a float parameter raised
OverflowError (a traceback in the CLI) instead of a GenlabError.
"""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from genlab import GenlabError
from genlab.cli import parse_grid, parse_params, parse_value
from genlab.models import get_model_class, list_models
from genlab.models.schema import Param

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON scalars and small containers: what a user can write as a value
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@SETTINGS
@given(values)
def test_parse_value_reads_back_any_json_value(value):
    assert parse_value(json.dumps(value)) == value


@SETTINGS
@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_parse_value_reads_python_ints_and_floats(n):
    assert parse_value(str(n)) == n and type(parse_value(str(n))) is int
    x = n / 7
    assert parse_value(repr(x)) == x


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]), max_size=30))
@example(" cv ")
@example("cuda:1")
def test_parse_value_never_raises_and_strips_plain_words(text):
    out = parse_value(text)
    if isinstance(out, str):
        assert out == text.strip()


@SETTINGS
@given(st.lists(values, min_size=1, max_size=5))
@example(["a,b", "c"])
@example([{"x": 1, "y": 2}, 3])
@example(["it's", 'say "hi", then'])
def test_parse_grid_reads_back_any_list_of_json_values(items):
    text = ",".join(json.dumps(v) for v in items)
    assert parse_grid((f"k={text}",)) == {"k": items}


def test_parse_grid_keeps_apostrophes_inside_plain_words():
    assert parse_grid(("k=it's,b",)) == {"k": ["it's", "b"]}


@pytest.mark.parametrize("bad", ["k=1],2", "k=[1,2", "k='open,2", "k={1,2"])
def test_parse_grid_refuses_unbalanced_values(bad):
    with pytest.raises(GenlabError, match="--grid"):
        parse_grid((bad,))


@SETTINGS
@given(st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True), values, min_size=1, max_size=5))
def test_parse_params_reads_back_name_value_pairs(params):
    pairs = tuple(f"{k}={json.dumps(v)}" for k, v in params.items())
    assert parse_params(pairs) == params


def test_parse_params_refuses_a_name_given_twice():
    with pytest.raises(GenlabError, match="n_components given twice"):
        parse_params(("n_components=3", "n_components=4"))


# ---------------------------------------------------------------------- schema validation
bounds = st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))


@SETTINGS
@given(
    low=bounds,
    high=bounds,
    low_inclusive=st.booleans(),
    high_inclusive=st.booleans(),
    value=st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400)),
)
@example(low=0.0, high=1.0, low_inclusive=False, high_inclusive=True, value=10**400)
@example(low=0.0, high=1.0, low_inclusive=False, high_inclusive=True, value=0.0)
@example(low=0.0, high=1.0, low_inclusive=False, high_inclusive=True, value=1)
def test_float_params_accept_exactly_finite_values_in_range(low, high, low_inclusive, high_inclusive, value):
    p = Param("float", None, low=low, high=high, low_inclusive=low_inclusive, high_inclusive=high_inclusive)
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    inside = math.isfinite(x)
    if inside and low is not None:
        inside = x >= low if low_inclusive else x > low
    if inside and high is not None:
        inside = x <= high if high_inclusive else x < high
    if inside:
        out = p.validate("v", value)
        assert out == x and type(out) is float
    else:
        with pytest.raises(GenlabError, match=r"^v="):
            p.validate("v", value)


@SETTINGS
@given(
    low=st.one_of(st.none(), st.integers(-100, 100)),
    high=st.one_of(st.none(), st.integers(-100, 100)),
    value=st.one_of(st.integers(-(10**30), 10**30), st.booleans(), st.floats(), st.just(np.int64(3))),
)
def test_int_params_accept_exactly_integers_in_range(low, high, value):
    p = Param("int", None, low=low, high=high)
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if ok:
        out = p.validate("n", value)
        assert out == value and type(out) is int
    else:
        with pytest.raises(GenlabError, match=r"^n="):
            p.validate("n", value)


def _schema_cases():
    for name in sorted(list_models()):
        for key, param in get_model_class(name).parameter_schema.items():
            if param.kind in ("int", "float") and (param.low is not None or param.high is not None):
                yield name, key, param


@pytest.mark.parametrize("model, key, param", list(_schema_cases()), ids=lambda v: v if isinstance(v, str) else "")
@SETTINGS
@given(data=st.data())
def test_cli_text_of_a_valid_value_validates_to_that_value(model, key, param, data):
    """What a user types on the command line (-p key=VALUE) for any value in a model's
    declared range parses and validates to that value; just outside the range it is refused."""
    lo = param.low if param.low is not None else -1e6
    hi = param.high if param.high is not None else 1e6
    if param.kind == "int":
        value = data.draw(
            st.integers(
                int(math.ceil(lo)) + (0 if param.low_inclusive else 1), int(hi) - (0 if param.high_inclusive else 1)
            )
        )
        text = str(value)
    else:
        value = data.draw(st.floats(lo, hi, exclude_min=not param.low_inclusive, exclude_max=not param.high_inclusive))
        text = repr(value)
    assert param.validate(key, parse_value(text)) == value
    if param.low is not None:
        below = param.low - 1 if param.low_inclusive else param.low
        with pytest.raises(GenlabError, match=f"^{key}="):
            param.validate(key, parse_value(repr(below) if param.kind == "float" else str(int(below))))
