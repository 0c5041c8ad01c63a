"""Model registry: ``make_model(name, **params)`` and ``list_models()``."""

from __future__ import annotations

from typing import Callable, TypeVar

from ..errors import GenlabError

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a model available as ``make_model(name)``."""

    def deco(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RuntimeError(f"model name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def get_model_class(name: str) -> type:
    _ensure_loaded()
    if not isinstance(name, str):
        raise GenlabError(f"model name {name!r}: expected a string such as 'gmm'")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GenlabError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def make_model(name: str, **params):
    """Create a model by registry name, e.g. ``make_model("gmm", n_components=50)``."""
    cls = get_model_class(name)
    valid = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise GenlabError(f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    schema = getattr(cls, "parameter_schema", {})
    for key, value in params.items():  # early, clear errors (fit checks again, scikit-learn style)
        if key in schema:
            schema[key].validate(f"{name}: {key}", value)
    return cls(**params)


def list_models() -> dict[str, str]:
    """Registered model names with the first line of their docstrings."""
    _ensure_loaded()
    return {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in sorted(_REGISTRY.items())}


def describe_models() -> dict[str, dict]:
    """Every registered model as JSON-able data: doc, likelihood kind, capabilities,
    conditionings, hyper-parameter schema and sample options (``genlab models --json``)."""
    _ensure_loaded()
    out = {}
    for name, cls in sorted(_REGISTRY.items()):
        doc = (cls.__doc__ or "").strip()
        out[name] = {
            "name": name,
            "doc": doc.splitlines()[0] if doc else "",
            "likelihood": cls.likelihood,
            "capabilities": sorted(cls.capabilities),
            "conditionings": list(cls.conditionings),
            "parameters": {k: p.to_json() for k, p in cls.parameter_schema.items()},
            "sample_options": {k: p.to_json() for k, p in cls.sample_options.items()},
        }
    return out


def _ensure_loaded() -> None:
    from . import _all_models  # noqa: F401  (importing registers every family)
