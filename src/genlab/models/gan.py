"""Generative adversarial networks (Goodfellow et al. 2014): DCGAN and SNGAN-style
networks, four losses, class conditioning, an EMA generator, truncation and inversion.

Training alternates ``n_critic`` discriminator steps (each on a fresh batch) with one
generator step (:class:`GANTrainer`), with separate Adam optimisers for D and G (TTUR:
their own learning rates; GAN betas such as (0.5, 0.999) or (0.0, 0.999)) and optional
per-network gradient clipping. The losses, penalties (WGAN-GP in float32, lazy R1) and the
differentiable augmentation live in :mod:`genlab.adversarial`; the networks in
:mod:`genlab.nn.gan`.

Sampling uses an exponential moving average of the **generator only** (D is never
averaged or copied): ``sample(n, y=..., truncation=ψ)``. Truncation ψ draws each latent
coordinate from N(0, 1) restricted to [-ψ, ψ] (what resampling the coordinates beyond ψ
until they fall inside gives, BigGAN's truncation trick; drawn exactly by inverse-CDF
sampling, no loop); ψ = 0 puts every latent at the mean 0.

Health during training (metrics.csv / ``history_``): D and G losses, the share of real
images D calls real and of fakes it calls fake, both gradient norms every step; at each
epoch end the Fréchet distance of a fixed batch of samples to the training images in the
evaluator's feature space (:mod:`genlab.metrics.evaluator`) and, when the evaluator is a
classifier, the normalised class entropy of that batch (it falls when G collapses onto a
few classes). With ``selection="metric"`` the kept weights are those of the lowest FD.

Self-conditioning (``clusters=K``, the quick preset's default for unconditional models): the training images are clustered (k-means on principal components,
:mod:`genlab.adversarial.clusters`) and both networks are conditioned on the cluster as on
a class; ``sample`` draws the cluster from its training frequency, so the model is still
unconditional, a mixture over clusters. On mnist10k it took the unconditional quick
preset from FD 133 to the autoencoders' range (see the README).

A GAN has no likelihood: ``score_samples`` raises and points to sample metrics.
``invert(images)`` finds latents whose generations match given images, so ``encode`` /
``decode`` / ``reconstruct`` and latent interpolation (``genlab interpolate``,
``genlab reconstruct``, attribute vectors) work as for the autoencoders.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..adversarial import (
    LOSSES,
    assign_clusters,
    fit_clusters,
    diff_augment,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    parse_policy,
    r1_penalty,
)
from ..device import make_generator
from ..errors import GenlabError
from ..diffusion.pixel_space import PixelSpace
from ..likelihood import dequantize, quantize
from ..nn.gan import ARCHITECTURES, make_gan_networks
from ..training import Trainer
from ..training.callbacks import Callback
from ._data_space import DATA_SPACE_PARAM, HISTOGRAM_MIX_PARAM, DataSpaceMixin
from .neural import NeuralGenerativeModel, training_schema
from .registry import register
from .schema import Param
from ..validation import check_latents, check_choice, check_float, check_images, check_int, check_labels


SAMPLE_OPTIONS: dict[str, Param] = {
    "truncation": Param(
        kind="float",
        default=None,
        low=0.0,
        nullable=True,
        help="truncation ψ >= 0: latents restricted to [-ψ, ψ] per coordinate (0 = the mean latent); None = none",
    ),
}

#: the GAN's default weight of the training histogram in the data space's cell widths
GAN_HISTOGRAM_MIX = 0.1

CONDITIONS = ("none", "label")
SPECTRAL_NORM = ("none", "d", "both")
SELECTIONS = ("metric", "last")
#: latents generated per forward pass when sampling/decoding for the user (bounds memory)
DECODE_BATCH = 512
#: seed of the fixed latents of the health/selection probe
PROBE_SEED = 12345


#: most self-conditioning clusters (each is a class embedding of G and D, and k-means is O(N K))
MAX_CLUSTERS = 1_000


def preset_clusters(n_images: int) -> int:
    """Self-conditioning clusters of the quick preset: the k ≈ √(N/2) rule of thumb, clipped
    to [10, 100] (and to N). Measured (1,000 samples, FD in the evaluator's space): mnist10k
    (8,000 images, 3,000 steps) K = 10 51.4, 25 29.3, 50 15.7 / 21.3 (two runs), 100 19.6,
    no clusters 132.6; digits (1,437 images, 1,500 steps, no augmentation) K = 10 4.82,
    25 3.77, 50 4.95, none 8.69. The rule gives 63 and 27."""
    return int(min(100, max(10, round(math.sqrt(n_images / 2))), n_images))


def to_pixels(x: torch.Tensor, pixel_space: PixelSpace | None = None) -> torch.Tensor:
    """Generator output in [-1, 1] -> [0, 1] through the data space (None: ``(x + 1) / 2``),
    so that ``floor(256 u)`` is the level whose cell holds the output."""
    if pixel_space is None:
        return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0)
    return pixel_space.to_unit(x.float())


def truncated_normal(shape: tuple[int, ...], psi: float | None, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) draws restricted to [-ψ, ψ] (None = unrestricted; 0 = all zeros), float32 CPU.

    Inverse-CDF sampling of the truncated normal: the exact distribution of redrawing
    every coordinate beyond ψ until it falls inside, without a loop.
    """
    if psi is None:
        return torch.randn(shape, generator=generator)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    if psi == 0.0:
        return torch.zeros(shape)
    lo = torch.special.ndtr(torch.tensor(-float(psi), dtype=torch.float64))
    z = torch.special.ndtri(lo + u * (1.0 - 2.0 * lo))
    return z.clamp(-psi, psi).float()


class GANNetwork(nn.Module):
    """Generator + discriminator; ``forward(batch, phase=...)`` returns one side's loss.

    ``phase="discriminator"``: D's loss on the batch's real images vs fresh fakes (plus the
    gradient penalty for WGAN-GP and, when ``r1=True``, the lazy R1 term); ``"generator"``:
    G's loss on fresh fakes; None (validation): D's loss without penalties.
    """

    ddp_find_unused_parameters = True  # the D step leaves G's parameters without gradients and vice versa

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        *,
        architecture: str,
        g_width: int,
        d_width: int,
        n_classes: int,
        loss: str,
        spectral_norm: str,
        augment: tuple[str, ...],
        gp_weight: float,
        r1_gamma: float,
        r1_every: int,
        n_critic: int,
        g_lr: float,
        d_lr: float,
        betas: tuple[float, float],
        grad_clip: dict[str, float | None],
        selection: str,
        pixel_space: PixelSpace | None = None,
    ) -> None:
        super().__init__()
        self.pixel_space = pixel_space or PixelSpace()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim, self.n_classes = int(latent_dim), int(n_classes)
        self.generator, self.discriminator = make_gan_networks(
            architecture,
            image_shape,
            latent_dim,
            g_width=g_width,
            d_width=d_width,
            n_classes=n_classes,
            d_spectral_norm=spectral_norm in ("d", "both"),
            g_spectral_norm=spectral_norm == "both",
        )
        self.loss_kind, self.augment = loss, tuple(augment)
        self.gp_weight, self.r1_gamma, self.r1_every, self.n_critic = (
            float(gp_weight),
            float(r1_gamma),
            int(r1_every),
            int(n_critic),
        )
        self.lrs, self.betas = {"generator": float(g_lr), "discriminator": float(d_lr)}, tuple(betas)
        self.grad_clip_per_optimizer = {
            k: float(v) for k, v in grad_clip.items() if v is not None
        }  # absent = config.grad_clip
        self.selection = selection
        self.probe: "HealthProbe | None" = None  # set by the model before training (not saved)

    # ------------------------------------------------------------------ trainer hooks
    def optimizer_groups(self) -> dict[str, list[dict[str, Any]]]:
        """Discriminator first: the trainer steps it ``n_critic`` times per generator step."""
        return {
            "discriminator": [
                {
                    "params": [p for p in self.discriminator.parameters() if p.requires_grad],
                    "lr": self.lrs["discriminator"],
                    "betas": self.betas,
                }
            ],
            "generator": [
                {
                    "params": [p for p in self.generator.parameters() if p.requires_grad],
                    "lr": self.lrs["generator"],
                    "betas": self.betas,
                }
            ],
        }

    def ema_module(self) -> nn.Module:
        """The EMA averages (and sampling swaps) the generator only."""
        return self.generator

    def selection_metric(self, trainer: Any) -> float:
        """FD of the probe's fixed batch (lower is better); called in ``trainer.evaluation()``
        at each epoch end. Only epochs in which a multiple of ``probe_every`` steps was
        passed (and the end of training) are measured; the others return inf, which the
        trainer never keeps. The rule depends on the step alone, so resuming is exact."""
        if self.probe is None:
            return 0.0
        if not self.probe.due(trainer):
            return math.inf
        return self.probe.measure(self.generator, int(trainer.state.step))["fd"]

    # ------------------------------------------------------------------ forward
    def labels_of(self, batch: dict[str, Any]) -> torch.Tensor | None:
        if not self.n_classes:
            return None
        if "labels" not in batch:
            raise GenlabError("a class-conditional GAN needs labels in every batch")
        return batch["labels"]

    def real_images(self, batch: dict[str, Any]) -> torch.Tensor:
        """uint8 -> dequantised pixels on the generator's [-1, 1] scale through the data space
        (uniform noise in each level's cell, so D cannot tell real from fake by the grid)."""
        return self.pixel_space.to_data(dequantize(batch["images"]))

    def generate(self, n: int, labels: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, device=device)
        return self.generator(z, labels)

    def critic(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's logits (B,) on augmented images."""
        if self.augment:
            x = diff_augment(x, self.augment)
        return self.discriminator(x, labels)

    def forward(self, batch: dict[str, Any], phase: str | None = None, r1: bool = False):
        labels = self.labels_of(batch)
        real = self.real_images(batch)
        if phase == "generator":
            fake_logits = self.critic(self.generate(len(real), labels, real.device), labels)
            loss = generator_loss(self.loss_kind, fake_logits)
            return loss, {"g_loss": loss.detach()}
        with torch.no_grad():
            fake = self.generate(len(real), labels, real.device)
        real_logits, fake_logits = self.critic(real, labels), self.critic(fake, labels)
        loss = discriminator_loss(self.loss_kind, real_logits, fake_logits)
        threshold = 0.5 if self.loss_kind == "lsgan" else 0.0
        logs = {
            "d_loss": loss.detach(),
            "d_real_acc": (real_logits.detach().float() > threshold).float().mean(),
            "d_fake_acc": (fake_logits.detach().float() <= threshold).float().mean(),
        }
        if phase != "discriminator":
            return loss, logs
        if self.loss_kind == "wgan-gp":
            gp = gradient_penalty(lambda x: self.critic(x, labels), real, fake)
            loss = loss + self.gp_weight * gp
            logs["gp"] = gp.detach()
        if self.r1_gamma > 0:
            # lazy regularisation (Karras et al. 2020): every r1_every steps, weighted by r1_every
            if r1:
                pen, _ = r1_penalty(lambda x: self.critic(x, labels), real)
                loss = loss + 0.5 * self.r1_gamma * self.r1_every * pen
                logs["r1"] = pen.detach()
            else:
                logs["r1"] = torch.zeros((), device=real.device)  # keeps the log columns fixed
        return loss, logs


class GANTrainer(Trainer):
    """``n_critic`` discriminator steps (the first on the loop's batch, the others on
    further batches from :meth:`Trainer.draw_batch`), then one generator step; each
    optimiser is clipped by ``network.grad_clip_per_optimizer`` (the trainer reads it)."""

    def train_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        net = self.network
        step = int(self.state.step)
        d_logs: dict[str, Any] = {}
        for i in range(net.n_critic):
            b = batch if i == 0 else self.draw_batch()
            with self.autocast():
                d_loss, d_logs = self.model(
                    b, phase="discriminator", r1=(i == 0 and net.r1_gamma > 0 and step % net.r1_every == 0)
                )
            d_norm = self.optimize(d_loss, "discriminator")
        with self.autocast():
            g_loss, g_logs = self.model(batch, phase="generator")
        g_norm = self.optimize(g_loss, "generator")
        return g_loss.detach(), {**d_logs, **g_logs, "d_grad_norm": d_norm.detach(), "g_grad_norm": g_norm.detach()}


class HealthProbe:
    """FD (and class entropy) of a fixed batch of generations against the training images
    in the evaluator's feature space; results cached per training step."""

    def __init__(
        self,
        evaluator: Any,
        reference: torch.Tensor,
        n_samples: int,
        latent_dim: int,
        n_classes: int,
        class_weights: torch.Tensor | None,
        every: int = 1,
        pixel_space: PixelSpace | None = None,
    ) -> None:
        from ..metrics.frechet import gaussian_statistics

        self.evaluator = evaluator
        self.pixel_space = pixel_space
        self.every = int(every)
        self.ref_stats = gaussian_statistics(evaluator.features(reference))
        g = make_generator(PROBE_SEED)
        self.z = torch.randn(n_samples, latent_dim, generator=g)
        self.labels = None
        if n_classes and class_weights is not None:
            self.labels = torch.multinomial(class_weights.double(), n_samples, replacement=True, generator=g)
        self.n_classes = len(evaluator.class_names) if getattr(evaluator, "class_names", None) else 0
        self._cache: tuple[int, dict[str, float]] | None = None

    def due(self, trainer: Any) -> bool:
        """Whether the epoch that just ended passed a multiple of ``every`` steps, or training ends."""
        step, per_epoch = int(trainer.state.step), int(trainer.steps_per_epoch)
        return step >= int(trainer.total_steps) or step // self.every != max(step - per_epoch, 0) // self.every

    @torch.no_grad()
    def measure(self, generator: nn.Module, step: int) -> dict[str, float]:
        """The probe's metrics for the generator at training step ``step`` (cached per step)."""
        from ..metrics.classes import class_entropy, class_histogram
        from ..metrics.frechet import frechet_distance_from_statistics, gaussian_statistics

        if self._cache is not None and self._cache[0] == step:
            return self._cache[1]
        dev = next(generator.parameters()).device
        was_training = generator.training
        generator.eval()
        try:
            out = []
            for s in range(0, len(self.z), DECODE_BATCH):
                lab = self.labels[s : s + DECODE_BATCH].to(dev) if self.labels is not None else None
                fake = generator(self.z[s : s + DECODE_BATCH].to(dev), lab)
                out.append(quantize(to_pixels(fake, self.pixel_space)).cpu())
        finally:
            generator.train(was_training)
        images = torch.cat(out)
        feats = self.evaluator.features(images)
        if not bool(torch.isfinite(feats).all()):
            result = {"fd": math.inf}
        else:
            mu, sigma = gaussian_statistics(feats)
            result = {"fd": float(frechet_distance_from_statistics(mu, sigma, *self.ref_stats))}
        if self.n_classes >= 2:
            result["class_entropy"] = class_entropy(
                class_histogram(self.evaluator.predict(images).clamp(max=self.n_classes - 1), self.n_classes),
                normalized=True,
            )
        self._cache = (step, result)
        return result


class _HealthCallback(Callback):
    """Adds the probe's FD / class entropy to each epoch's history entry."""

    def __init__(self, network: GANNetwork) -> None:
        self.network = network

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.network.probe is None or not trainer.state.history:
            return
        probe = self.network.probe
        if not probe.due(trainer):
            return
        with trainer.evaluation("gan-health"):
            health = probe.measure(self.network.generator, int(trainer.state.step))
        trainer.state.history[-1].update({f"probe_{k}": v for k, v in health.items()})


@register("gan")
class GAN(DataSpaceMixin, NeuralGenerativeModel):
    """Generative adversarial network (DCGAN or SNGAN-style ResNet), optionally class-conditional.

    Parameters (None = sized by the preset)
    -----------------------------------------
    latent_dim : int or None
        Size of the latent z ~ N(0, I) (quick 64, full 128).
    architecture : {"dcgan", "resnet"} or None
        Network pair (quick "dcgan", full "resnet"), see :mod:`genlab.nn.gan`.
    g_width, d_width : int or None
        Channels at full resolution of G and D (doubling per halving, capped at 8x).
    loss : {"ns", "hinge", "wgan-gp", "lsgan"}
        Non-saturating (default), hinge, Wasserstein with gradient penalty, least squares.
    condition : {"none", "label"}
        "label": conditional BatchNorm in G, projection discriminator; ``fit(X, y)``,
        ``sample(n, y=...)``.
    clusters : int or None
        Self-conditioning of an unconditional GAN on this many k-means clusters of the
        training images (0 = off, at most 1,000; None = the preset's: quick √(N/2) clipped to [10, 100],
        full 0). Codes of ``encode``/``decode`` are then z
        followed by the K cluster weights. Not with ``condition="label"``.
    n_critic : int or None
        Discriminator steps per generator step (1; 5 for "wgan-gp").
    d_lr : float or None
        Discriminator learning rate (``lr`` is the generator's): two time-scale updates.
    beta1, beta2 : float or None
        Adam betas of both optimisers (dcgan 0.5, resnet 0.0; 0.999, 0.9 for "wgan-gp").
    spectral_norm : {"none", "d", "both"}
        Spectral normalisation of D's layers (default) or of G's too.
    gp_weight : float
        λ of the WGAN-GP penalty.
    r1_gamma, r1_every : float, int
        R1 penalty weight γ (0 = off; the term is γ/2·E‖∇D(x_real)‖²) and its lazy interval.
    data_space : {"histogram", "linear"}
        Pixel levels -> the generator's [-1, 1] (as for ``diffusion``): "histogram" sizes
        each level's cell by a mix of the uniform width and its share of the training pixels,
        so the background owns a wider cell and a generator output near it comes out exactly
        0; "linear" is ``x = 2u - 1`` (models saved before the option load with it).
    histogram_mix : float
        data_space="histogram": weight of the training histogram in the cell widths (GAN
        default 0.1, not the diffusion family's 0.5: on mnist10k, quick preset, 0.1 took the
        faint pixels 1-7 from 4.6 % to 1.7 % (real 0.5 %) and precision from 0.863 to 0.896
        at FD 19.4 (linear 20.1), while 0.5 gave FD 28.2 — with a background cell that wide,
        D must be fooled by the dequantisation texture inside it; see the README).
    augment : str or None
        Differentiable augmentation of real and fake before D: comma-separated subset of
        "translation,cutout,color" or "none"; None = "translation,cutout" for fewer than
        5,000 training images, else none.
    g_grad_clip, d_grad_clip : float or None
        Per-network gradient-norm clipping (None = ``grad_clip``).
    selection : {"metric", "last"}
        "metric": keep the EMA generator of the epoch with the lowest FD on
        ``probe_samples`` samples in the evaluator's feature space; "last": the final weights.
    probe_samples : int
        Size of the fixed sample batch of the FD / class-entropy probe.
    probe_every : int
        Measure the probe at the end of each epoch that passes a multiple of this many
        steps, and at the end of training (it costs ``probe_samples`` generations).
    **training parameters
        See :class:`~genlab.models.neural.NeuralGenerativeModel`. GAN defaults differ:
        ``ema_decay=0.999``, ``val_fraction=0.0`` (no validation loss: the GAN keeps all
        images for training and chooses by FD), ``lr_schedule="constant"``.

    Attributes
    ----------
    network_ : GANNetwork (``network_.generator`` holds the EMA weights after training)
    n_classes_, class_counts_ : conditional models
    cluster_mean_, cluster_components_, cluster_centroids_, cluster_counts_ : self-conditioned
        models — the PCA (mean (D,), directions (P, D)), the k-means centres (K, P) and the
        training images per cluster (K,)
    history_, training_summary_ : training records (``probe_fd``, ``probe_class_entropy`` per epoch)
    """

    likelihood = "none"
    #: models saved before self-conditioning existed had none
    loaded_defaults: ClassVar[dict[str, Any]] = {**DataSpaceMixin.loaded_defaults, "clusters": 0}
    trainer_class: ClassVar[type[Trainer]] = GANTrainer
    # no "edit": GAN has no edit() method (attribute edits go through encode/decode: "attributes")
    capabilities: ClassVar[frozenset[str]] = frozenset(
        {"encode", "decode", "reconstruct", "interpolate", "invert", "attributes"}
    )
    inversion_method = "latent optimisation"
    conditionings: ClassVar[tuple[str, ...]] = ("none", "label")
    sample_options: ClassVar[dict[str, Any]] = {**NeuralGenerativeModel.sample_options, **SAMPLE_OPTIONS}
    parameter_schema: ClassVar[dict[str, Any]] = {
        "latent_dim": Param("int", None, low=1, nullable=True, help="size of the latent z (None = the preset's)"),
        "architecture": Param(
            "choice", None, choices=ARCHITECTURES, nullable=True, help="network pair (None = the preset's)"
        ),
        "g_width": Param("int", None, low=1, nullable=True, help="generator width (None = the preset's)"),
        "d_width": Param("int", None, low=1, nullable=True, help="discriminator width (None = the preset's)"),
        "loss": Param("choice", "ns", choices=LOSSES, help="adversarial loss"),
        "condition": Param("choice", "none", choices=conditionings, help="'label' = class-conditional"),
        "n_critic": Param(
            "int", None, low=1, nullable=True, help="discriminator steps per generator step (None = the preset's)"
        ),
        "d_lr": Param(
            "float", None, low=0.0, low_inclusive=False, nullable=True, help="discriminator learning rate (None = lr's)"
        ),
        "beta1": Param(
            "float",
            None,
            low=0.0,
            high=1.0,
            high_inclusive=False,
            nullable=True,
            help="Adam beta1 (None = the preset's)",
        ),
        "beta2": Param(
            "float",
            None,
            low=0.0,
            high=1.0,
            high_inclusive=False,
            nullable=True,
            help="Adam beta2 (None = the preset's)",
        ),
        "spectral_norm": Param(
            "choice", "d", choices=SPECTRAL_NORM, help="spectral normalisation: none, discriminator, both"
        ),
        "gp_weight": Param("float", 10.0, low=0.0, help="gradient-penalty weight (WGAN-GP)"),
        "r1_gamma": Param("float", 0.0, low=0.0, help="R1 penalty weight (0 = off)"),
        "r1_every": Param("int", 16, low=1, help="lazy R1: every this many discriminator steps"),
        "data_space": DATA_SPACE_PARAM,
        "histogram_mix": replace(HISTOGRAM_MIX_PARAM, default=GAN_HISTOGRAM_MIX),
        "augment": Param(
            "text", None, nullable=True, help="DiffAugment policy, e.g. 'translation,cutout' (None = none)"
        ),
        "g_grad_clip": Param(
            "float",
            None,
            low=0.0,
            low_inclusive=False,
            nullable=True,
            help="generator gradient clip (None = grad_clip)",
        ),
        "d_grad_clip": Param(
            "float",
            None,
            low=0.0,
            low_inclusive=False,
            nullable=True,
            help="discriminator gradient clip (None = grad_clip)",
        ),
        "clusters": Param(
            "int",
            None,
            low=0,
            high=MAX_CLUSTERS,
            nullable=True,
            help="self-conditioning on K k-means clusters of the images (0 = off; None = the preset's)",
        ),
        "selection": Param(
            "choice", "metric", choices=SELECTIONS, help="weights kept: best probe FD ('metric') or the last"
        ),
        "probe_samples": Param("int", 1000, low=2, help="images of the FD probe"),
        "probe_every": Param("int", 500, low=1, help="steps between probe measurements"),
        **training_schema(lr_schedule="constant", ema_decay=0.999, val_fraction=0.0),
    }

    def __init__(
        self,
        latent_dim: int | None = None,
        architecture: str | None = None,
        g_width: int | None = None,
        d_width: int | None = None,
        loss: str = "ns",
        condition: str = "none",
        n_critic: int | None = None,
        d_lr: float | None = None,
        beta1: float | None = None,
        beta2: float | None = None,
        spectral_norm: str = "d",
        gp_weight: float = 10.0,
        r1_gamma: float = 0.0,
        r1_every: int = 16,
        data_space: str = "histogram",
        histogram_mix: float = GAN_HISTOGRAM_MIX,
        augment: str | None = None,
        g_grad_clip: float | None = None,
        d_grad_clip: float | None = None,
        selection: str = "metric",
        probe_samples: int = 1000,
        probe_every: int = 500,
        clusters: int | None = None,
        *,
        lr_schedule: str = "constant",
        ema_decay: float | None = 0.999,
        val_fraction: float = 0.0,
        **training_params: Any,
    ) -> None:
        self.latent_dim = latent_dim
        self.architecture = architecture
        self.g_width = g_width
        self.d_width = d_width
        self.loss = loss
        self.condition = condition
        self.n_critic = n_critic
        self.d_lr = d_lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.spectral_norm = spectral_norm
        self.gp_weight = gp_weight
        self.r1_gamma = r1_gamma
        self.r1_every = r1_every
        self.data_space = data_space
        self.histogram_mix = histogram_mix
        self.augment = augment
        self.g_grad_clip = g_grad_clip
        self.d_grad_clip = d_grad_clip
        self.selection = selection
        self.probe_samples = probe_samples
        self.probe_every = probe_every
        self.clusters = clusters
        self._set_training_params(
            training_params, lr_schedule=lr_schedule, ema_decay=ema_decay, val_fraction=val_fraction
        )

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        """True when ``condition="label"``."""
        return self.condition == "label"

    # ------------------------------------------------------------------ presets
    def _preset_values(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        """ "quick" (CPU): DCGAN, width 32 (G) and 32 (D), z 64, lr 2e-4 for both, betas
        (0.5, 0.999), about 5,000 generator steps at 28x28 (~14 minutes on 2 CPU cores; on
        mnist10k 3,000 steps reached precision 0.896, 5,000 0.910), 8,000 up to 16x16.
        "full" (GPU): SNGAN-style ResNet, width 128, z 128, TTUR lrs 1e-4 (G) / 4e-4 (D),
        betas (0.0, 0.999), 100,000 steps. WGAN-GP: 5 critic steps, beta2 0.9.
        Self-conditioning (``clusters``): quick and unconditional, K = √(N/2) clipped to
        [10, 100] (63 for 8,000 images, 27 for 1,437); otherwise off."""
        values = super()._preset_values(preset, image_shape, n_images)
        c, h, w = image_shape
        pixels = h * w
        wgan = self.loss == "wgan-gp"
        if preset == "quick":
            values.update(architecture="dcgan", g_width=32, d_width=32, latent_dim=64, lr=2e-4, d_lr=2e-4, beta1=0.5)
            steps = 8_000 if pixels <= 16 * 16 else int(min(5_000, max(500, 5_000 * 28 * 28 / pixels)))
        else:
            values.update(
                architecture="resnet", g_width=128, d_width=128, latent_dim=128, lr=1e-4, d_lr=4e-4, beta1=0.0
            )
            steps = 100_000
        values["n_critic"] = 5 if wgan else 1
        values["beta2"] = 0.9 if wgan else 0.999
        values["warmup_steps"] = 0
        values["augment"] = "translation,cutout" if n_images < 5_000 else "none"
        values["clusters"] = preset_clusters(n_images) if preset == "quick" and not self.conditional else 0
        values["epochs"] = self._epochs_for_steps(steps, n_images)
        return values

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        super()._check_params()
        check_choice("condition", self.condition, CONDITIONS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("spectral_norm", self.spectral_norm, SPECTRAL_NORM)
        check_choice("selection", self.selection, SELECTIONS)
        if self.architecture is not None:
            check_choice("architecture", self.architecture, ARCHITECTURES)
        for name in ("latent_dim", "g_width", "d_width", "n_critic"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        if self.clusters is not None:
            check_int("clusters", self.clusters, minimum=0)
            if self.clusters > 0 and self.conditional:
                raise GenlabError(
                    f"clusters={self.clusters}: self-conditioning is for unconditional GANs; "
                    "condition='label' conditions on the labels already (use clusters=0)"
                )
        check_int("r1_every", self.r1_every, minimum=1)
        check_int("probe_samples", self.probe_samples, minimum=2)
        check_int("probe_every", self.probe_every, minimum=1)
        check_float("gp_weight", self.gp_weight, minimum=0.0)
        check_float("r1_gamma", self.r1_gamma, minimum=0.0)
        for name in ("d_lr", "g_grad_clip", "d_grad_clip"):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), minimum=0.0, exclusive=True)
        for name in ("beta1", "beta2"):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), minimum=0.0, maximum=1.0)
                if getattr(self, name) >= 1.0:
                    raise GenlabError(f"{name}={getattr(self, name)} must be below 1")
        if self.augment is not None:
            parse_policy(self.augment, 3)

    @staticmethod
    def _check_image_size(shape: tuple[int, ...]) -> None:
        if min(shape[1:]) < 4:
            raise GenlabError(
                f"X: images of shape {tuple(shape)} are too small for the GAN networks; they need at least 4x4 pixels"
            )

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, resume: bool = False) -> "GAN":
        """Train on uint8 images ``X`` (N, C, H, W). Labels ``y`` condition the model when
        ``condition="label"``; for an unconditional GAN they are used only to train the
        evaluator classifier of the health probe (class entropy, FD features)."""
        self._probe_labels = None
        if y is not None and not self.conditional:
            self._probe_labels = check_labels(y, len(check_images(X)))
        try:
            return super().fit(X, y, resume=resume)
        finally:
            del self._probe_labels

    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None, **fit_args: Any) -> None:
        self._check_params()
        if self.conditional and labels is None:
            raise GenlabError("gan: condition='label' needs class labels; call fit(X, y)")
        self._check_image_size(tuple(images.shape[1:]))
        self._fit_pixel_space(images)
        if self.conditional:
            self.class_counts_ = torch.bincount(labels, minlength=int(labels.max()) + 1).to(torch.int64)
        self._fit_images, self._fit_labels = (
            images,
            (labels if labels is not None else getattr(self, "_probe_labels", None)),
        )
        n_clusters = 0 if self.conditional else self._resolve_clusters(images)
        if n_clusters:
            # the clusters are the generator's classes; the user's labels (if any) stay the probe's
            found = fit_clusters(images, n_clusters, seed=int(self.random_state or 0))
            self.cluster_mean_, self.cluster_components_ = found.mean, found.components
            self.cluster_centroids_, self.cluster_counts_ = found.centroids, found.counts
            labels = found.labels
        try:
            super()._fit(images, labels, **fit_args)
        finally:
            del self._fit_images, self._fit_labels
        self.network_.probe = None

    def _resolve_clusters(self, images: torch.Tensor) -> int:
        """K of self-conditioning for these training images (0 = off)."""
        k = int(self._resolve_params(self._resolve_preset(), tuple(images.shape[1:]), len(images))["clusters"])
        if k > len(images):
            raise GenlabError(f"clusters={k} is larger than the number of training images ({len(images)})")
        return k

    @property
    def self_conditioned_(self) -> bool:
        """True when the model was fitted with self-conditioning clusters."""
        return getattr(self, "cluster_counts_", None) is not None

    def _generator_classes(self) -> int:
        """Classes the networks are conditioned on: the labels', the clusters', or 0."""
        if self.conditional:
            return int(getattr(self, "n_classes_", 0) or 0)
        return len(self.cluster_counts_) if self.self_conditioned_ else 0

    def _build_modules(self) -> None:
        augment = self._param("augment")
        beta1, beta2 = self._param("beta1"), self._param("beta2")
        self.network_ = GANNetwork(
            tuple(self.image_shape_),
            int(self._param("latent_dim")),
            architecture=self._param("architecture"),
            g_width=int(self._param("g_width")),
            d_width=int(self._param("d_width")),
            n_classes=self._generator_classes(),
            loss=self.loss,
            spectral_norm=self.spectral_norm,
            augment=parse_policy(augment, int(self.image_shape_[0])),
            gp_weight=self.gp_weight,
            r1_gamma=self.r1_gamma,
            r1_every=self.r1_every,
            n_critic=int(self._param("n_critic")),
            g_lr=float(self._param("lr")),
            d_lr=float(self._param("d_lr")),
            betas=(float(beta1), float(beta2)),
            grad_clip={"generator": self.g_grad_clip, "discriminator": self.d_grad_clip},
            selection=self.selection if self.selection == "last" else "metric",
            pixel_space=self._pixel_space(),
        )

    def _make_probe(self, images: torch.Tensor, labels: torch.Tensor | None) -> HealthProbe:
        from ..data.dataset import Dataset
        from ..metrics.evaluator import get_evaluator

        evaluator = get_evaluator(Dataset(images, labels, name="gan-training"), device=self.device)
        n_ref = min(len(images), max(int(self.probe_samples), 2_000))
        idx = torch.randperm(len(images), generator=make_generator(PROBE_SEED))[:n_ref]
        counts = self.class_counts_ if self.conditional else getattr(self, "cluster_counts_", None)
        weights = None if counts is None else counts.double()
        return HealthProbe(
            evaluator,
            images[idx],
            int(self.probe_samples),
            int(self._param("latent_dim")),
            self.network_.n_classes,
            weights,
            every=int(self.probe_every),
            pixel_space=self.network_.pixel_space,
        )

    def _training_callbacks(self, config):
        # the probe (an evaluator trained on the fit's images) is attached here, after the
        # network is built, so that building stays free of side effects (it also runs on the
        # meta device to size the network before anything is allocated)
        images = getattr(self, "_fit_images", None)
        if images is not None and self.selection == "metric":
            self.network_.probe = self._make_probe(images, self._fit_labels)
        return [*super()._training_callbacks(config), _HealthCallback(self.network_)]

    # ------------------------------------------------------------------ likelihood
    def _check_has_likelihood(self) -> None:
        raise GenlabError(
            "gan has no likelihood (score_samples, score and bits_per_dim do not exist for GANs); "
            "compare it by sample metrics instead: genlab evaluate (FD, precision/recall, coverage) or genlab cv / compare, which rank GANs by FD"
        )

    # ------------------------------------------------------------------ sampling
    @property
    def latent_dim_(self) -> int:
        """Size of the codes of ``encode``/``decode``: the latent size d after preset
        resolution, plus the K cluster weights for a self-conditioned model."""
        self._check_fitted()
        return self._z_dim + (len(self.cluster_counts_) if self.self_conditioned_ else 0)

    @property
    def _z_dim(self) -> int:
        return int(self._param("latent_dim"))

    def _split_codes(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes (N, latent_dim_) -> (z (N, d), cluster weights (N, K) or None). The weights
        are clipped at 0 and normalised to sum to 1 (all zero: uniform), so interpolated or
        shifted codes still name a mixture of clusters."""
        if not self.self_conditioned_:
            return codes, None
        d = self._z_dim
        z, w = codes[:, :d], codes[:, d:].clamp_min(0.0)
        total = w.sum(1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp_min(1e-12), torch.full_like(w, 1.0 / w.shape[1]))
        return z, w

    def _sample(
        self,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator,
        truncation: float | None = None,
        unconditional: bool | None = None,
    ) -> torch.Tensor:
        """``truncation`` ψ >= 0: latents from N(0, I) restricted to [-ψ, ψ] per coordinate
        (fidelity up, diversity down; 0 = the mean latent for every image); None = none."""
        z = truncated_normal((n, self._z_dim), truncation, generator)
        if self.self_conditioned_ and labels is None:  # the cluster from its training frequency
            labels = torch.multinomial(self.cluster_counts_.double(), n, replacement=True, generator=generator)
        return self._decode_tensor(z, labels)

    def _decode_tensor(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Generator images in [0, 1], float32 CPU (N, C, H, W), from latents (N, d)."""
        dev = self._network_device()
        G = self.network_.generator
        G.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(z), DECODE_BATCH):
                lab = labels[s : s + DECODE_BATCH].to(dev) if labels is not None else None
                fake = G(z[s : s + DECODE_BATCH].to(device=dev, dtype=torch.float32), lab)
                out.append(to_pixels(fake, self.network_.pixel_space).cpu())
        return torch.cat(out)

    # ------------------------------------------------------------------ codec (inversion)
    def _user_labels(self, y: Any, n: int) -> torch.Tensor | None:
        if not self.conditional:
            if y is not None:
                raise GenlabError("gan is not class-conditional; call it without y (labels)")
            return None
        if y is None:
            raise GenlabError("gan with condition='label' needs labels y (one per image, or one for all)")
        arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating):
            k = int(self.n_classes_)
            if (
                arr.shape != (n, k)
                or not np.all(np.isfinite(arr))
                or np.any(arr < 0)
                or not np.allclose(arr.sum(1), 1.0, atol=1e-4)
            ):
                raise GenlabError(f"y: soft labels must be ({n}, {k}) non-negative class weights summing to 1 per row")
            return torch.from_numpy(arr.astype(np.float32))
        return check_labels(arr, n, n_classes=int(self.n_classes_))

    def invert(
        self,
        X: Any,
        y: Any = None,
        *,
        steps: int = 300,
        restarts: int = 4,
        lr: float = 0.05,
        feature_weight: float = 1.0,
        evaluator: Any = None,
        seed: int | None = 0,
    ) -> torch.Tensor:
        """Latents (N, d) float32 whose generations match images ``X`` (uint8 (N, C, H, W)).

        Minimises ``‖G(z) - x‖² / D_pix + feature_weight · ‖φ(G(z)) - φ(x)‖² / D_φ
        + 1e-3 ‖z‖² / d`` with Adam (``lr``) for ``steps`` steps from ``restarts`` random
        starts per image (the first at the mean latent 0), keeping the best start of each
        image. φ is the ``evaluator``'s feature map (a :class:`genlab.metrics.Evaluator`,
        e.g. ``genlab.metrics.evaluator.get_evaluator(train)``) or, when None, the
        discriminator's penultimate features. Conditional models need labels ``y``.
        A self-conditioned model puts each image in its nearest cluster and returns
        (N, d + K) codes: z, then that cluster's one-hot weights.
        """
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        steps = check_int("steps", steps, minimum=1)
        restarts = check_int("restarts", restarts, minimum=1)
        lr = check_float("lr", lr, minimum=0.0, exclusive=True)
        feature_weight = check_float("feature_weight", feature_weight, minimum=0.0)
        labels = self._user_labels(y, len(images))
        clusters = None
        if self.self_conditioned_:
            nearest = assign_clusters(images, self.cluster_mean_, self.cluster_components_, self.cluster_centroids_)
            clusters = labels = torch.nn.functional.one_hot(nearest, len(self.cluster_counts_)).float()
        dev = self._network_device()
        net = self.network_
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            phi = self._feature_fn(evaluator)
            n, d = len(images), self._z_dim
            target = dequantize(images, noise=False).to(dev)
            lab = labels.to(dev) if labels is not None else None
            lab_r = lab.repeat((restarts,) + (1,) * (lab.ndim - 1)) if lab is not None else None
            target_r = target.repeat(restarts, 1, 1, 1)
            with torch.no_grad():
                target_feats = phi(target_r, lab_r) if feature_weight > 0 else None
            z0 = torch.randn((restarts, n, d), generator=make_generator(seed))
            z0[0] = 0.0
            z = z0.reshape(restarts * n, d).to(dev).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)

            def per_image_loss() -> torch.Tensor:
                x = to_pixels(net.generator(z, lab_r), net.pixel_space)
                loss = (x - target_r).pow(2).flatten(1).mean(1) + 1e-3 * z.pow(2).mean(1)
                if target_feats is not None:
                    loss = loss + feature_weight * (phi(x, lab_r) - target_feats).pow(2).mean(1)
                return loss

            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                per_image_loss().sum().backward()
                opt.step()
            with torch.no_grad():
                final = per_image_loss().reshape(restarts, n)
                best = final.argmin(0)
                z_best = z.detach().reshape(restarts, n, d)[best, torch.arange(n, device=dev)]
        finally:
            for p in net.parameters():
                p.requires_grad_(True)
        z_best = z_best.float().cpu()
        return z_best if clusters is None else torch.cat([z_best, clusters], dim=1)

    def _feature_fn(self, evaluator: Any):
        """φ(u, labels) -> (B, F) for pixels u in [0, 1]: the evaluator's features or D's."""
        if evaluator is not None:
            network = getattr(evaluator, "network", None)
            if network is None:
                raise GenlabError(
                    "evaluator: inversion needs a classifier evaluator (the PCA fallback has no differentiable features)"
                )
            network = network.to(self._network_device()).eval()
            return lambda u, labels: network.features(u)
        D = self.network_.discriminator

        def d_features(u: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
            x = self.network_.pixel_space.to_data(u)
            if hasattr(D, "body"):
                return D.body(x).flatten(1)
            return torch.relu(D.blocks(x)).sum(dim=(2, 3))

        return d_features

    def encode(self, X: Any, y: Any = None) -> torch.Tensor:
        """Latents of images ``X`` by :meth:`invert` (default settings): float32 (N, d)."""
        return self.invert(X, y)

    def decode(self, Z: Any, y: Any = None) -> torch.Tensor:
        """Generations of latents ``Z`` (N, d): uint8 (N, C, H, W). Conditional models
        need labels ``y`` (ints, or soft (N, K) class weights)."""
        self._check_fitted()
        codes = check_latents(Z, self.latent_dim_, dtype=torch.float32)
        labels = self._user_labels(y, len(codes))
        z, clusters = self._split_codes(codes)
        return quantize(self._decode_tensor(z, clusters if clusters is not None else labels))

    def reconstruct(self, X: Any, y: Any = None) -> torch.Tensor:
        """``decode(encode(X))``: the generator's closest images to ``X`` (uint8)."""
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        return self.decode(self.invert(images, y), y)

    def interpolate(
        self,
        a: Any,
        b: Any,
        n_images: int = 10,
        *,
        y: Any = None,
        prompt: str | None = None,
        steps: int = 300,
        mode: str = "slerp",
    ) -> torch.Tensor:
        """``n_images`` generations (uint8) along the slerp (or line) between the inverted
        latents of images ``a`` and ``b`` (one each); ``steps``: inversion steps.
        Conditional models take one label ``y`` for both ends."""
        from ..manipulate.interpolation import interpolate_codes

        if prompt is not None:
            raise GenlabError("gan is not text-conditional; interpolate without a prompt")
        pair = torch.cat(
            [
                check_images(a, name="a", expected_shape=self.image_shape_),
                check_images(b, name="b", expected_shape=self.image_shape_),
            ]
        )
        if len(pair) != 2:
            raise GenlabError("a, b: give one image each")
        yy = None if y is None else ([int(y), int(y)] if np.ndim(y) == 0 else y)
        za, zb = self.invert(pair, yy, steps=steps)
        codes = interpolate_codes(za, zb, n_images, mode)
        return self.decode(codes, None if yy is None else [int(np.asarray(yy)[0])] * len(codes))

    def _after_load(self) -> None:
        super()._after_load()
        if isinstance(getattr(self, "network_", None), GANNetwork):
            self.network_.probe = None

    def _check_loaded(self) -> None:
        super()._check_loaded()
        counts = getattr(self, "cluster_counts_", None)
        if counts is None:
            return
        if not isinstance(counts, torch.Tensor) or counts.ndim != 1 or counts.is_floating_point() or len(counts) < 1:
            raise GenlabError("fitted.cluster_counts_: expected a 1-D integer tensor of images per cluster")
        k, dims = len(counts), int(np.prod(self.image_shape_))
        components = getattr(self, "cluster_components_", None)
        p = int(components.shape[0]) if isinstance(components, torch.Tensor) and components.ndim == 2 else -1
        self._expect_tensor("cluster_mean_", (dims,))
        self._expect_tensor("cluster_components_", (p, dims))
        self._expect_tensor("cluster_centroids_", (k, p))
