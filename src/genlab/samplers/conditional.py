"""One latent sampler per class: p(z | y) for class-conditional autoencoders."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import GenlabError
from .base import LatentSampler, make_latent_sampler, sampler_from_state


class ClassConditionalSampler(LatentSampler):
    """A ``base`` sampler fitted separately on the codes of each class.

    A conditional autoencoder's codes are meant to be independent of the label, but in
    practice they still differ by class; decoding a class-3 code with label 7 blurs the
    digit. Fitting the ex-post density per class (``q(z | y)``) keeps codes and labels
    consistent. Each class gets ``n_components`` scaled by its share of the codes (at
    least 1, at most its number of codes); a class never seen in training falls back to
    the sampler fitted on all codes.

    Parameters
    ----------
    base : {"gmm", "prior"}
    n_components : int
        Components in total across classes (for ``base="gmm"``).
    random_state : int
    """

    kind = "per_class"
    needs_labels = True

    def __init__(self, base: str = "gmm", n_components: int = 10, random_state: int = 0) -> None:
        self.base = base
        self.n_components = n_components
        self.random_state = random_state

    def _make(self, n_components: int) -> LatentSampler:
        params: dict[str, Any] = (
            {"n_components": int(n_components), "random_state": int(self.random_state or 0)}
            if self.base == "gmm"
            else {}
        )
        return make_latent_sampler(self.base, **params)

    def _fit_labelled(self, codes: torch.Tensor, labels: torch.Tensor) -> None:
        if self.base not in ("gmm", "prior"):
            raise GenlabError(f"latent_sampler={self.base!r} is not valid; use 'gmm' or 'prior'")
        n = len(codes)
        total = int(self.n_components)
        pooled = self._make(min(total, n)).fit(codes)
        states: list[Any] = []
        n_classes = int(labels.max()) + 1
        for c in range(n_classes):
            mask = (labels == c).to(codes.device)
            count = int(mask.sum())
            if count == 0:
                states.append(None)
                continue
            k = max(1, min(count, round(total * count / n)))
            states.append(self._make(k).fit(codes[mask]).get_state())
        self.pooled_ = pooled.get_state()
        self.classes_ = states
        self.n_classes_ = n_classes

    def _sample_labelled(
        self, labels: torch.Tensor, generator: torch.Generator | None, temperature: float
    ) -> torch.Tensor:
        out = torch.empty((len(labels), self.latent_dim_), dtype=torch.float32)
        for c in torch.unique(labels).tolist():
            index = torch.nonzero(labels == c).flatten()
            state = self.classes_[c] if c < len(self.classes_) and self.classes_[c] is not None else self.pooled_
            out[index] = sampler_from_state(state).sample(len(index), generator, temperature=temperature).float().cpu()
        return out

    def _log_prob(self, codes: torch.Tensor) -> torch.Tensor:
        return sampler_from_state(self.pooled_).log_prob(codes)
