"""``flow-matching``: conditional flow matching / rectified flow on genlab's U-Net
(Lipman et al. 2023; Liu et al. 2023).

Images are mapped to ``x1`` in [-1, 1] through the data space (``u`` dequantised,
:mod:`genlab.likelihood`; ``data_space="histogram"``: cells sized by the training pixel
histogram, ``"linear"``: ``x1 = 2u - 1``; :mod:`genlab.diffusion.pixel_space`). Training
draws noise ``x0 ~ N(0, I)`` and a time ``t ~ U[0, 1]`` and regresses the U-Net's velocity
``v(x_t, t)`` on the straight path ``x_t = (1 - t) x0 + t x1`` onto its constant velocity
``x1 - x0`` (mean squared error). Sampling integrates ``dx/dt = v(x, t)`` from noise at
``t = 0`` to data at ``t = 1`` with Euler or Heun on a uniform time grid, or with
DPM-Solver++(2M) (``sampler="dpm++"``): the straight path is a variance-preserving diffusion
after rescaling (:class:`genlab.diffusion.schedules.RectifiedFlowSchedule`), the velocity
gives the denoiser's clean-data and noise predictions (``x1 = x + (1 - t) v``,
``x0 = x - t v``), and the diffusion family's multistep solver runs on a log-SNR grid —
one network call per step, so ten calls come close to the 100-call image quality, which
Euler and Heun do not.

``condition="label"`` reuses the diffusion U-Net's label embedding with its learned null
label: labels are dropped ``label_dropout`` of the time during training, and sampling uses
classifier-free guidance ``v_u + g (v_c - v_u)`` (:func:`genlab.diffusion.samplers.classifier_free_guidance`).
``condition="text"`` is the diffusion family's text conditioning
(:mod:`genlab.models.text_conditioning`): ``fit(X, captions)`` embeds one caption per image
with the offline sentence encoder, the embedding enters the U-Net through FiLM and is
replaced by a learned null vector ``label_dropout`` of the time, and
``sample(n, prompt="a thick seven")`` guides towards the prompt the same way (without a
prompt, prompts are drawn from a saved sample of the training captions).

Likelihood (``likelihood == "estimate"``): the instantaneous change of variables
(Chen et al. 2018) ``log p_1(x1) = log N(x0; 0, I) - ∫_0^1 div v(x_t, t) dt`` along the ODE
solved backwards from the image to noise, with Hutchinson's estimator ``ε^T (∂v/∂x) ε``
(Rademacher ε, fixed along each path; FFJORD) for the divergence. Each value is an
*unbiased estimate* of the log-density of the (discretised-ODE) continuous model — not a
bound, and not exact: :meth:`FlowMatching.log_likelihood_estimate` returns the mean over
``likelihood_probes`` independent probe vectors with its standard error; ``score_samples``
returns the mean. Figures are in genlab's convention: ``log p(u) = log p(x) + sum log |dx/du|``
(``D ln 2`` for the linear space) at the fixed-seed uniform dequantisation noise; conditional
models are scored with their unconditional (null) branch.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..device import make_generator
from ..diffusion.samplers import DPMSolverPP2M, Prediction, check_guidance, classifier_free_guidance
from ..diffusion.schedules import RectifiedFlowSchedule
from ..errors import GenlabError
from ..diffusion.pixel_space import HISTOGRAM_MIX, PixelSpace
from ..likelihood import dequantize, score_generator
from ..nn.unet import UNet
from ..text.encoder import DEFAULT_MODEL as DEFAULT_TEXT_ENCODER
from ._data_space import DATA_SPACE_PARAM, HISTOGRAM_MIX_PARAM, DataSpaceMixin
from .neural import NeuralGenerativeModel, training_schema
from .registry import register
from .schema import Param
from .text_conditioning import TextConditioned
from .validation import check_choice, check_float, check_images, check_int

ODE_SAMPLERS = ("euler", "heun", "dpm++")
CONDITIONS = ("none", "label", "text")
DEFAULT_GUIDANCE = 1.5
MAX_STEPS = 10_000
#: seed of the Hutchinson probes (scores are reproducible)
PROBE_SEED = 0
SAMPLE_BATCH = 250


class FlowMatchingNetwork(nn.Module):
    """U-Net velocity field ``v(x, t)``; ``forward(batch)`` returns the flow-matching MSE."""

    def __init__(
        self,
        unet: UNet,
        *,
        n_classes: int | None = None,
        label_dropout: float = 0.1,
        pixel_space: PixelSpace | None = None,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.n_classes = n_classes
        self.label_dropout = float(label_dropout)
        self.pixel_space = pixel_space or PixelSpace()

    def velocity(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        labels: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """v (B, C, H, W) at per-row times t (B,) in [0, 1] (0 = noise, 1 = data); ``labels``
        (B,) or a conditioning vector ``cond`` (B, cond_dim) (text embeddings); rows flagged by
        ``drop`` (B,) bool use the null label / null vector."""
        kwargs: dict[str, Any] = {}
        if self.n_classes is not None:
            kwargs["labels"] = labels
        if cond is not None:
            kwargs["cond"] = cond
        if drop is not None and kwargs:
            kwargs["drop"] = drop
        # the U-Net's noise-level input runs from 0 (clean) to 1 (pure noise)
        return self.unet(x, 1.0 - t, **kwargs).float()

    def forward(self, batch: dict[str, Any]):
        x1 = self.pixel_space.to_data(dequantize(batch["images"]))
        b = x1.shape[0]
        # low-discrepancy times: one uniform offset, B evenly spaced points
        t = (torch.rand((), device=x1.device) + torch.arange(b, device=x1.device) / b) % 1.0
        x0 = torch.randn_like(x1)
        tt = t[:, None, None, None]
        xt = (1 - tt) * x0 + tt * x1
        labels, cond, drop = batch.get("labels"), batch.get("cond"), None
        if (self.n_classes is not None and labels is not None) or cond is not None:
            drop = torch.rand(b, device=x1.device) < self.label_dropout
        v = self.velocity(xt, t, labels if self.n_classes is not None else None, drop, cond)
        loss = (v - (x1 - x0)).pow(2).mean()
        return loss, {}

    def guided_velocity(self, labels: torch.Tensor | None, guidance: float, cond: torch.Tensor | None = None):
        """v(x, t) with classifier-free guidance for ``labels`` or text embeddings ``cond``
        (B, cond_dim) (neither = unconditional); both branches run in one batched call."""
        if self.n_classes is None:
            labels = None
        if (labels is None and cond is None) or guidance == 1.0:
            return lambda x, t: self.velocity(x, t, labels, None, cond)
        if guidance == 0.0:
            return lambda x, t: self.velocity(x, t)

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
            both = self.velocity(
                torch.cat([x, x]),
                torch.cat([t, t]),
                None if labels is None else torch.cat([labels, labels]),
                drop,
                None if cond is None else torch.cat([cond, cond]),
            )
            return classifier_free_guidance(both[b:], both[:b], guidance)

        return v


def velocity_denoiser(velocity):
    """A velocity field ``v(x, t)`` (flow-matching time: 0 noise, 1 data) as a diffusion
    denoiser ``denoise(z, logsnr) -> Prediction`` on the variance-preserving view of the
    straight path (:class:`~genlab.diffusion.schedules.RectifiedFlowSchedule`): ``t =
    sigmoid(logsnr / 2)``, ``x = z sqrt(t^2 + (1 - t)^2)``, clean data ``x + (1 - t) v`` and
    noise ``x - t v`` (exact on the path ``x = t x1 + (1 - t) x0``)."""

    def denoise(z: torch.Tensor, logsnr: float) -> Prediction:
        t = 1.0 / (1.0 + math.exp(-0.5 * logsnr))
        x = z * math.sqrt(t * t + (1.0 - t) ** 2)
        v = velocity(x, torch.full((z.shape[0],), t, device=z.device, dtype=z.dtype))
        return Prediction(x0=x + (1.0 - t) * v, eps=x - t * v)

    return denoise


def integrate(velocity, x: torch.Tensor, steps: int, method: str, *, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """Solve dx/dt = velocity(x, t) from t0 to t1 with ``steps`` Euler or Heun steps (uniform
    grid), or ``method="dpm++"``: DPM-Solver++(2M) from noise (t0 = 0) to data (t1 = 1) on
    the log-SNR grid of the diffusion samplers (:func:`velocity_denoiser`)."""
    if method == "dpm++":
        if (t0, t1) != (0.0, 1.0):
            raise GenlabError("sampler='dpm++' integrates from noise (t = 0) to data (t = 1) only")
        return DPMSolverPP2M(RectifiedFlowSchedule(), steps).sample(velocity_denoiser(velocity), x)
    ts = torch.linspace(t0, t1, steps + 1).tolist()
    for a, b in zip(ts[:-1], ts[1:]):
        h = b - a
        ta = torch.full((x.shape[0],), a, device=x.device, dtype=x.dtype)
        va = velocity(x, ta)
        if method == "euler":
            x = x + h * va
        else:
            tb = torch.full_like(ta, b)
            vb = velocity(x + h * va, tb)
            x = x + 0.5 * h * (va + vb)
    return x


@register("flow-matching")
class FlowMatching(DataSpaceMixin, TextConditioned, NeuralGenerativeModel):
    """Flow matching / rectified flow on a U-Net: Euler/Heun ODE sampling, guidance, a likelihood estimate.

    Parameters
    ----------
    condition : {"none", "label", "text"}
        "label": class-conditional (``fit(X, y)``, ``sample(n, y=...)``); "text":
        text-conditional (``fit(X, captions)``, ``sample(n, prompt="...")``); both with
        classifier-free guidance.
    text_encoder : str
        condition="text": the sentence-transformers model (a name or a local folder) that
        embeds captions and prompts; never downloaded. Its weights' hash is saved with the
        model and checked when prompts are encoded again.
    width, channel_mults, n_res_blocks, patch_size, attention_size, dropout
        The U-Net (as for ``diffusion``; None = preset: width 32 / 64, one / two blocks,
        patch 2 for quick on images >= 16 px).
    data_space : {"histogram", "linear"}
        Pixel levels -> [-1, 1] (as for ``diffusion``): "histogram" sizes each level's cell by
        its share of the training pixels, so the background owns a wide cell and comes out
        exactly 0; "linear" is ``x = 2u - 1`` (models saved before the option load with it).
    histogram_mix : float
        data_space="histogram": weight of the training histogram in the cell widths (as for ``diffusion``).
    label_dropout : float
        Share of training labels (or captions) replaced by the null label (for guidance).
    sampler : {"heun", "euler", "dpm++"}
        Default ODE solver of ``sample``: Heun or Euler on a uniform time grid, or
        DPM-Solver++(2M) on a log-SNR grid (the few-step choice: ``steps=10``).
    steps : int
        Default solver steps (Heun: 2 network calls per step; Euler and dpm++: 1).
    guidance : float or None
        Default guidance scale for labelled or prompted samples (None = 1.5).
    likelihood_steps : int
        Heun steps of the backward ODE for the likelihood.
    likelihood_probes : int
        Independent Hutchinson probes per image (their mean is the estimate; their spread the standard error).
    (training parameters: see :class:`~genlab.models.neural.NeuralGenerativeModel`)
    """

    likelihood = "estimate"  # type: ignore[assignment]  (an unbiased estimate: see the module docstring)
    sample_grid_size = 100
    capabilities: ClassVar[frozenset[str]] = frozenset({"likelihood"})
    conditionings: ClassVar[tuple[str, ...]] = CONDITIONS
    has_null_branch = True
    parameter_schema: ClassVar[dict[str, Param]] = {
        "condition": Param(
            "choice",
            "none",
            choices=CONDITIONS,
            help="'label' = class-conditional, 'text' = captions; both with classifier-free guidance",
        ),
        "text_encoder": Param(
            "str",
            DEFAULT_TEXT_ENCODER,
            help="condition='text': sentence-transformers model (name or local folder), never downloaded",
        ),
        "width": Param("int", None, low=1, nullable=True, help="U-Net base channels (None = the preset's)"),
        "channel_mults": Param(
            "int_list", None, low=1, nullable=True, help="channel multiplier per U-Net level (None = the preset's)"
        ),
        "n_res_blocks": Param(
            "int", None, low=1, nullable=True, help="residual blocks per level (None = the preset's)"
        ),
        "patch_size": Param("int", None, low=1, nullable=True, help="patchify factor (None = the preset's)"),
        "attention_size": Param("int", 8, low=0, help="self-attention at resolutions up to this size (0 = none)"),
        "dropout": Param("float", 0.0, low=0.0, high=1.0, help="dropout in the residual blocks"),
        "data_space": DATA_SPACE_PARAM,
        "histogram_mix": HISTOGRAM_MIX_PARAM,
        "label_dropout": Param(
            "float",
            0.1,
            low=0.0,
            high=1.0,
            help="share of labels/captions dropped in training (the unconditional branch guidance needs)",
        ),
        "sampler": Param(
            "choice", "heun", choices=ODE_SAMPLERS, help="ODE solver (dpm++: DPM-Solver++(2M), the few-step choice)"
        ),
        "steps": Param("int", 20, low=1, high=MAX_STEPS, help="solver steps"),
        "guidance": Param(
            "float",
            None,
            low=0.0,
            high=50.0,
            nullable=True,
            help="classifier-free guidance (None = 1.5 for label and text models)",
        ),
        "likelihood_steps": Param("int", 20, low=1, high=MAX_STEPS, help="ODE steps of the likelihood estimate"),
        "likelihood_probes": Param("int", 4, low=1, help="Hutchinson probe vectors per image"),
        **training_schema(grad_clip=1.0),
    }
    sample_options: ClassVar[dict[str, Param]] = {
        **NeuralGenerativeModel.sample_options,
        "sampler": Param(
            "choice",
            None,
            choices=ODE_SAMPLERS,
            nullable=True,
            help="ODE solver for this call (None = the model's sampler)",
        ),
        "steps": Param(
            "int", None, low=1, high=MAX_STEPS, nullable=True, help="solver steps (None = the model's steps)"
        ),
        "guidance": Param(
            "float",
            None,
            low=0.0,
            high=50.0,
            nullable=True,
            help="classifier-free guidance: 0 = unconditional, 1 = conditional, > 1 = guided",
        ),
        "prompt": Param(
            "text",
            None,
            nullable=True,
            help="condition='text': one prompt for all images or one per image (None = prompts drawn from the training captions)",
        ),
    }

    def __init__(
        self,
        condition: str = "none",
        *,
        text_encoder: str = DEFAULT_TEXT_ENCODER,
        width: int | None = None,
        channel_mults: Sequence[int] | None = None,
        n_res_blocks: int | None = None,
        patch_size: int | None = None,
        attention_size: int = 8,
        dropout: float = 0.0,
        data_space: str = "histogram",
        histogram_mix: float = HISTOGRAM_MIX,
        label_dropout: float = 0.1,
        sampler: str = "heun",
        steps: int = 20,
        guidance: float | None = None,
        likelihood_steps: int = 20,
        likelihood_probes: int = 4,
        grad_clip: float | None = 1.0,
        **training_params: Any,
    ) -> None:
        self.condition = condition
        self.text_encoder = text_encoder
        self.width = width
        self.channel_mults = channel_mults
        self.n_res_blocks = n_res_blocks
        self.patch_size = patch_size
        self.attention_size = attention_size
        self.dropout = dropout
        self.data_space = data_space
        self.histogram_mix = histogram_mix
        self.label_dropout = label_dropout
        self.sampler = sampler
        self.steps = steps
        self.guidance = guidance
        self.likelihood_steps = likelihood_steps
        self.likelihood_probes = likelihood_probes
        self._set_training_params(training_params, grad_clip=grad_clip)

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        return self.condition == "label"

    def _preset_values(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        """As ``diffusion``'s: "quick" width 32, one block, patch 2 from 16 px, lr 2e-3, EMA
        0.999, 3,000-4,000 steps; "full" width 64, two blocks, lr 2e-4, EMA 0.9999, 100,000 steps."""
        values = super()._preset_values(preset, image_shape, n_images)
        _, h, w = image_shape
        if preset == "quick":
            target = 4_000 if min(h, w) >= 16 else 3_000
            values.update(
                width=32,
                n_res_blocks=1,
                patch_size=2 if min(h, w) >= 16 else 1,
                lr=2e-3,
                warmup_steps=200,
                ema_decay=0.999,
            )
        else:
            target = 100_000
            values.update(
                width=64,
                n_res_blocks=2,
                patch_size=1 if max(h, w) <= 64 else 2,
                lr=2e-4,
                warmup_steps=1_000,
                ema_decay=0.9999,
            )
        values["epochs"] = self._epochs_for_steps(target, n_images)
        return values

    def _check_hyper_parameters(self) -> None:
        check_choice("condition", self.condition, CONDITIONS)
        check_choice("sampler", self.sampler, ODE_SAMPLERS)
        check_int("steps", self.steps, minimum=1)
        check_int("likelihood_steps", self.likelihood_steps, minimum=1)
        check_int("likelihood_probes", self.likelihood_probes, minimum=1)
        check_float("label_dropout", self.label_dropout, minimum=0.0, maximum=1.0)
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0)
        check_int("attention_size", self.attention_size, minimum=0)
        if self.guidance is not None:
            check_guidance(self.guidance)
        for name in ("width", "n_res_blocks", "patch_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)

    def _fit(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        resume: bool = False,
        captions: list[str] | None = None,
    ) -> None:
        self._check_hyper_parameters()
        if self.conditional and labels is None:
            raise GenlabError("flow-matching: condition='label' needs class labels; call fit(X, y)")
        self._fit_pixel_space(images)
        super()._fit(images, labels, resume=resume, extra_data=self._text_training_data(captions))

    def _build_modules(self) -> None:
        n_classes = getattr(self, "n_classes_", None) if self.conditional else None
        mults = self._param("channel_mults")
        unet = UNet(
            self.image_shape_,
            width=int(self._param("width")),
            channel_mults=None if mults is None else tuple(int(m) for m in mults),
            n_res_blocks=int(self._param("n_res_blocks")),
            attention_size=int(self.attention_size),
            dropout=float(self.dropout),
            patch_size=int(self._param("patch_size")),
            n_classes=n_classes,
            cond_dim=int(self.text_dim_) if self.text_conditional else None,
        )
        self.network_ = FlowMatchingNetwork(
            unet, n_classes=n_classes, label_dropout=float(self.label_dropout), pixel_space=self._pixel_space()
        )

    # ------------------------------------------------------------------ sampling
    def _check_option_combination(self, options: dict[str, Any]) -> None:
        super()._check_option_combination(options)
        self._check_text_options(options)

    def _sample(
        self,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        prompt: str | Sequence[str] | None = None,
        unconditional: bool | None = None,
    ) -> torch.Tensor:
        # unconditional=True arrives with labels None (and no prompt): the null branch is used below
        method = sampler or self.sampler
        n_steps = int(steps or self.steps)
        g = float(
            guidance if guidance is not None else (self.guidance if self.guidance is not None else DEFAULT_GUIDANCE)
        )
        cond = self._text_condition(n, prompt, bool(unconditional), generator)
        net: FlowMatchingNetwork = self.network_
        dev = self._network_device()
        noise = torch.randn((n, *self.image_shape_), generator=generator, dtype=torch.float32)
        was = net.training
        net.eval()
        out = []
        try:
            with torch.no_grad():
                for start in range(0, n, SAMPLE_BATCH):
                    rows = slice(start, start + SAMPLE_BATCH)
                    lab = labels[rows].to(dev) if labels is not None else None
                    c = cond[rows].to(dev) if cond is not None else None
                    x = integrate(net.guided_velocity(lab, g, c), noise[rows].to(dev), n_steps, method)
                    out.append(net.pixel_space.to_unit(x).cpu())
        finally:
            net.train(was)
        return torch.cat(out)

    # ------------------------------------------------------------------ likelihood
    def _log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._estimates(images)[0])

    def log_likelihood_estimate(
        self, X: Any, *, probes: int | None = None, steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(estimate, standard error) of log p(u) per image, nats, float64 (N,) each.

        The mean over ``probes`` (default ``likelihood_probes``) Hutchinson probe vectors of the
        instantaneous-change-of-variables integral; the standard error is their standard
        deviation over sqrt(probes) (0 with one probe). The unconditional model for
        class-conditional fits.
        """
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        return self._estimates(images, probes, steps)

    def _estimates(
        self, images: torch.Tensor, probes: int | None = None, steps: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = check_int("probes", int(probes or self.likelihood_probes), minimum=1)
        n_steps = check_int("steps", int(steps or self.likelihood_steps), minimum=1)
        net: FlowMatchingNetwork = self.network_
        dev = self._network_device()
        u_all = dequantize(images, score_generator())
        gen = make_generator(PROBE_SEED)
        vel = net.guided_velocity(None, 1.0)
        was = net.training
        net.eval()
        rows = []
        try:
            for start in range(0, len(images), SAMPLE_BATCH):
                x1 = net.pixel_space.to_data(u_all[start : start + SAMPLE_BATCH]).to(dev)
                per_probe = []
                for _ in range(k):
                    eps = (torch.randint(0, 2, x1.shape, generator=gen) * 2 - 1).to(device=dev, dtype=x1.dtype)
                    per_probe.append(_log_density_hutchinson(vel, x1, eps, n_steps))
                rows.append(torch.stack(per_probe))  # (k, B)
        finally:
            net.train(was)
        # change of variables u -> x: log p(u) = log p(x) + sum log |dx/du| (D ln 2 for x = 2u - 1)
        est = torch.cat(rows, 1).double() + net.pixel_space.log_det(images).to(dev)
        mean = est.mean(0)
        se = est.std(0, unbiased=True) / math.sqrt(k) if k > 1 else torch.zeros_like(mean)
        return mean.cpu().numpy(), se.cpu().numpy()


def _log_density_hutchinson(velocity, x1: torch.Tensor, eps: torch.Tensor, steps: int) -> torch.Tensor:
    """log p(x1) (B,) by Heun integration of (x, -∫div v) from t=1 back to t=0 with the
    Hutchinson divergence ``eps^T (dv/dx) eps`` (one probe per image, fixed along the path)."""

    def field(x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            v = velocity(xg, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))
            (vjp,) = torch.autograd.grad(v, xg, eps)
        return v.detach(), (vjp * eps).flatten(1).sum(1).detach()

    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    x, int_div = x1, torch.zeros(x1.shape[0], device=x1.device, dtype=torch.float64)
    for a, b in zip(ts[:-1], ts[1:]):
        h = b - a  # negative
        va, da = field(x, a)
        xb = x + h * va
        vb, db = field(xb, b)
        x = x + 0.5 * h * (va + vb)
        int_div = int_div + 0.5 * h * (da + db).double()
    # log p1(x1) = log p0(x0) + ∫_1^0 div v dt  (d log p / dt = -div v along the path)
    log_p0 = (-0.5 * (x.double().pow(2) + math.log(2 * math.pi))).flatten(1).sum(1)
    return log_p0 + int_div


__all__ = ["FlowMatching", "FlowMatchingNetwork", "integrate", "velocity_denoiser"]
