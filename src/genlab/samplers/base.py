"""The latent sampler interface, its registry and its saved-state format."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..errors import GenlabError


class LatentSampler:
    """Fit on codes (N, d), then draw codes (n, d).

    Subclasses store their settings as plain attributes (given to ``__init__``) and their
    fitted state in attributes ending in ``_`` (tensors or JSON values).
    """

    #: registry name ("prior", "gmm")
    kind: ClassVar[str] = ""

    #: whether ``fit`` and ``sample`` need class labels
    needs_labels: ClassVar[bool] = False

    def fit(self, codes: torch.Tensor, labels: torch.Tensor | None = None) -> "LatentSampler":
        """Learn from codes (N, d) (float tensors on any device); returns self.

        ``labels`` (N,) int64 are used by samplers with ``needs_labels`` and ignored by the rest.
        """
        codes = _check_codes(codes)
        self.latent_dim_ = int(codes.shape[1])
        if self.needs_labels:
            self._fit_labelled(codes, _check_labels(labels, len(codes)))
        else:
            self._fit(codes)
        return self

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        labels: torch.Tensor | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """``n`` codes (n, d), float32, on the device of the fitted state (CPU for the prior).

        Random numbers come from ``generator`` (a CPU generator), so a seed repeats a draw.
        ``temperature`` T scales the spread: Gaussian noise is multiplied by T (every
        covariance by T²; T = 1 samples the fitted distribution, T < 1 trades diversity
        for typicality, as in Kingma & Dhariwal 2018). ``labels`` (n,): the class of each
        code, for samplers with ``needs_labels``.
        """
        self._check_fitted()
        if not (isinstance(temperature, (int, float)) and temperature > 0 and temperature == temperature):
            raise GenlabError(f"temperature={temperature!r} must be a positive number")
        if self.needs_labels:
            return self._sample_labelled(_check_labels(labels, int(n)), generator, float(temperature))
        return self._sample(int(n), generator, float(temperature))

    def log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        """Log-density of each code under the sampler's distribution, (N,) float64 nats."""
        self._check_fitted()
        codes = _check_codes(codes)
        if codes.shape[1] != self.latent_dim_:
            raise GenlabError(f"codes: dimension {codes.shape[1]}, but the sampler was fitted on {self.latent_dim_}")
        return self._log_prob(codes)

    # ------------------------------------------------------------------ persistence
    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def get_state(self) -> dict[str, Any]:
        """``{"kind", "params", "fitted"}``: JSON values and tensors (what ``GenerativeModel.save`` stores)."""
        self._check_fitted()
        fitted = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        return {"kind": self.kind, "params": self.get_params(), "fitted": fitted}

    def to(self, device: torch.device | str) -> "LatentSampler":
        """Move the fitted tensors to ``device``; returns self."""
        for key, value in list(vars(self).items()):
            if key.endswith("_") and isinstance(value, torch.Tensor):
                setattr(self, key, value.to(device))
        return self

    # ------------------------------------------------------------------ hooks
    def _fit(self, codes: torch.Tensor) -> None:
        raise NotImplementedError

    def _sample(self, n: int, generator: torch.Generator | None, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    def _log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _fit_labelled(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        raise NotImplementedError

    def _sample_labelled(
        self, labels: torch.Tensor, generator: torch.Generator | None, temperature: float
    ) -> torch.Tensor:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "latent_dim_"):
            raise GenlabError(f"the {self.kind} latent sampler is not fitted yet; call fit(codes) first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _check_codes(codes: Any) -> torch.Tensor:
    codes = torch.as_tensor(codes)
    if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
        raise GenlabError(f"codes: expected a (N, d) array with N, d >= 1, got shape {tuple(codes.shape)}")
    if not codes.dtype.is_floating_point:
        codes = codes.to(torch.float32)
    if not bool(torch.isfinite(codes).all()):
        raise GenlabError("codes: contain NaN or inf")
    return codes.detach()


def _check_labels(labels: Any, n: int) -> torch.Tensor:
    if labels is None:
        raise GenlabError("labels: this latent sampler is class-conditional; pass one label per code")
    labels = torch.as_tensor(labels).reshape(-1)
    if labels.shape != (n,) or labels.dtype.is_floating_point or (n and int(labels.min()) < 0):
        raise GenlabError(f"labels: expected {n} non-negative integer labels, got shape {tuple(labels.shape)}")
    return labels.to(torch.int64).cpu()


def _registry() -> dict[str, type[LatentSampler]]:
    from .conditional import ClassConditionalSampler
    from .gmm import GaussianMixtureSampler
    from .prior import PriorSampler

    return {cls.kind: cls for cls in (PriorSampler, GaussianMixtureSampler, ClassConditionalSampler)}


#: the latent sampler names (``latent_sampler=`` of the autoencoders)
LATENT_SAMPLERS: tuple[str, ...] = ("prior", "gmm")


def make_latent_sampler(kind: str, *, argument: str = "latent_sampler", **params: Any) -> LatentSampler:
    """A new sampler by name ("prior", "gmm", or "per_class" — one sampler per class
    label, see :class:`~genlab.samplers.ClassConditionalSampler`); ``argument`` is the
    parameter name errors mention."""
    registry = _registry()
    if kind not in registry:
        raise GenlabError(f"{argument}={kind!r} is not valid; use one of {', '.join(map(repr, LATENT_SAMPLERS))}")
    return registry[kind](**params)


def sampler_from_state(state: dict[str, Any]) -> LatentSampler:
    """Rebuild a fitted sampler from :meth:`LatentSampler.get_state`'s dict."""
    if not isinstance(state, dict) or not {"kind", "params", "fitted"} <= set(state):
        raise GenlabError("latent sampler state: expected a dict with kind, params and fitted")
    sampler = make_latent_sampler(state["kind"], **state["params"])
    for key, value in state["fitted"].items():
        if not key.endswith("_"):
            raise GenlabError(f"latent sampler state: {key!r} is not a fitted attribute")
        setattr(sampler, key, value)
    sampler._check_fitted()
    return sampler
