"""Declared parameters: what a model's hyper-parameters and per-call options accept.

A :class:`Param` states the type, the range or choices, the default and a one-line help of
one value, in the spirit of scikit-learn's ``_parameter_constraints``. Model classes
declare them as ``parameter_schema`` (hyper-parameters of ``__init__``) and
``sample_options`` (keyword options of ``sample``); validation, ``genlab models --json``
and any form built from them (the web UI) read the same declaration.

Kinds:

* ``"int"``, ``"float"`` — numbers (bools are refused; floats must be finite), within
  ``low``/``high`` (inclusive unless ``low_inclusive``/``high_inclusive`` say otherwise).
  With ``choices`` the named strings are accepted as well (e.g. a KDE bandwidth: a number
  or "cv"/"scott"/"silverman").
* ``"bool"`` — True or False (NumPy bools too).
* ``"str"`` — a non-empty string; ``"path"`` — a string or ``os.PathLike``; ``"choice"`` — one of ``choices``.
* ``"int_list"`` — a non-empty list/tuple of ints within the range (e.g. U-Net channel multipliers).
* ``"text"`` — one non-empty string or a list of them (prompts).
* ``"array"`` — array-like numbers (initial values of an estimator); only the type is checked here.

``nullable=True`` also accepts None (for most hyper-parameters: "take the preset's value").
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import GenlabError

KINDS = ("int", "float", "bool", "str", "path", "choice", "int_list", "text", "array")


@dataclass(frozen=True)
class Param:
    """One declared value (see the module docstring for the kinds)."""

    kind: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    nullable: bool = False
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Param kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "choice" and not self.choices:
            raise ValueError("a 'choice' Param needs choices")
        if self.choices is not None and not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))

    # ------------------------------------------------------------------ checking
    def validate(self, name: str, value: Any) -> Any:
        """``value`` checked (and normalised: NumPy scalars -> Python); GenlabError naming ``name`` otherwise."""
        if value is None:
            if self.nullable:
                return None
            raise GenlabError(f"{name}=None is not allowed; expected {self.describe()}")
        if self.choices is not None and self.kind in ("int", "float") and isinstance(value, str):
            if value in self.choices:
                return value
            raise GenlabError(f"{name}={value!r} is not valid; expected {self.describe()}")
        if self.kind == "int":
            return self._in_range(name, _as_int(name, value, self.describe()))
        if self.kind == "float":
            return self._in_range(name, _as_float(name, value, self.describe()))
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise GenlabError(f"{name}={value!r} must be True or False")
        if self.kind == "str":
            if isinstance(value, str) and value.strip():
                return value
            raise GenlabError(f"{name}={value!r} must be a non-empty string")
        if self.kind == "path":
            if isinstance(value, (str, os.PathLike)) and str(value).strip():
                return value
            raise GenlabError(f"{name}={value!r} must be a folder path")
        if self.kind == "choice":
            if _in_choices(value, self.choices):
                return value
            raise GenlabError(f"{name}={value!r} is not valid; use one of {', '.join(repr(c) for c in self.choices)}")
        if self.kind == "int_list":
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) == 0:
                raise GenlabError(f"{name}={value!r} must be a non-empty list of integers{self._range_text()}")
            return [self._in_range(name, _as_int(name, v, "a list of integers")) for v in value]
        if self.kind == "text":
            items = [value] if isinstance(value, str) else value
            if (
                isinstance(items, (list, tuple))
                and len(items) > 0
                and all(isinstance(t, str) and t.strip() for t in items)
            ):
                return value if isinstance(value, str) else list(value)
            raise GenlabError(f"{name}={value!r} must be a non-empty text or a list of non-empty texts")
        # "array"
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise GenlabError(f"{name}: expected an array of numbers, got {type(value).__name__}") from None
        if not np.all(np.isfinite(arr)):
            raise GenlabError(f"{name}: contains NaN or inf")
        return value

    def _in_range(self, name: str, value: float) -> Any:
        if self.low is not None and (value < self.low if self.low_inclusive else value <= self.low):
            bound = f"{'>=' if self.low_inclusive else '>'} {_num(self.low)}"
        elif self.high is not None and (value > self.high if self.high_inclusive else value >= self.high):
            bound = f"{'<=' if self.high_inclusive else '<'} {_num(self.high)}"
        else:
            return value
        raise GenlabError(f"{name}={value!r} must be {bound} (out of range; expected {self.describe()})")

    # ------------------------------------------------------------------ describing
    def _range_text(self) -> str:
        if self.low is None and self.high is None:
            return ""
        lo = "(-inf" if self.low is None else ("[" if self.low_inclusive else "(") + _num(self.low)
        hi = "inf)" if self.high is None else _num(self.high) + ("]" if self.high_inclusive else ")")
        return f" in {lo}, {hi}"

    def describe(self) -> str:
        """Human-readable: 'a float in (0, 1]', 'one of 'a', 'b'', '... or None'."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind in ("int", "float"):
            text = ("an integer" if self.kind == "int" else "a finite number") + self._range_text()
            if self.choices:
                text += " or one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "int_list":
            text = "a non-empty list of integers" + self._range_text()
        else:
            text = {
                "bool": "True or False",
                "str": "a non-empty string",
                "path": "a folder path",
                "text": "a text or a list of texts",
                "array": "an array of numbers",
            }[self.kind]
        return text + (" or None" if self.nullable else "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (for ``genlab models --json`` and UI forms)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "default": _jsonable(self.default),
            "nullable": self.nullable,
            "help": self.help,
        }
        if self.choices is not None:
            out["choices"] = [_jsonable(c) for c in self.choices]
        if self.low is not None:
            out["low"], out["low_inclusive"] = _jsonable(self.low), self.low_inclusive
        if self.high is not None:
            out["high"], out["high_inclusive"] = _jsonable(self.high), self.high_inclusive
        return out


def validate_values(values: Mapping[str, Any], schema: Mapping[str, Param], *, what: str) -> dict[str, Any]:
    """Check every entry of ``values`` against ``schema``; unknown names raise a GenlabError
    naming the valid ones (``what`` says whose: "diffusion sample options")."""
    unknown = sorted(set(values) - set(schema))
    if unknown:
        valid = ", ".join(sorted(schema)) or "none"
        raise GenlabError(f"{what}: unknown option(s) {', '.join(unknown)}; valid: {valid}")
    return {name: schema[name].validate(name, value) for name, value in values.items()}


def _as_int(name: str, value: Any, expected: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise GenlabError(f"{name}={value!r} must be an integer; expected {expected}")
    return int(value)


def _as_float(name: str, value: Any, expected: str) -> float:
    try:  # float() of a huge int overflows: that is "not finite" too
        finite = (
            not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real) and math.isfinite(float(value))
        )
    except OverflowError:
        finite = False
    if not finite:
        shown = (
            repr(value)
            if not isinstance(value, int) or abs(value) < 10**20
            else f"{str(value)[:12]}... ({len(str(abs(value)))} digits)"
        )
        raise GenlabError(f"{name}={shown} must be a finite number; expected {expected}")
    return float(value)


def _in_choices(value: Any, choices: tuple[Any, ...]) -> bool:
    # 1 == True in Python: a choice list of strings must not accept a bool that happens to hash equal
    return any(value == c and type(value) is type(c) for c in choices) or (isinstance(value, str) and value in choices)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, np.generic):
        return value.item()
    return value
