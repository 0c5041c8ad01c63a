"""Decoder likelihoods p(u | z): normalised densities of pixel values on the unit cube.

genlab's likelihood convention (:mod:`genlab.likelihood`) scores a density over
dequantised pixels ``u = (x + e) / 256`` in ``[0, 1]^D``. Every likelihood here is a
proper density on ``[0, 1]`` per pixel (it integrates to 1 over the cube), so
``log p(u | z)`` plugs straight into an ELBO that bounds the convention's ``log p(u)``:

* :class:`ContinuousBernoulli` ("bernoulli") — Loaiza-Ganem & Cunningham (2019):
  ``p(u) ∝ λ^u (1-λ)^(1-u)`` normalised on [0, 1]. Written with the natural parameter
  ``η = logit λ`` it is the exponential family ``p(u) = η e^(η u) / (e^η - 1)``. The
  plain Bernoulli "likelihood" of grey values is not a density at all (the lecture's
  pitfall), so it cannot be compared with other models' numbers.
* :class:`TruncatedGaussian` ("gaussian") — a Gaussian with learned mean and variance
  per pixel, truncated to [0, 1] and renormalised by ``Φ((1-μ)/σ) - Φ(-μ/σ)``.
* :class:`DiscretizedLogistic` ("logistic") — PixelCNN++'s discretised logistic (one
  component): 256 bin probabilities ``P(x)`` per pixel whose outer bins absorb the tails,
  turned into the convention's density ``p(u) = 256 P(x)`` on the pixel's cell
  (``log p(u) = log P(x) + D ln 256`` per image).

Decoder outputs have ``n_params * C`` channels: ``params`` (B, n_params * C, H, W) are
split into ``n_params`` groups of C channels. Every method works on any shape of ``u``
as long as ``params`` has ``n_params`` times its channels (dim 1).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ..errors import GenlabError

LN_256 = math.log(256.0)
#: log-scale bounds of the Gaussian and logistic decoders (σ from ~1e-3 to ~7)
LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 2.0
LIKELIHOODS = ("bernoulli", "gaussian", "logistic")


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for small and large ``d`` (Mächler 2012)."""
    return torch.where(d < math.log(2.0), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


class DecoderLikelihood:
    """A per-pixel density on [0, 1] parameterised by decoder outputs (see the module docstring)."""

    name: str = ""
    #: decoder output channels per image channel
    n_params: int = 1

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(params.chunk(self.n_params, dim=1)) if self.n_params > 1 else (params,)

    def log_density(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Per-pixel log-density (nats) of ``u`` in [0, 1], same shape as ``u``."""
        raise NotImplementedError

    def log_prob(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log p(u | params)`` summed over all but the first dim: (B,) nats per image."""
        return self.log_density(u, params).flatten(1).sum(1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The mean of each pixel's distribution, in [0, 1] (the decoded image)."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per pixel, in [0, 1] (the uniform draws come from ``generator`` on the CPU)."""
        raise NotImplementedError

    def _uniform(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(like.shape, generator=generator, dtype=torch.float64).to(like.device)


class ContinuousBernoulli(DecoderLikelihood):
    """Continuous Bernoulli with natural parameter (logit) ``η``: ``p(u) = η e^(ηu) / (e^η - 1)``.

    The decoder outputs ``r`` and ``η = sinh(r)``. On dequantised data a saturated pixel
    (u within 1/256 of 0 or 1) wants ``|η| ≈ 500`` while grey pixels need ``|η| < 10``;
    with ``η = r`` the network must produce outputs in the hundreds and, in practice,
    its last ReLU features die on the strokes (outputs stuck near η = 0, grey strokes).
    ``sinh`` reaches ±500 at r ≈ ±6.9, is the identity near 0, and keeps the gradient
    ``cosh(r) (u - E[u])`` of order one at every scale.
    """

    name = "bernoulli"
    n_params = 1

    @staticmethod
    def natural(params: torch.Tensor) -> torch.Tensor:
        """η = sinh(r) from decoder outputs r (clamped to |r| <= 12, |η| <= 8e4)."""
        return torch.sinh(params.clamp(-12.0, 12.0))

    @staticmethod
    def log_normalizer(eta: torch.Tensor) -> torch.Tensor:
        """``log ∫_0^1 e^(ηu) du = log((e^η - 1) / η)``, stable for every η (Taylor series near 0)."""
        a = eta.abs()
        small = a < 1e-2
        safe = torch.where(small, torch.ones_like(a), a)
        # for |η|: |η| + log(1 - e^-|η|) - log|η|; a negative η subtracts |η| (mirror symmetry)
        at_abs = safe + torch.log(-torch.expm1(-safe)) - torch.log(safe)
        value = torch.where(eta >= 0, at_abs, at_abs - safe)
        series = eta / 2 + eta.pow(2) / 24 - eta.pow(4) / 2880
        return torch.where(small, series, value)

    def log_density(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        eta = self.natural(params)
        return eta * u - self.log_normalizer(eta)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        eta = self.natural(params)
        a = eta.abs()
        small = a < 1e-2
        safe = torch.where(small, torch.ones_like(a), a)
        upper = 1.0 / (-torch.expm1(-safe)) - 1.0 / safe  # the mean for +|η|, in (1/2, 1)
        upper = torch.where(small, 0.5 + a / 12 - a.pow(3) / 720, upper)
        return torch.where(eta >= 0, upper, 1.0 - upper)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # inverse CDF for the negative parameter -|η| (no overflow), mirrored for η > 0
        eta = self.natural(params.to(torch.float64))
        a = eta.abs()
        v = self._uniform(params, generator)
        small = a < 1e-6
        safe = torch.where(small, torch.ones_like(a), a)
        lower = torch.log1p(v * torch.expm1(-safe)) / (-safe)
        lower = torch.where(small, v, lower)
        return torch.where(eta >= 0, 1.0 - lower, lower).clamp(0, 1).to(params.dtype)


class TruncatedGaussian(DecoderLikelihood):
    """Gaussian with mean ``μ`` and log-std ``log σ`` per pixel, truncated to [0, 1]."""

    name = "gaussian"
    n_params = 2

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = params.chunk(2, dim=1)
        return mu, log_sigma.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)

    @staticmethod
    def log_mass(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``log(Φ((1-μ)/σ) - Φ(-μ/σ))``: the Gaussian's mass on [0, 1], stable in both tails."""
        lo, hi = -mu / sigma, (1.0 - mu) / sigma
        # both bounds in the right tail: use Φ(b) - Φ(a) = Φ(-a) - Φ(-b) so both logs stay accurate
        flip = lo > 0
        a = torch.where(flip, -hi, lo)
        b = torch.where(flip, -lo, hi)
        log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
        return log_b + log1mexp((log_b - log_a).clamp(min=1e-30))

    def log_density(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = self.split(params)
        sigma = log_sigma.exp()
        z = (u - mu) / sigma
        return -0.5 * z.pow(2) - log_sigma - 0.5 * math.log(2 * math.pi) - self.log_mass(mu, sigma)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        mu, log_sigma = self.split(params)
        sigma = log_sigma.exp()
        log_z = self.log_mass(mu, sigma)
        lo, hi = -mu / sigma, (1.0 - mu) / sigma
        log_pdf = lambda t: -0.5 * t.pow(2) - 0.5 * math.log(2 * math.pi)  # noqa: E731
        shift = sigma * (torch.exp(log_pdf(lo) - log_z) - torch.exp(log_pdf(hi) - log_z))
        return (mu + shift).clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mu, log_sigma = (t.to(torch.float64) for t in self.split(params))
        sigma = log_sigma.exp()
        lo, hi = -mu / sigma, (1.0 - mu) / sigma
        # sample the side whose tail is small in the left tail, where Φ keeps its relative precision
        flip = lo > 0
        a = torch.where(flip, -hi, lo)
        b = torch.where(flip, -lo, hi)
        cdf_a, cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
        v = self._uniform(mu, generator)
        t = torch.special.ndtri((cdf_a + v * (cdf_b - cdf_a)).clamp(1e-300, 1 - 1e-16))
        t = torch.minimum(torch.maximum(t, a), b)
        t = torch.where(flip, -t, t)
        return (mu + sigma * t).clamp(0, 1).to(params.dtype)


class DiscretizedLogistic(DecoderLikelihood):
    """Logistic with mean ``μ`` and log-scale ``log s`` per pixel, discretised into the 256
    pixel cells ``[x/256, (x+1)/256)``; the first and last cells absorb the tails."""

    name = "logistic"
    n_params = 2

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_s = params.chunk(2, dim=1)
        return mu, log_s.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)

    def log_bin_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``log P(x)`` of integer pixels ``x`` in 0..255 (any integer or float dtype), per pixel."""
        mu, log_s = self.split(params)
        x = x.to(mu.dtype)
        inv_s = torch.exp(-log_s)
        lower = (x / 256.0 - mu) * inv_s
        upper = ((x + 1.0) / 256.0 - mu) * inv_s
        # σ(b) - σ(a) = σ(b) σ(-a) (1 - e^(a-b)): no cancellation in either tail
        interior = F.logsigmoid(upper) + F.logsigmoid(-lower) + log1mexp((upper - lower).clamp(min=1e-30))
        first = F.logsigmoid(upper)  # x = 0: P = σ(b)
        last = F.logsigmoid(-lower)  # x = 255: P = 1 - σ(a)
        return torch.where(x < 0.5, first, torch.where(x > 254.5, last, interior))

    def log_density(self, u: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(torch.floor(u * 256.0), 0, 255)
        return self.log_bin_prob(x, params) + LN_256

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        mu, _ = self.split(params)
        return mu.clamp(0, 1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mu, log_s = (t.to(torch.float64) for t in self.split(params))
        v = self._uniform(mu, generator).clamp(1e-12, 1 - 1e-12)
        value = mu + log_s.exp() * (torch.log(v) - torch.log1p(-v))
        # quantising this value gives each pixel cell exactly its probability P(x)
        return value.clamp(0, 1).to(params.dtype)


_CLASSES = {cls.name: cls for cls in (ContinuousBernoulli, TruncatedGaussian, DiscretizedLogistic)}


def make_likelihood(name: str, *, argument: str = "decoder_likelihood") -> DecoderLikelihood:
    """The decoder likelihood called ``name`` ("bernoulli", "gaussian" or "logistic");
    ``argument`` is the parameter name an error message mentions."""
    if name not in _CLASSES:
        raise GenlabError(f"{argument}={name!r} is not valid; use one of {', '.join(map(repr, LIKELIHOODS))}")
    return _CLASSES[name]()
