"""Gaussian diffusion: the forward process, the training loss, denoisers for the samplers,
and the variational bound on the log-likelihood.

Notation (variance preserving, continuous time; see :mod:`.schedules`):
``z = alpha x + sigma eps`` with ``alpha^2 = sigmoid(lambda)``, ``sigma^2 = sigmoid(-lambda)``,
lambda the log signal-to-noise ratio. The network sees the noisy data and its noise level
``(logsnr_max - lambda) / (logsnr_max - logsnr_min)`` in [0, 1] (conditioning on the noise
level rather than on time makes the denoiser independent of the schedule: the schedule
only decides which levels training visits and where samplers step).

Parametrisations (``prediction``):

* ``"eps"``: the network predicts the noise (Ho et al. 2020);
* ``"v"``: it predicts ``v = alpha eps - sigma x`` (Salimans & Ho 2022), well scaled at
  every noise level; then ``x0_hat = alpha z - sigma v_hat`` and ``eps_hat = sigma z + alpha v_hat``.

Loss: the mean squared error of the network's target (the lecture's regression cost; on
the noise for ``"eps"``) times a weight per noise level (``loss_weighting``):

* ``"simple"``: weight 1 (Ho et al.'s L_simple);
* ``"min_snr"``: Min-SNR-gamma (Hang et al. 2023): the x-space weight ``min(SNR, gamma)``,
  i.e. ``min(SNR, gamma) / SNR`` on the eps error or ``min(SNR, gamma) / (SNR + 1)`` on the
  v error; it stops the nearly clean, easy levels from dominating the gradient.

Likelihood bound (:meth:`GaussianDiffusion.negative_elbo`; Kingma et al. 2021, VDM): for
data ``x`` in R^D and log-SNR limits ``lambda_min`` (the schedule's, -15) and ``lambda_max``
(``elbo_logsnr_max``, 10),

    -log p(x) <= KL(q(z_min | x) || N(0, I))                                      (prior)
                 + 1/2 * int_{lambda_min}^{lambda_max} E ||eps - eps_hat(z_lambda)||^2 d lambda  (diffusion)
                 - E log N(x; z_max / alpha_max, e^{-lambda_max} I)                (reconstruction)

The integral is the continuous-time diffusion loss written in lambda (SNR'(t) dt =
e^lambda d lambda and e^lambda ||x - x0_hat||^2 = ||eps - eps_hat||^2), so it is estimated
without bias by sampling lambda uniformly; the estimate here uses ``n_points`` stratified
levels per image (one uniform offset in each of ``n_points`` equal bins) with a seeded
generator, so it is reproducible, and the control variate ``alpha^2 (||eps||^2 - D)``
(zero mean) subtracted from each squared error, which removes most of the chi-square
noise of the nearly clean levels (about 3x lower per-image spread on Gaussian data).
The reconstruction term is taken in expectation: ``D/2 (log 2 pi + 1 - lambda_max)``.

Any ``lambda_max`` gives a valid bound. 10 (noise 0.7% of the signal, about the width of
one 8-bit level on the [-1, 1] scale) is used because the sample-quality weighting trains
the nearly clean levels above it very little, and integrating over them loosened the bound
(MNIST: 4.78 bits/dim with lambda_max = 15 versus 4.5 with 10; see the project notes).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError
from ..likelihood import dequantize
from ..validation import check_choice, check_float
from .pixel_space import PixelSpace
from .samplers import Denoiser, Prediction, classifier_free_guidance
from .schedules import LOGSNR_MAX, LOGSNR_MIN, NoiseSchedule, alpha_sigma_from_logsnr, make_schedule

PREDICTIONS = ("v", "eps")
LOSS_WEIGHTINGS = ("min_snr", "simple")


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) or () -> broadcastable against ``like`` (B, ...)."""
    if values.ndim == 0:
        return values
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def q_sample(x: torch.Tensor, logsnr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The forward process: ``alpha x + sigma noise`` at log-SNR ``logsnr`` ((B,) or a scalar)."""
    alpha, sigma = alpha_sigma_from_logsnr(torch.as_tensor(logsnr, dtype=x.dtype, device=x.device))
    return _expand(alpha, x) * x + _expand(sigma, x) * noise


def training_target(x: torch.Tensor, noise: torch.Tensor, logsnr: torch.Tensor, prediction: str) -> torch.Tensor:
    """What the network regresses on: the noise ("eps") or ``alpha eps - sigma x`` ("v")."""
    if prediction == "eps":
        return noise
    alpha, sigma = alpha_sigma_from_logsnr(logsnr)
    return _expand(alpha, x) * noise - _expand(sigma, x) * x


def to_prediction(output: torch.Tensor, z: torch.Tensor, logsnr: torch.Tensor, prediction: str) -> Prediction:
    """Network output -> (x0_hat, eps_hat) for noisy ``z`` at ``logsnr``."""
    alpha, sigma = alpha_sigma_from_logsnr(torch.as_tensor(logsnr, dtype=z.dtype, device=z.device))
    alpha, sigma = _expand(alpha, z), _expand(sigma, z)
    if prediction == "v":
        return Prediction(x0=alpha * z - sigma * output, eps=sigma * z + alpha * output)
    return Prediction(x0=(z - sigma * output) / alpha, eps=output)


def loss_weight(logsnr: torch.Tensor, prediction: str, weighting: str, gamma: float = 5.0) -> torch.Tensor:
    """Weight of each row's MSE on the network's target (see the module docstring)."""
    if weighting == "simple":
        return torch.ones_like(logsnr)
    snr = torch.exp(logsnr)
    clipped = torch.clamp(snr, max=gamma)
    return clipped / (snr + 1) if prediction == "v" else clipped / snr


def clip_prediction(pred: Prediction, z: torch.Tensor, logsnr: float, lo: float = -1.0, hi: float = 1.0) -> Prediction:
    """Clamp x0_hat to the data range and recompute eps_hat consistently (DDPM's ``clip_denoised``)."""
    x0 = pred.x0.clamp(lo, hi)
    alpha, sigma = alpha_sigma_from_logsnr(torch.tensor(logsnr, dtype=torch.float64))
    return Prediction(x0=x0, eps=(z - float(alpha) * x0) / float(sigma))


class GaussianDiffusion(nn.Module):
    """A denoising network plus everything Gaussian diffusion needs around it.

    ``forward(batch) -> (loss, logs)`` is the training contract of
    :class:`genlab.training.Trainer`: ``batch["images"]`` uint8 (B, C, H, W) are
    dequantised, mapped to [-1, 1] and noised at stratified random levels.

    Parameters
    ----------
    denoiser : nn.Module
        Called as ``denoiser(z, noise_level, labels=..., drop=...)`` (e.g. :class:`genlab.nn.UNet`).
    schedule : str
        "cosine" or "linear" (:mod:`.schedules`).
    prediction : {"v", "eps"}
    loss_weighting : {"min_snr", "simple"}
    snr_gamma : float
        gamma of Min-SNR weighting.
    label_dropout : float
        Probability that a training row's label is replaced by the null label (classifier-free guidance).
    n_classes : int or None
        Number of classes of a class-conditional denoiser.
    elbo_logsnr_max : float
        Upper log-SNR limit of the likelihood bound (see the module docstring).
    pixel_space : PixelSpace or None
        The map between dequantised pixels and model space (:mod:`.pixel_space`); None =
        the plain ``x = 2u - 1``.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        *,
        schedule: str = "cosine",
        prediction: str = "v",
        loss_weighting: str = "min_snr",
        snr_gamma: float = 5.0,
        label_dropout: float = 0.1,
        n_classes: int | None = None,
        elbo_logsnr_max: float = 10.0,
        pixel_space: PixelSpace | None = None,
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.schedule: NoiseSchedule = make_schedule(schedule)
        self.prediction = check_choice("prediction", prediction, PREDICTIONS)
        self.loss_weighting = check_choice("loss_weighting", loss_weighting, LOSS_WEIGHTINGS)
        self.snr_gamma = check_float("snr_gamma", snr_gamma, minimum=0.0, exclusive=True)
        self.label_dropout = check_float("label_dropout", label_dropout, minimum=0.0, maximum=1.0)
        self.n_classes = n_classes
        self.elbo_logsnr_max = float(elbo_logsnr_max)
        self.pixel_space = pixel_space or PixelSpace()

    # ------------------------------------------------------------------ data
    def images_to_data(
        self, images: torch.Tensor, generator: torch.Generator | None = None, *, noise: bool = True
    ) -> torch.Tensor:
        """uint8 (B, C, H, W) -> dequantised floats in [-1, 1] through the pixel space
        (``noise=False``: the cells' centres in ``u``, no dequantisation noise)."""
        return self.pixel_space.to_data(dequantize(images, generator, noise=noise))

    def data_to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Model space -> images in [0, 1], decoded with the pixel space's cell edges."""
        return self.pixel_space.to_unit(x)

    def log_det_to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """``sum log |dx/du|`` (nats, (B,) float64) of the map from [0, 1] pixels to model
        space, for uint8 images (B, C, H, W) (``D log 2`` for ``x = 2u - 1``)."""
        return self.pixel_space.log_det(images)

    def noise_level(self, logsnr: torch.Tensor) -> torch.Tensor:
        """The network's noise input: lambda mapped linearly from [15, -15] to [0, 1]
        (fixed constants, whatever the schedule's clipping)."""
        return (LOGSNR_MAX - logsnr) / (LOGSNR_MAX - LOGSNR_MIN)

    # ------------------------------------------------------------------ network
    def network_output(
        self,
        z: torch.Tensor,
        logsnr: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        **conditioning: Any,
    ) -> torch.Tensor:
        """Raw network output for ``z`` at per-row ``logsnr`` (B,)."""
        kwargs = dict(conditioning)
        if self.n_classes is not None:
            kwargs["labels"] = labels
        if drop is not None:
            kwargs["drop"] = drop
        return self.denoiser(z, self.noise_level(logsnr), **kwargs)

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.images_to_data(batch["images"])
        b = x.shape[0]
        # low-discrepancy times (Kingma et al. 2021): one uniform offset, B evenly spaced points
        t = (torch.rand((), device=x.device) + torch.arange(b, device=x.device) / b) % 1.0
        logsnr = self.schedule.logsnr(t)
        noise = torch.randn_like(x)
        z = q_sample(x, logsnr, noise)
        labels, drop = batch.get("labels"), None
        # a text embedding per image (condition="text"): FiLM conditioning vector of the U-Net
        conditioning = {"cond": batch["cond"]} if batch.get("cond") is not None else {}
        if (self.n_classes is not None and labels is not None) or conditioning:
            drop = torch.rand(b, device=x.device) < self.label_dropout
        output = self.network_output(
            z, logsnr, labels=labels if self.n_classes is not None else None, drop=drop, **conditioning
        )
        target = training_target(x, noise, logsnr, self.prediction)
        per_row = (output - target).pow(2).flatten(1).mean(1)
        loss = (loss_weight(logsnr, self.prediction, self.loss_weighting, self.snr_gamma) * per_row).mean()
        with torch.no_grad():
            eps_hat = to_prediction(output.detach(), z, logsnr, self.prediction).eps
            eps_mse = (eps_hat - noise).pow(2).mean()
        return loss, {"eps_mse": eps_mse}

    # ------------------------------------------------------------------ sampling
    def denoiser_fn(
        self,
        *,
        labels: torch.Tensor | None = None,
        guidance: float = 1.0,
        clip: bool = True,
        conditioning: dict[str, Any] | None = None,
    ) -> Denoiser:
        """A :data:`~genlab.diffusion.samplers.Denoiser` for the samplers.

        With ``labels`` (and a class-conditional network) or a ``conditioning`` vector
        (``{"cond": (B, dim)}``, e.g. text embeddings) the prediction is guided:
        ``uncond + guidance * (cond - uncond)`` (0 = unconditional, 1 = conditional); both
        halves run in one batched call. ``clip`` clamps x0_hat to [-1, 1].
        """
        conditioning = conditioning or {}
        has_condition = (labels is not None and self.n_classes is not None) or bool(conditioning)
        guided = has_condition and guidance != 1.0

        def denoise(z: torch.Tensor, logsnr: float) -> Prediction:
            b = z.shape[0]
            lam = torch.full((b,), logsnr, dtype=z.dtype, device=z.device)
            if not has_condition:
                out = self.network_output(z, lam, labels=None)
            elif not guided:
                out = self.network_output(z, lam, labels=labels, **conditioning)
            elif guidance == 0.0:
                out = self.network_output(z, lam, labels=None)
            else:
                drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(z.device)
                both = self.network_output(
                    torch.cat([z, z]),
                    torch.cat([lam, lam]),
                    labels=None if labels is None else torch.cat([labels, labels]),
                    drop=drop,
                    **{k: torch.cat([v, v]) for k, v in conditioning.items()},
                )
                cond, uncond = both[:b], both[b:]
                out = classifier_free_guidance(uncond, cond, guidance)
            pred = to_prediction(out, z, lam, self.prediction)
            return clip_prediction(pred, z, logsnr) if clip and math.isfinite(logsnr) else pred

        return denoise

    # ------------------------------------------------------------------ likelihood
    @torch.no_grad()
    def negative_elbo(
        self,
        x: torch.Tensor,
        *,
        n_points: int,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Upper bound on -log p(x) in nats for data ``x`` (B, ...) in model space (see the
        module docstring); (B,) float64. ``labels=None`` scores with the unconditional model."""
        if int(n_points) < 1:
            raise GenlabError(f"n_points={n_points} must be >= 1")
        s = self.schedule
        lam_min, lam_max = s.logsnr_min, min(s.logsnr_max, self.elbo_logsnr_max)
        b = x.shape[0]
        d = x[0].numel()
        flat = x.flatten(1).to(torch.float64)
        a2_min, s2_min = (
            torch.sigmoid(torch.tensor(lam_min, dtype=torch.float64)),
            torch.sigmoid(torch.tensor(-lam_min, dtype=torch.float64)),
        )
        prior = 0.5 * (
            a2_min * flat.pow(2).sum(1) + d * (s2_min - 1.0 - F.logsigmoid(torch.tensor(-lam_min, dtype=torch.float64)))
        )
        recon = 0.5 * d * (math.log(2 * math.pi) + 1.0 - lam_max)
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        k = int(n_points)
        offsets = torch.rand((k, b), generator=generator, dtype=torch.float64)
        for i in range(k):
            lam = (lam_min + (i + offsets[i]) / k * (lam_max - lam_min)).to(device=x.device, dtype=x.dtype)
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
            z = q_sample(x, lam, noise)
            out = self.network_output(z, lam, labels=labels)
            eps_hat = to_prediction(out, z, lam, self.prediction).eps
            err = (eps_hat - noise).to(torch.float64).pow(2).flatten(1).sum(1)
            # control variate: ||eps||^2 - D has mean 0; weighting it by alpha^2 removes the
            # chi-square noise of the irreducible error at high SNR (where eps_hat ~ 0)
            # and leaves the low-SNR levels (where eps_hat ~ eps) alone
            err = err - torch.sigmoid(lam.to(torch.float64)) * (noise.to(torch.float64).pow(2).flatten(1).sum(1) - d)
            total += err
        diffusion = 0.5 * (lam_max - lam_min) * total / k
        return prior.to(total.device) + diffusion + recon


def batched(fn: Callable[[slice], torch.Tensor], n: int, batch_size: int) -> torch.Tensor:
    """Concatenate ``fn(slice)`` over consecutive slices of ``range(n)``."""
    return torch.cat([fn(slice(i, min(n, i + batch_size))) for i in range(0, n, batch_size)])
