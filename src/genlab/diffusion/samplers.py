"""Samplers: turn a denoiser into images, independently of how it was trained.

A sampler only needs a **denoiser** ``denoise(z, logsnr) -> Prediction(x0, eps)``: given
noisy data ``z`` (B, ...) at log-SNR ``logsnr`` (a float: every row shares the noise
level), the predicted clean data and noise (the model's parametrisation, guidance and
clipping are the denoiser's business; see :mod:`genlab.diffusion.gaussian`). The noise
schedule only places the sampling grid. This is the model/scheduler split of diffusers,
written from the papers:

* ``"ddpm"`` — ancestral sampling (Ho et al. 2020): each step draws from the Gaussian
  posterior q(z_s | z_t, x = x0_hat); 1000 steps by default (T).
* ``"ddim"`` — DDIM (Song et al. 2021) with stochasticity ``eta``: 0 is the deterministic
  probability-flow-like update, 1 equals ancestral sampling on the same grid.
* ``"dpm++"`` — DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep exponential
  integrator of the probability-flow ODE in data prediction; good images in 10-25 steps.

Grids run from ``t_start`` (1 = pure noise; smaller for SDEdit-style editing, starting
from a partly noised image) down to t = 0; the last update returns the denoised
prediction (the limit sigma -> 0), so ``steps`` is also the number of network calls.

``callback(z, logsnr) -> z`` is called after every intermediate step (for inpainting:
paste the known region, noised to ``logsnr``, back into ``z``). :func:`ddim_invert`
runs DDIM backwards (image -> noise) for image editing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from ..errors import GenlabError
from ..validation import check_choice, check_float, check_int
from .schedules import NoiseSchedule, alpha_sigma_from_logsnr

SAMPLERS = ("ddpm", "ddim", "dpm++")
SPACINGS = ("time", "logsnr")
#: where a log-SNR-uniform grid ends before the final jump to the prediction (t = 1e-3, as in DPM-Solver)
LOGSNR_SPACING_END_TIME = 1e-3


@dataclass
class Prediction:
    """A denoiser's output: predicted clean data ``x0`` and noise ``eps``, both shaped like z."""

    x0: torch.Tensor
    eps: torch.Tensor


Denoiser = Callable[[torch.Tensor, float], Prediction]
StepCallback = Callable[[torch.Tensor, float], torch.Tensor]


def classifier_free_guidance(unconditional: torch.Tensor, conditional: torch.Tensor, scale: float) -> torch.Tensor:
    """Ho & Salimans (2022): ``uncond + scale * (cond - uncond)``.

    ``scale = 0`` is the unconditional prediction, 1 the conditional one, > 1 pushes
    samples towards the condition. Linear, so it may be applied to eps, v or x0 alike.
    """
    if scale == 1.0:
        return conditional
    if scale == 0.0:
        return unconditional
    return unconditional + scale * (conditional - unconditional)


#: largest classifier-free guidance scale accepted (beyond ~10 samples saturate; 50 leaves room to explore)
MAX_GUIDANCE = 50.0
#: most sampling steps accepted (DDPM's usual grid is 1,000)
MAX_STEPS = 10_000


def check_guidance(guidance: float) -> float:
    """A guidance scale must be a finite number in [0, MAX_GUIDANCE]."""
    return check_float("guidance", guidance, minimum=0.0, maximum=MAX_GUIDANCE)


class Sampler:
    """Base class: a time grid and a loop; subclasses implement :meth:`_step`."""

    name: ClassVar[str] = ""
    default_steps: ClassVar[int] = 50
    default_spacing: ClassVar[str] = "time"

    def __init__(self, schedule: NoiseSchedule, steps: int | None = None, *, spacing: str | None = None) -> None:
        self.schedule = schedule
        self.steps = check_int("steps", self.default_steps if steps is None else steps, minimum=1)
        self.spacing = check_choice("spacing", spacing or self.default_spacing, SPACINGS)

    def logsnr_grid(self, t_start: float = 1.0) -> list[float]:
        """``steps + 1`` log-SNRs from ``t_start`` down to t = 0 (the last is +inf)."""
        t_start = check_float("t_start", t_start, minimum=0.0, exclusive=True, maximum=1.0)
        n = self.steps
        if self.spacing == "time":
            times = torch.linspace(t_start, 0.0, n + 1, dtype=torch.float64)[:-1]
            lams = self.schedule.logsnr(times)
        else:
            lo = float(self.schedule.logsnr(torch.tensor(t_start, dtype=torch.float64)))
            hi = float(self.schedule.logsnr(torch.tensor(min(LOGSNR_SPACING_END_TIME, t_start), dtype=torch.float64)))
            lams = torch.linspace(lo, hi, n, dtype=torch.float64) if n > 1 else torch.tensor([lo], dtype=torch.float64)
        return [float(v) for v in lams] + [math.inf]

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoiser,
        z: torch.Tensor,
        *,
        t_start: float = 1.0,
        generator: torch.Generator | None = None,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Run the chain from ``z`` (noise at ``t_start``; N(0, I) for t_start = 1) to data."""
        grid = self.logsnr_grid(t_start)
        self._reset()
        for i in range(self.steps):
            lam_t, lam_s = grid[i], grid[i + 1]
            pred = denoise(z, lam_t)
            if math.isinf(lam_s):
                return pred.x0
            z = self._step(z, pred, lam_t, lam_s, generator)
            if callback is not None:
                z = callback(z, lam_s)
        raise AssertionError("unreachable: the grid ends at +inf")  # pragma: no cover

    def _reset(self) -> None:
        """Forget multistep history before a new chain."""

    def _step(
        self, z: torch.Tensor, pred: Prediction, lam_t: float, lam_s: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps}, spacing={self.spacing!r})"


def _scalars(lam: float) -> tuple[float, float]:
    alpha, sigma = alpha_sigma_from_logsnr(torch.tensor(lam, dtype=torch.float64))
    return float(alpha), float(sigma)


def _noise_like(z: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise drawn on the CPU (the same values on every device)."""
    return torch.randn(z.shape, generator=generator, dtype=torch.float32).to(device=z.device, dtype=z.dtype)


class DDPMSampler(Sampler):
    """Ancestral sampling: z_s ~ q(z_s | z_t, x0_hat).

    With c = 1 - exp(lambda_t - lambda_s), the posterior is
    N(alpha_s ((1 - c) z_t / alpha_t + c x0_hat), c sigma_s^2).
    """

    name = "ddpm"
    default_steps = 1000

    def _step(self, z, pred, lam_t, lam_s, generator):
        a_t, _ = _scalars(lam_t)
        a_s, s_s = _scalars(lam_s)
        c = -math.expm1(lam_t - lam_s)
        mean = (a_s * (1.0 - c) / a_t) * z + (a_s * c) * pred.x0
        return mean + math.sqrt(c) * s_s * _noise_like(z, generator)


class DDIMSampler(Sampler):
    """DDIM: z_s = alpha_s x0_hat + sqrt(sigma_s^2 - s_eta^2) eps_hat + s_eta * noise, with
    s_eta = eta * sigma_s * sqrt(1 - exp(lambda_t - lambda_s)) (eta = 1: the ancestral step)."""

    name = "ddim"
    default_steps = 50

    def __init__(
        self, schedule: NoiseSchedule, steps: int | None = None, *, eta: float = 0.0, spacing: str | None = None
    ) -> None:
        super().__init__(schedule, steps, spacing=spacing)
        self.eta = check_float("eta", eta, minimum=0.0, maximum=1.0)

    def _step(self, z, pred, lam_t, lam_s, generator):
        a_s, s_s = _scalars(lam_s)
        c = -math.expm1(lam_t - lam_s)
        s_eta = self.eta * s_s * math.sqrt(c)
        out = a_s * pred.x0 + math.sqrt(max(s_s**2 - s_eta**2, 0.0)) * pred.eps
        if s_eta > 0:
            out = out + s_eta * _noise_like(z, generator)
        return out

    def __repr__(self) -> str:
        return f"DDIMSampler(steps={self.steps}, eta={self.eta}, spacing={self.spacing!r})"


class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M): with h = (lambda_s - lambda_t) / 2 (half log-SNR, log alpha/sigma),

        z_s = (sigma_s / sigma_t) z_t - alpha_s (exp(-h) - 1) D,
        D = (1 + 1/(2r)) x0_hat_t - 1/(2r) x0_hat_prev,  r = h_prev / h,

    first order (D = x0_hat_t) on the first step; the final step returns x0_hat."""

    name = "dpm++"
    default_steps = 20
    default_spacing = "logsnr"

    def _reset(self) -> None:
        self._prev: tuple[torch.Tensor, float] | None = None  # (x0_hat, h) of the previous step

    def _step(self, z, pred, lam_t, lam_s, generator):
        _, s_t = _scalars(lam_t)
        a_s, s_s = _scalars(lam_s)
        h = 0.5 * (lam_s - lam_t)
        d = pred.x0
        if self._prev is not None and self._prev[1] > 0 and h > 0:
            x_prev, h_prev = self._prev
            r = h_prev / h
            d = (1 + 0.5 / r) * pred.x0 - (0.5 / r) * x_prev
        self._prev = (pred.x0, h)
        return (s_s / s_t) * z - a_s * math.expm1(-h) * d


def make_sampler(
    name: str,
    schedule: NoiseSchedule,
    steps: int | None = None,
    *,
    eta: float | None = None,
    spacing: str | None = None,
) -> Sampler:
    """A sampler by name ("ddpm", "ddim", "dpm++"); ``eta`` only applies to DDIM."""
    check_choice("sampler", name, SAMPLERS)
    if eta is not None and name != "ddim":
        raise GenlabError(f"eta={eta} only applies to sampler='ddim' (not {name!r})")
    if name == "ddpm":
        return DDPMSampler(schedule, steps, spacing=spacing)
    if name == "ddim":
        return DDIMSampler(schedule, steps, eta=0.0 if eta is None else eta, spacing=spacing)
    return DPMSolverPP2M(schedule, steps, spacing=spacing)


@torch.no_grad()
def ddim_invert(
    denoise: Denoiser, x0: torch.Tensor, schedule: NoiseSchedule, steps: int = 50, *, t_end: float = 1.0
) -> torch.Tensor:
    """Deterministic DDIM run backwards: clean data (B, ...) -> the latent at ``t_end`` that
    DDIM (eta = 0, same steps, time spacing) maps back to approximately ``x0``.

    Each step re-noises the current prediction: z_s = alpha_s x0_hat(z_t) + sigma_s eps_hat(z_t),
    with the prediction made at the lower noise level t (Song et al. 2021; Mokady et al. 2023).
    """
    steps = check_int("steps", steps, minimum=1)
    t_end = check_float("t_end", t_end, minimum=0.0, exclusive=True, maximum=1.0)
    times = torch.linspace(0.0, t_end, steps + 1, dtype=torch.float64)
    lams = [float(v) for v in schedule.logsnr(times)]
    z = x0
    for i in range(steps):
        pred = denoise(z, lams[i])
        a_s, s_s = _scalars(lams[i + 1])
        z = a_s * pred.x0 + s_s * pred.eps
    return z
