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
    return cls(**params)


def list_models() -> dict[str, str]:
    """Registered model names with the first line of their docstrings."""
    _ensure_loaded()
    return {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in sorted(_REGISTRY.items())}


def _ensure_loaded() -> None:
    from . import _all_models  # noqa: F401  (importing registers every family)
