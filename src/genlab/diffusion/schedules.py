"""Noise schedules of variance-preserving Gaussian diffusion, in continuous time.

A schedule maps time ``t`` in [0, 1] to the signal and noise scales of

    z_t = alpha_t * x + sigma_t * eps,    alpha_t^2 + sigma_t^2 = 1,

through the log signal-to-noise ratio ``lambda_t = log(alpha_t^2 / sigma_t^2)``, which
falls from high (t = 0, clean data) to low (t = 1, pure noise). Everything else follows
from lambda: ``alpha_t^2 = sigmoid(lambda_t)``, ``sigma_t^2 = sigmoid(-lambda_t)``, and
the discrete DDPM view ``alphas_cumprod[i] = alpha_{(i+1)/T}^2`` with
``betas[i] = 1 - alphas_cumprod[i] / alphas_cumprod[i-1]``.

* ``"cosine"`` (Nichol & Dhariwal 2021): ``alpha_bar(t) = f(t) / f(0)`` with
  ``f(t) = cos^2(pi/2 * (t + s) / (1 + s))``, ``s = 0.008``.
* ``"linear"`` (Ho et al. 2020): betas rising linearly from 1e-4 to 0.02 over T = 1000
  steps; in continuous time ``alpha_bar(t) = exp(-(b0 t + (b1 - b0) t^2 / 2))`` with
  ``b0 = 0.1``, ``b1 = 20`` (= T * beta; Song et al. 2021's VP-SDE), which agrees with the
  discrete product to first order in beta.

lambda is clipped to ``[logsnr_min, logsnr_max]`` (default [-15, 15]): the cosine
schedule reaches -inf at t = 1 and both reach +inf at t = 0. At -15 the signal variance
is 3e-7 (the prior term of the likelihood bound is negligible); at +15 the noise is
5e-4 of the signal, a quarter of the dequantisation noise of 8-bit pixels scaled to [-1, 1].
"""

from __future__ import annotations

import math
from typing import Union

import torch

from ..errors import GenlabError

SCHEDULES = ("cosine", "linear")
LOGSNR_MIN, LOGSNR_MAX = -15.0, 15.0

Time = Union[float, torch.Tensor]


class NoiseSchedule:
    """Base class: subclasses define the unclipped ``_logsnr(t)`` and its inverse ``_time(lam)``."""

    name: str = ""

    def __init__(self, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX) -> None:
        if not logsnr_min < logsnr_max:
            raise GenlabError(f"logsnr_min={logsnr_min} must be < logsnr_max={logsnr_max}")
        self.logsnr_min = float(logsnr_min)
        self.logsnr_max = float(logsnr_max)

    # ---------------------------------------------------------------- subclass formulas (float64)
    def _logsnr(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _time(self, logsnr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---------------------------------------------------------------- public
    def logsnr(self, t: Time) -> torch.Tensor:
        """log(alpha_t^2 / sigma_t^2), clipped; same shape and dtype as ``t`` (float32 for Python floats)."""
        t = _as_tensor(t)
        lam = self._logsnr(t.to(torch.float64).clamp(0.0, 1.0))
        return lam.clamp(self.logsnr_min, self.logsnr_max).to(t.dtype)

    def time(self, logsnr: Time) -> torch.Tensor:
        """The inverse of :meth:`logsnr`: the time in [0, 1] where the (unclipped) log-SNR equals ``logsnr``."""
        lam = _as_tensor(logsnr)
        t = self._time(lam.to(torch.float64).clamp(self.logsnr_min, self.logsnr_max))
        return t.clamp(0.0, 1.0).to(lam.dtype)

    def alpha_sigma(self, t: Time) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) with alpha^2 + sigma^2 = 1."""
        return alpha_sigma_from_logsnr(self.logsnr(t))

    def alphas_cumprod(self, n_steps: int = 1000) -> torch.Tensor:
        """The discrete view: alpha_bar at t = 1/T, 2/T, ..., 1 (float64, (T,), decreasing)."""
        if int(n_steps) < 1:
            raise GenlabError(f"n_steps={n_steps} must be >= 1")
        t = torch.arange(1, int(n_steps) + 1, dtype=torch.float64) / int(n_steps)
        return torch.sigmoid(self.logsnr(t))

    def betas(self, n_steps: int = 1000) -> torch.Tensor:
        """Per-step noise variances of the discrete chain, (T,) float64."""
        ac = self.alphas_cumprod(n_steps)
        prev = torch.cat([torch.ones(1, dtype=ac.dtype), ac[:-1]])
        return 1.0 - ac / prev

    def __repr__(self) -> str:
        return f"{type(self).__name__}(logsnr in [{self.logsnr_min:g}, {self.logsnr_max:g}])"


class CosineSchedule(NoiseSchedule):
    """alpha_bar(t) = f(t) / f(0), f(t) = cos^2(pi/2 (t + s) / (1 + s)) (Nichol & Dhariwal 2021)."""

    name = "cosine"

    def __init__(self, s: float = 0.008, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.s = float(s)
        self._phi0 = math.pi / 2 * self.s / (1 + self.s)

    def _logsnr(self, t: torch.Tensor) -> torch.Tensor:
        # alpha_bar = cos^2(phi) / cos^2(phi0); 1 - alpha_bar = (cos^2 phi0 - cos^2 phi) / cos^2 phi0
        # = sin(phi - phi0) sin(phi + phi0) / cos^2 phi0, computed without cancellation
        phi = math.pi / 2 * (t + self.s) / (1 + self.s)
        return 2 * torch.log(torch.cos(phi)) - torch.log(torch.sin(phi - self._phi0) * torch.sin(phi + self._phi0))

    def _time(self, logsnr: torch.Tensor) -> torch.Tensor:
        # alpha_bar = sigmoid(lam) -> cos^2(phi) = alpha_bar cos^2(phi0)
        alpha_bar = torch.sigmoid(logsnr)
        phi = torch.arccos(torch.sqrt(alpha_bar) * math.cos(self._phi0))
        return phi * 2 / math.pi * (1 + self.s) - self.s


class LinearSchedule(NoiseSchedule):
    """Continuous-time limit of Ho et al.'s linear betas: alpha_bar(t) = exp(-(b0 t + (b1 - b0) t^2 / 2))."""

    name = "linear"

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, n_steps: int = 1000, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.b0 = float(beta_start) * int(n_steps)
        self.b1 = float(beta_end) * int(n_steps)

    def _integral(self, t: torch.Tensor) -> torch.Tensor:
        return self.b0 * t + 0.5 * (self.b1 - self.b0) * t**2

    def _logsnr(self, t: torch.Tensor) -> torch.Tensor:
        # alpha_bar = exp(-I) -> logsnr = log(alpha_bar / (1 - alpha_bar)) = -log(expm1(I))
        return -torch.log(torch.expm1(self._integral(t)))

    def _time(self, logsnr: torch.Tensor) -> torch.Tensor:
        integral = torch.log1p(torch.exp(-logsnr))  # I = log(1 + e^-lam)
        a = 0.5 * (self.b1 - self.b0)
        return (-self.b0 + torch.sqrt(self.b0**2 + 4 * a * integral)) / (2 * a)


class RectifiedFlowSchedule(NoiseSchedule):
    """The straight path of flow matching seen as a variance-preserving schedule.

    Flow matching (:mod:`genlab.models.flow_matching`) interpolates ``x_s = s x + (1 - s) eps``
    with ``s = 1 - t`` (its own time runs from noise to data). Dividing by
    ``n_s = sqrt(s^2 + (1 - s)^2)`` gives ``z = x_s / n_s = alpha x + sigma eps`` with
    alpha^2 + sigma^2 = 1, so ``lambda_t = 2 log((1 - t) / t)`` and the diffusion samplers
    (DPM-Solver++ above all) can integrate a velocity field (not used to train diffusion).
    """

    name = "rectified-flow"

    def _logsnr(self, t: torch.Tensor) -> torch.Tensor:
        return 2.0 * (torch.log1p(-t) - torch.log(t))

    def _time(self, logsnr: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-0.5 * logsnr)


def make_schedule(name: str) -> NoiseSchedule:
    """The schedule called ``name`` ("cosine" or "linear")."""
    if name == "cosine":
        return CosineSchedule()
    if name == "linear":
        return LinearSchedule()
    raise GenlabError(f"schedule={name!r} is not valid; use one of {', '.join(map(repr, SCHEDULES))}")


def alpha_sigma_from_logsnr(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha, sigma) = (sqrt(sigmoid(lam)), sqrt(sigmoid(-lam)))."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def _as_tensor(t: Time) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t if t.is_floating_point() else t.to(torch.float32)
    return torch.tensor(float(t), dtype=torch.float32)
