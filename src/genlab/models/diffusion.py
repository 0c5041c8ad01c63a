"""``diffusion``: a denoising diffusion model with a U-Net (Ho et al. 2020 and successors).

Training regresses the noise (or v) of images noised at random levels; sampling runs a
sampler from :mod:`genlab.diffusion.samplers` (DDPM ancestral, DDIM, DPM-Solver++) from
pure noise; ``score_samples`` is the variational bound of :mod:`genlab.diffusion.gaussian`.
With ``condition="label"`` the network also sees the class (dropped to a null label
``label_dropout`` of the time), and sampling uses classifier-free guidance. With
``condition="text"`` it sees a sentence embedding of each image's caption
(:class:`genlab.text.TextEncoder`, all-MiniLM-L6-v2 by default, offline) through FiLM, with
the same dropout and guidance: ``fit(X, captions)``, then ``sample(n, prompt="a thick seven")``.

The "quick" preset is the CPU recipe: a lean U-Net (patchified input above 16 px, two or
three levels, 32 base channels), the cosine schedule with v-prediction and Min-SNR-5
weighting, Adam at 2e-3 with warm-up and cosine decay, EMA weights, and DPM-Solver++(2M)
with 20 steps. See /work/notes/diffusion_runs.md (project notes) for the measurements.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from ..device import make_generator
from ..diffusion.gaussian import LOSS_WEIGHTINGS, PREDICTIONS, GaussianDiffusion
from ..diffusion.pixel_space import HISTOGRAM_MIX
from ..diffusion.samplers import MAX_GUIDANCE, MAX_STEPS, SAMPLERS, check_guidance, make_sampler
from ..diffusion.schedules import SCHEDULES
from ..errors import GenlabError
from ..likelihood import quantize
from ..nn.unet import UNet
from ..text.encoder import DEFAULT_MODEL as DEFAULT_TEXT_ENCODER
from ..validation import check_choice, check_images, check_int, check_labels
from ._data_space import DATA_SPACE_PARAM, HISTOGRAM_MIX_PARAM, DataSpaceMixin
from .neural import NeuralGenerativeModel, training_schema
from .registry import register
from .schema import Param
from .text_conditioning import CAPTION_POOL_SIZE, TextConditioned  # noqa: F401  (CAPTION_POOL_SIZE kept importable here)
from .text_conditioning import caption_pool as _caption_pool  # noqa: F401  (kept importable here)

#: guidance scale when neither the model nor the call sets one (MNIST quick: FD 17.8 and
#: 98% of samples of the requested class at 1.5, versus FD 20.6 / 91% at 1.0 and 35.1 / 99.9% at 2.0)
DEFAULT_GUIDANCE = 1.5
#: fixed seed of the noise in the likelihood bound (scores are reproducible)
ELBO_SEED = 0


@register("diffusion")
class Diffusion(DataSpaceMixin, TextConditioned, NeuralGenerativeModel):
    """Denoising diffusion with a U-Net: DDPM/DDIM/DPM-Solver++ sampling, classifier-free guidance, an ELBO.

    Parameters
    ----------
    condition : {"none", "label", "text"}
        "label": class-conditional (``fit(X, y)``, ``sample(n, y=...)``) with
        classifier-free guidance. "text": text-conditional: ``fit(X, captions)`` with one
        caption string per image, ``sample(n, prompt="...")`` (one prompt or n of them),
        guided on the text the same way.
    text_encoder : str
        condition="text": the sentence-transformers model (a name or a local folder) that
        embeds captions and prompts; never downloaded (see :mod:`genlab.text.encoder`). Its
        weights' hash is saved with the model and checked when prompts are encoded again.
    width : int or None
        Channels of the U-Net's first level (None = preset: 32 quick, 64 full).
    channel_mults : sequence of int or None
        Channel multiplier per U-Net level (None = preset, sized from the image shape).
    n_res_blocks : int or None
        Residual blocks per level (None = preset: 1 quick, 2 full).
    patch_size : int or None
        Space-to-depth factor of the input (None = preset: 2 for quick on images >= 16 px, else 1).
    attention_size : int
        Self-attention at U-Net levels whose larger side is at most this many pixels.
    dropout : float
        Dropout in the residual blocks.
    data_space : {"histogram", "linear"}
        How dequantised pixels map to the network's [-1, 1] (:mod:`genlab.diffusion.pixel_space`):
        "histogram" gives each pixel level a cell whose width grows with its share of the
        training pixels (the background gets a wide cell, so the network's error around it
        no longer turns into faint grey pixels); "linear" is ``x = 2u - 1`` (models saved
        before this option load with it). Both keep the likelihood exact (the map's
        Jacobian enters the score).
    histogram_mix : float
        data_space="histogram": level v's cell width is ``2 ((1 - mix)/256 + mix p_v)`` with
        ``p_v`` its share of the training pixels (0 = linear; larger = wider background
        cell and narrower cells for levels the data rarely uses).
    schedule : {"cosine", "linear"}
        Noise schedule (training levels and sampler grids).
    prediction : {"v", "eps"}
        What the network predicts.
    loss_weighting : {"min_snr", "simple"}
        Per-level weight of the MSE ("simple" = plain MSE of the target).
    snr_gamma : float
        gamma of Min-SNR weighting.
    label_dropout : float
        Share of training labels (or captions) replaced by the null label (conditioned
        models), which teaches the unconditional model that guidance needs.
    sampler : {"dpm++", "ddim", "ddpm"}
        Default sampler of :meth:`sample`.
    steps : int or None
        Default number of sampling steps (None = the sampler's: 20 dpm++, 50 ddim, 1000 ddpm).
    guidance : float or None
        Default classifier-free guidance scale for labelled or prompted samples (None = 1.5);
        0 = unconditional model, 1 = plain conditional model, larger = closer to the
        class at the cost of diversity.
    eta : float
        Default stochasticity of DDIM (0 = deterministic, 1 = ancestral).
    clip_denoised : bool
        Clamp the predicted clean image to the pixel range at every sampling step.
    elbo_points : int
        Noise levels per image in the Monte Carlo estimate of the likelihood bound.
    (training parameters: see :class:`~genlab.models.neural.NeuralGenerativeModel`)
    """

    likelihood = "bound"
    sample_grid_size = 100
    #: per-call options of ``sample`` (None = the model's default for that call)
    sample_options: ClassVar[dict[str, Param]] = {
        **NeuralGenerativeModel.sample_options,
        "sampler": Param(
            "choice", None, choices=SAMPLERS, nullable=True, help="sampler for this call (None = the model's sampler)"
        ),
        "steps": Param(
            "int",
            None,
            low=1,
            high=MAX_STEPS,
            nullable=True,
            help="network calls (None = the model's steps, else the sampler's default)",
        ),
        "guidance": Param(
            "float",
            None,
            low=0.0,
            high=MAX_GUIDANCE,
            nullable=True,
            help="classifier-free guidance scale: 0 = unconditional, 1 = conditional, > 1 = guided",
        ),
        "eta": Param(
            "float",
            None,
            low=0.0,
            high=1.0,
            nullable=True,
            help="DDIM stochasticity (0 = deterministic, 1 = ancestral); sampler='ddim' only",
        ),
        "prompt": Param(
            "text",
            None,
            nullable=True,
            help="condition='text': one prompt for all images or one per image (None = prompts drawn from the training captions)",
        ),
    }
    #: label/caption dropout during training teaches the unconditional model guidance needs
    has_null_branch = True
    capabilities = frozenset({"likelihood", "interpolate", "invert", "edit", "inpaint"})
    inversion_method = "DDIM inversion"
    conditionings = ("none", "label", "text")
    parameter_schema = {
        "condition": Param(
            "choice",
            "none",
            choices=conditionings,
            help="'label' = class-conditional, 'text' = captions; both with classifier-free guidance",
        ),
        "text_encoder": Param(
            "str",
            DEFAULT_TEXT_ENCODER,
            help="condition='text': sentence-transformers model (name or local folder), never downloaded",
        ),
        "width": Param(
            "int", None, low=1, nullable=True, help="channels of the first U-Net level (None = the preset's)"
        ),
        "channel_mults": Param(
            "int_list", None, low=1, nullable=True, help="channel multiplier per U-Net level (None = the preset's)"
        ),
        "n_res_blocks": Param(
            "int", None, low=1, nullable=True, help="residual blocks per level (None = the preset's)"
        ),
        "patch_size": Param(
            "int", None, low=1, nullable=True, help="space-to-depth factor of the input (None = the preset's)"
        ),
        "attention_size": Param(
            "int", 8, low=0, help="self-attention at levels whose larger side is at most this many pixels"
        ),
        "dropout": Param("float", 0.0, low=0.0, high=1.0, help="dropout in the residual blocks"),
        "data_space": DATA_SPACE_PARAM,
        "histogram_mix": HISTOGRAM_MIX_PARAM,
        "schedule": Param("choice", "cosine", choices=SCHEDULES, help="noise schedule"),
        "prediction": Param("choice", "v", choices=PREDICTIONS, help="what the network predicts"),
        "loss_weighting": Param("choice", "min_snr", choices=LOSS_WEIGHTINGS, help="per-level weight of the MSE"),
        "snr_gamma": Param("float", 5.0, low=0.0, low_inclusive=False, help="gamma of Min-SNR weighting"),
        "label_dropout": Param(
            "float", 0.1, low=0.0, high=1.0, help="share of labels/captions replaced by the null label in training"
        ),
        "sampler": Param("choice", "dpm++", choices=SAMPLERS, help="default sampler"),
        "steps": Param(
            "int", None, low=1, high=MAX_STEPS, nullable=True, help="default sampling steps (None = the sampler's)"
        ),
        "guidance": Param(
            "float",
            None,
            low=0.0,
            high=MAX_GUIDANCE,
            nullable=True,
            help=f"default guidance scale (None = {DEFAULT_GUIDANCE})",
        ),
        "eta": Param("float", 0.0, low=0.0, high=1.0, help="default DDIM stochasticity"),
        "clip_denoised": Param("bool", True, help="clamp the predicted clean image at every step"),
        "elbo_points": Param("int", 32, low=1, help="noise levels per image in the likelihood bound"),
        **training_schema(grad_clip=1.0),
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
        schedule: str = "cosine",
        prediction: str = "v",
        loss_weighting: str = "min_snr",
        snr_gamma: float = 5.0,
        label_dropout: float = 0.1,
        sampler: str = "dpm++",
        steps: int | None = None,
        guidance: float | None = None,
        eta: float = 0.0,
        clip_denoised: bool = True,
        elbo_points: int = 32,
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
        self.schedule = schedule
        self.prediction = prediction
        self.loss_weighting = loss_weighting
        self.snr_gamma = snr_gamma
        self.label_dropout = label_dropout
        self.sampler = sampler
        self.steps = steps
        self.guidance = guidance
        self.eta = eta
        self.clip_denoised = clip_denoised
        self.elbo_points = elbo_points
        self._set_training_params(training_params, grad_clip=grad_clip)

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        """Class-conditional when ``condition == "label"``."""
        return self.condition == "label"

    # ------------------------------------------------------------------ presets
    def _preset_values(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        values = super()._preset_values(preset, image_shape, n_images)
        _, h, w = image_shape
        if preset == "quick":
            patch = 2 if min(h, w) >= 16 else 1
            target_steps = 4_000 if min(h, w) >= 16 else 3_000
            values.update(width=32, n_res_blocks=1, patch_size=patch, lr=2e-3, warmup_steps=200, ema_decay=0.999)
        else:
            patch = 1 if max(h, w) <= 64 else 2
            target_steps = 100_000
            values.update(width=64, n_res_blocks=2, patch_size=patch, lr=2e-4, warmup_steps=1_000, ema_decay=0.9999)
        values["epochs"] = self._epochs_for_steps(target_steps, n_images)
        return values

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        super()._check_params()  # the schema: types, ranges, choices
        self._sampling_options(None, None, None, None)  # the sampling defaults must also work together

    def _sampling_options(
        self, sampler: str | None, steps: int | None, guidance: float | None, eta: float | None
    ) -> dict[str, Any]:
        """Resolve and check sampling options against the model's defaults."""
        declared = type(self).sample_options
        name = check_choice("sampler", self.sampler if sampler is None else sampler, SAMPLERS)
        steps = declared["steps"].validate("steps", self.steps if steps is None else steps)
        if guidance is not None:
            check_guidance(guidance)
        elif self.guidance is not None:
            guidance = check_guidance(self.guidance)
        if eta is not None and name != "ddim":
            raise GenlabError(f"eta={eta} only applies to sampler='ddim' (not {name!r})")
        eta = declared["eta"].validate("eta", self.eta if eta is None else eta)
        return {
            "sampler": name,
            "steps": steps,
            "guidance": DEFAULT_GUIDANCE if guidance is None else float(guidance),
            "eta": eta if name == "ddim" else None,
        }

    # ------------------------------------------------------------------ fit
    def _fit(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        resume: bool = False,
        captions: list[str] | None = None,
    ) -> None:
        if self.conditional and labels is None:
            raise GenlabError("condition='label' needs class labels: fit(X, y)")
        self._fit_pixel_space(images)
        super()._fit(images, labels, resume=resume, extra_data=self._text_training_data(captions))

    def _build_modules(self) -> None:
        n_classes = getattr(self, "n_classes_", None) if self.conditional else None
        unet = UNet(
            self.image_shape_,
            width=int(self._param("width")),
            channel_mults=None
            if self._param("channel_mults") is None
            else tuple(int(m) for m in self._param("channel_mults")),
            n_res_blocks=int(self._param("n_res_blocks")),
            attention_size=int(self.attention_size),
            dropout=float(self.dropout),
            patch_size=int(self._param("patch_size")),
            n_classes=n_classes,
            cond_dim=int(self.text_dim_) if self.text_conditional else None,
        )
        self.network_ = GaussianDiffusion(
            unet,
            schedule=self.schedule,
            prediction=self.prediction,
            loss_weighting=self.loss_weighting,
            snr_gamma=self.snr_gamma,
            label_dropout=self.label_dropout,
            n_classes=n_classes,
            pixel_space=self._pixel_space(),
        )

    # ------------------------------------------------------------------ sampling
    def _check_option_combination(self, options: dict[str, Any]) -> None:
        super()._check_option_combination(options)
        self._check_text_options(options)
        self._sampling_options(
            options.get("sampler"), options.get("steps"), options.get("guidance"), options.get("eta")
        )

    def _sample(
        self,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        eta: float | None = None,
        prompt: str | Sequence[str] | None = None,
        unconditional: bool = False,
    ) -> torch.Tensor:
        opts = self._sampling_options(sampler, steps, guidance, eta)
        cond = self._text_condition(n, prompt, unconditional, generator)
        net: GaussianDiffusion = self.network_
        device = self._network_device()
        smp = make_sampler(opts["sampler"], net.schedule, opts["steps"], eta=opts["eta"])
        noise = torch.randn((n, *self.image_shape_), generator=generator, dtype=torch.float32)
        out = []
        with _eval_mode(net), torch.no_grad():
            for start in range(0, n, self._batch_for_sampling()):
                stop = min(n, start + self._batch_for_sampling())
                chunk_labels = labels[start:stop].to(device) if labels is not None else None
                conditioning = {"cond": cond[start:stop].to(device)} if cond is not None else None
                denoise = net.denoiser_fn(
                    labels=chunk_labels,
                    guidance=opts["guidance"],
                    clip=bool(self.clip_denoised),
                    conditioning=conditioning,
                )
                x = smp.sample(denoise, noise[start:stop].to(device), generator=generator)
                out.append(net.data_to_unit(x).cpu())
        return torch.cat(out)

    def _batch_for_sampling(self) -> int:
        return 250

    # ------------------------------------------------------------------ editing real images
    def edit(
        self,
        X: Any,
        strength: float = 0.6,
        *,
        y: Any = None,
        prompt: str | Sequence[str] | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Image-to-image (SDEdit): noise uint8 images ``X`` (N, C, H, W) to time ``strength``
        (0 = unchanged, 1 = a fresh sample) and denoise them again, optionally towards a label
        ``y`` or a ``prompt``. Returns uint8 (N, C, H, W).

        ``steps`` network calls are spread over [0, strength].
        """
        from ..diffusion.editing import sdedit

        images, opts, labels, cond = self._editing_inputs(X, y, prompt, guidance, sampler, steps)
        generator = make_generator(seed)
        return self._edit_in_chunks(
            images,
            labels,
            cond,
            opts,
            lambda denoise, smp, x, rows: sdedit(denoise, smp, x, strength, generator=generator),
        )

    def inpaint(
        self,
        X: Any,
        mask: Any,
        *,
        y: Any = None,
        prompt: str | Sequence[str] | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Regenerate the region ``mask`` of uint8 images ``X`` (N, C, H, W); the rest is kept
        exactly. ``mask``: booleans or 0/1, True/1 = draw anew, shaped (H, W), (1 or N, 1 or C, H, W).
        Returns uint8 (N, C, H, W)."""
        from ..diffusion.editing import inpaint

        images, opts, labels, cond = self._editing_inputs(X, y, prompt, guidance, sampler, steps)
        regenerate = _check_mask(mask, images.shape)
        generator = make_generator(seed)
        return self._edit_in_chunks(
            images,
            labels,
            cond,
            opts,
            lambda denoise, smp, x, rows: inpaint(
                denoise, smp, x, regenerate[rows] if regenerate.shape[0] > 1 else regenerate, generator=generator
            ),
        )

    def invert(
        self, X: Any, *, y: Any = None, prompt: str | Sequence[str] | None = None, steps: int = 50
    ) -> torch.Tensor:
        """DDIM inversion: the noise (N, C, H, W), float32, that deterministic DDIM with
        ``steps`` steps (and the same ``y`` / ``prompt``, no guidance) maps back to ``X``."""
        from ..diffusion.samplers import ddim_invert

        images, _, labels, cond = self._editing_inputs(X, y, prompt, None, "ddim", steps)
        net: GaussianDiffusion = self.network_
        dev = self._network_device()
        out = []
        for start in range(0, len(images), self._batch_for_sampling()):
            rows = slice(start, start + self._batch_for_sampling())
            x = net.images_to_data(images[rows], noise=False).to(dev)
            out.append(ddim_invert(self._denoiser(labels, cond, rows, 1.0), x, net.schedule, int(steps)).float().cpu())
        return torch.cat(out)

    def interpolate(
        self, a: Any, b: Any, n_images: int = 10, *, y: Any = None, prompt: str | None = None, steps: int = 50
    ) -> torch.Tensor:
        """Images between two real images ``a`` and ``b`` (uint8 (C, H, W) or (1, C, H, W)):
        both are DDIM-inverted to noise, the noises are interpolated on the sphere and decoded
        with DDIM (``steps`` steps each way). ``y`` / ``prompt`` (one for the whole path)
        condition both ways; none = the unconditional model. Returns uint8 (n_images, C, H, W);
        its ends are DDIM's reconstructions of ``a`` and ``b``."""
        from ..diffusion.editing import interpolate_via_inversion

        pair = torch.cat(
            [
                check_images(v if getattr(v, "ndim", 0) == 4 else v[None], expected_shape=self.image_shape_)
                for v in (a, b)
            ]
        )
        if len(pair) != 2:
            raise GenlabError("a, b: give one image each")
        n_images = check_int("n_images", n_images, minimum=2)
        _, _, pair_labels, pair_cond = self._editing_inputs(
            pair, _repeat(y, 2), _repeat(prompt, 2), None, "ddim", steps
        )
        path_labels, path_cond = self._condition_for(n_images, _repeat(y, n_images), _repeat(prompt, n_images))
        net: GaussianDiffusion = self.network_
        dev = self._network_device()
        with torch.no_grad():
            out = interpolate_via_inversion(
                self._denoiser(pair_labels, pair_cond, slice(None), 1.0),
                self._denoiser(path_labels, path_cond, slice(None), 1.0),
                net.schedule,
                net.images_to_data(pair, noise=False).to(dev),
                n_images,
                steps=int(steps),
            )
        return quantize(net.data_to_unit(out)).cpu()

    def _condition_for(self, n: int, y: Any, prompt: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(labels, text embeddings) for n images from ``y`` / ``prompt``, either or both None."""
        cond = self._prompt_embeddings(n, y, prompt)
        if cond is not None or self.text_conditional:
            return None, cond
        if y is not None:
            if not self.conditional:
                raise GenlabError(
                    f"y: this model is not class-conditional (condition={self.condition!r}); edit without labels"
                )
            return check_labels(
                y, n, n_classes=getattr(self, "n_classes_", None), classes=getattr(self, "classes_", None)
            ), None
        return None, None

    def _editing_inputs(
        self, X: Any, y: Any, prompt: Any, guidance: float | None, sampler: str | None, steps: int | None
    ):
        """(images, sampling options, labels, text embeddings), all checked."""
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        if guidance is not None and not (self.conditional or self.text_conditional):
            raise GenlabError("guidance needs a conditional model (condition='label' or 'text')")
        opts = self._sampling_options(sampler, steps, guidance, None)
        labels, cond = self._condition_for(len(images), y, prompt)
        return images, opts, labels, cond

    def _denoiser(self, labels: torch.Tensor | None, cond: torch.Tensor | None, rows: slice, guidance: float):
        dev = self._network_device()
        return self.network_.denoiser_fn(
            labels=None if labels is None else labels[rows].to(dev),
            guidance=guidance,
            clip=bool(self.clip_denoised),
            conditioning=None if cond is None else {"cond": cond[rows].to(dev)},
        )

    def _edit_in_chunks(self, images, labels, cond, opts, edit_fn) -> torch.Tensor:
        net: GaussianDiffusion = self.network_
        dev = self._network_device()
        smp = make_sampler(opts["sampler"], net.schedule, opts["steps"], eta=opts["eta"])
        out = []
        with _eval_mode(net), torch.no_grad():
            for start in range(0, len(images), self._batch_for_sampling()):
                rows = slice(start, start + self._batch_for_sampling())
                x = net.images_to_data(images[rows], noise=False).to(dev)
                out.append(
                    net.data_to_unit(edit_fn(self._denoiser(labels, cond, rows, opts["guidance"]), smp, x, rows)).cpu()
                )
        return quantize(torch.cat(out))

    # ------------------------------------------------------------------ likelihood
    def _log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        """Lower bound on log p(u) of the dequantised images (nats): -negative ELBO + the log
        Jacobian of the pixel space u -> x (``D log 2`` for x = 2u - 1); the unconditional
        model for class-conditional fits."""
        from ..likelihood import score_generator

        net: GaussianDiffusion = self.network_
        device = self._network_device()
        dequant = score_generator()
        noise = torch.Generator().manual_seed(ELBO_SEED)
        out = []
        with _eval_mode(net):
            for start in range(0, len(images), 250):
                chunk = images[start : start + 250]
                x = net.images_to_data(chunk, dequant).to(device)
                nelbo = net.negative_elbo(x, n_points=int(self.elbo_points), generator=noise)
                out.append(-nelbo.cpu() + net.log_det_to_unit(chunk))
        return torch.cat(out)


@contextlib.contextmanager
def _eval_mode(net: torch.nn.Module) -> Iterator[None]:
    """Eval mode for a sampling call. A fitted model's network is already in eval mode, so
    concurrent calls change nothing; during training (sample grids) it is switched and restored."""
    was_training = net.training
    if was_training:
        net.eval()
    try:
        yield
    finally:
        if was_training:
            net.train(True)


def _repeat(value: Any, n: int) -> Any:
    """One label or prompt for a whole batch of n (lists and tensors pass through)."""
    if value is None or isinstance(value, (list, tuple, torch.Tensor)):
        return value
    return [value] * n


def _check_mask(mask: Any, shape: torch.Size) -> torch.Tensor:
    """A boolean (1 or N, 1 or C, H, W) tensor from an inpainting mask (True = regenerate)."""
    n, c, h, w = shape
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isin(arr, (0, 1))):
            raise GenlabError("mask: expected booleans or 0/1 values (1 = region to regenerate)")
        arr = arr.astype(bool)
    if arr.ndim == 2:
        arr = arr[None, None]
    ok = arr.ndim == 4 and arr.shape[0] in (1, n) and arr.shape[1] in (1, c) and arr.shape[2:] == (h, w)
    if not ok:
        raise GenlabError(
            f"mask: shape {arr.shape} does not fit images of shape {tuple(shape)}; use (H, W) or (1 or N, 1 or C, H, W)"
        )
    if not arr.any():
        raise GenlabError("mask: selects no pixel; mark the region to regenerate with True/1")
    return torch.from_numpy(np.ascontiguousarray(arr))
