"""What the autoencoder family (VAE, CVAE, WAE) shares: networks, conditioning, presets,
latent samplers, and ``encode`` / ``decode`` / ``reconstruct``.

* :class:`AutoencoderNetwork` — a :class:`~genlab.nn.ConvEncoder` and a mirrored
  :class:`~genlab.nn.ConvDecoder`; with class conditioning, one-hot label maps are
  concatenated to the encoder's input and the one-hot vector to the decoder's code.
* :class:`AutoencoderModel` — the :class:`~genlab.models.neural.NeuralGenerativeModel`
  base of :class:`~genlab.models.vae.VAE` and :class:`~genlab.models.wae.WAE`. After
  training it encodes the training images and fits the latent sampler
  (:mod:`genlab.samplers`) on their codes; ``sample`` decodes the sampler's codes.

Pixels go into the encoder as ``2u - 1`` with ``u`` the dequantised values in [0, 1]
(:func:`genlab.likelihood.dequantize`; cell centres when encoding for the user).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import GenlabError
from ..likelihood import dequantize, quantize
from ..nn import ConvDecoder, ConvEncoder
from ..nn.layers import NORMS
from ..samplers import LATENT_SAMPLERS, LatentSampler, make_latent_sampler, sampler_from_state
from ..validation import check_latents, check_images, check_int, check_labels
from .neural import NeuralGenerativeModel
from .schema import Param

#: largest latent temperature a call may ask for (codes 10 standard deviations out decode to noise)
MAX_TEMPERATURE = 10.0
#: images per forward pass when encoding/decoding for the user (bounds memory)
CODEC_BATCH = 512


class AutoencoderNetwork(nn.Module):
    """Encoder (B, C, H, W) -> (B, encoder_outputs) and decoder (B, latent_dim) ->
    (B, decoder_channels, H, W), optionally conditioned on one-hot labels (B, n_classes).

    Soft labels (rows of class weights summing to 1) are accepted too; they interpolate
    between classes.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        encoder_outputs: int,
        decoder_channels: int,
        *,
        width: int,
        n_blocks: int,
        norm: str,
        n_classes: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        self.image_shape = (c, h, w)
        self.latent_dim = int(latent_dim)
        self.n_classes = int(n_classes)
        common = dict(width=int(width), n_blocks=int(n_blocks), norm=norm, activation="relu", residual=True)
        self.encoder = ConvEncoder((c + self.n_classes, h, w), int(encoder_outputs), **common)
        self.decoder = ConvDecoder(
            self.image_shape, self.latent_dim + self.n_classes, out_channels=int(decoder_channels), **common
        )

    def encode_raw(self, u: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        """u: (B, C, H, W) in [0, 1] -> encoder outputs (B, encoder_outputs)."""
        x = 2.0 * u - 1.0
        if self.n_classes:
            x = torch.cat([x, self._maps(onehot, x)], dim=1)
        return self.encoder(x)

    def decode_raw(self, z: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, latent_dim) -> decoder outputs (B, decoder_channels, H, W)."""
        if self.n_classes:
            z = torch.cat([z, self._onehot(onehot, z)], dim=1)
        return self.decoder(z)

    def _onehot(self, onehot: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if onehot is None:
            raise GenlabError("this autoencoder is class-conditional: pass labels")
        return onehot.to(device=like.device, dtype=like.dtype)

    def _maps(self, onehot: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        v = self._onehot(onehot, x)
        return v[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])

    def batch_onehot(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """One-hot labels of a training batch (None for an unconditional network)."""
        if not self.n_classes:
            return None
        if "labels" not in batch:
            raise GenlabError("a class-conditional autoencoder needs labels in every batch")
        return nn.functional.one_hot(batch["labels"], self.n_classes).float()


class AutoencoderModel(NeuralGenerativeModel):
    """Base of the autoencoder family (see the module docstring).

    Shared hyper-parameters (``None`` = sized by the preset from the data)
    ---------------------------------------------------------------------
    latent_dim : int or None
        Code size d.
    width : int or None
        Channels of the first conv level (doubling at each downsampling).
    n_blocks : int or None
        Residual 3x3 blocks per resolution (0 = strided convolutions only).
    norm : {"group", "batch", "layer", "none"}
        Normalisation in the conv blocks.
    condition : {"none", "label"}
        "label" = class-conditional: ``fit(X, y)`` takes labels and ``sample(n, y=...)``
        generates a requested class (``model.conditional`` is then True).
    latent_sampler : {"gmm", "prior"}
        Where generated codes come from: "prior" = N(0, I); "gmm" = a Gaussian mixture
        fitted after training on the codes of the training images (ex-post density
        estimation, Ghosh et al. 2020), saved with the model.
    latent_components : int or None
        Mixture components of the "gmm" sampler.
    latent_temperature : float or None
        Spread of generated codes: the sampler's noise is multiplied by T (covariances by
        T²). 1 samples the fitted latent density exactly; T < 1 trades diversity (recall)
        for typicality (precision), like the truncation/temperature of Kingma & Dhariwal
        (2018). None = the preset's.
    """

    #: the presets' ``latent_temperature`` (tuned per family for Fréchet distance and precision)
    default_latent_temperature: float = 1.0
    capabilities = frozenset({"likelihood", "encode", "decode", "reconstruct", "interpolate", "attributes"})
    conditionings = ("none", "label")
    #: hyper-parameters every autoencoder shares (families add theirs and the training ones)
    parameter_schema = {
        "latent_dim": Param("int", None, low=1, nullable=True, help="code size d (None = the preset's)"),
        "width": Param(
            "int", None, low=1, nullable=True, help="channels of the first conv level (None = the preset's)"
        ),
        "n_blocks": Param(
            "int", None, low=0, nullable=True, help="residual blocks per resolution (None = the preset's)"
        ),
        "norm": Param("choice", "group", choices=NORMS, help="normalisation in the conv blocks"),
        "condition": Param("choice", "none", choices=conditionings, help="'label' = class-conditional (CVAE)"),
        "latent_sampler": Param(
            "choice",
            "gmm",
            choices=LATENT_SAMPLERS,
            help="where generated codes come from: the prior or a GMM fitted on the training codes",
        ),
        "latent_components": Param(
            "int", None, low=1, nullable=True, help="components of the 'gmm' latent sampler (None = the preset's)"
        ),
        "latent_temperature": Param(
            "float",
            None,
            low=0.0,
            low_inclusive=False,
            high=MAX_TEMPERATURE,
            nullable=True,
            help="spread of generated codes (None = the preset's)",
        ),
    }
    #: per-call options of ``sample`` (and ``sample_codes``)
    sample_options: ClassVar[dict[str, Param]] = {
        **NeuralGenerativeModel.sample_options,
        "sampler": Param(
            "choice",
            None,
            choices=LATENT_SAMPLERS,
            nullable=True,
            help="latent sampler for this call: 'prior' = N(0, I), 'gmm' = the fitted mixture (None = the model's latent_sampler)",
        ),
        "temperature": Param(
            "float",
            None,
            low=0.0,
            low_inclusive=False,
            high=MAX_TEMPERATURE,
            nullable=True,
            help="spread of the codes for this call (None = the model's latent_temperature)",
        ),
    }

    # ------------------------------------------------------------------ conditioning
    @property
    def conditional(self) -> bool:  # type: ignore[override]
        """True when ``condition="label"``: ``fit`` and ``sample`` take class labels."""
        return self.condition == "label"

    # ------------------------------------------------------------------ presets
    def _preset_values(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        """Sizes from the data. "quick" (CPU minutes): width 32; one residual block per level
        for images up to 16x16 (cheap there), none above; d = 8 for <= 256 dimensions, else
        16; 6,000 steps up to 16x16 and 3,000 at 28x28, fewer for larger images (a step costs
        about pixels x width², and a 28x28 step takes ~0.13 s on one core). "full" (GPU):
        width 64, one block per level, d = 16 (<= 1024 dimensions) or 64, 100,000 steps.
        Both: ``latent_components`` = N/64 clipped to [10, 128] (125 for 8,000 images)
        and the family's ``default_latent_temperature`` above 16x16 pixels, 1 up to 16x16.
        """
        values = super()._preset_values(preset, image_shape, n_images)
        c, h, w = image_shape
        pixels, dims = h * w, c * h * w
        if preset == "quick":
            small = pixels <= 16 * 16
            values["width"] = 32
            values["n_blocks"] = 1 if small else 0
            values["latent_dim"] = 8 if dims <= 256 else 16
            steps = 6_000 if small else int(min(3_000, max(500, 3_000 * 28 * 28 / pixels)))
        else:
            values["width"] = 64
            values["n_blocks"] = 1
            values["latent_dim"] = 16 if dims <= 1024 else 64
            steps = 100_000
        values["latent_components"] = int(min(128, max(10, n_images // 64)))
        # T < 1 was tuned on 28x28 data; on 8x8 digits it cost recall and raised copies, and
        # picking T by Fréchet distance to the *training* images chose T = 1 there
        values["latent_temperature"] = float(self.default_latent_temperature) if pixels > 16 * 16 else 1.0
        values["epochs"] = self._epochs_for_steps(steps, n_images)
        return values

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        super()._check_params()  # the schema: types, ranges, choices
        self._check_family_params()

    def _check_shared_params(self, labels: torch.Tensor | None, n_images: int) -> None:
        """What the schema cannot say: labels present, components against the data."""
        if self.conditional and labels is None:
            raise GenlabError(f"{self.name}: condition='label' needs class labels; call fit(X, y)")
        if self.latent_sampler == "gmm" and self.latent_components is not None and self.latent_components > n_images:
            # checked before training: the sampler is fitted on one code per training image
            raise GenlabError(
                f"latent_components={self.latent_components} is larger than the number of codes ({n_images} training images); use fewer components"
            )

    # ------------------------------------------------------------------ fit
    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None, **fit_args: Any) -> None:
        self._check_family_params()
        self._check_shared_params(labels, len(images))
        if self.conditional:
            counts = torch.bincount(labels, minlength=int(labels.max()) + 1).to(torch.float64)
            self.class_prior_ = counts / counts.sum()
        super()._fit(images, labels, **fit_args)
        codes = self._encode_tensor(images, labels)
        if self.conditional:  # p(z | y): one sampler per class (see ClassConditionalSampler)
            sampler = make_latent_sampler(
                "per_class",
                base=self.latent_sampler,
                n_components=int(self._param("latent_components")),
                random_state=int(self.random_state or 0),
            )
        else:
            sampler = make_latent_sampler(self.latent_sampler, **self._sampler_params())
        self.latent_sampler_state_ = sampler.fit(codes, labels).get_state()

    def _sampler_params(self) -> dict[str, Any]:
        if self.latent_sampler == "gmm":
            return {"n_components": int(self._param("latent_components")), "random_state": int(self.random_state or 0)}
        return {}

    def _check_family_params(self) -> None:
        """Family-specific hyper-parameter checks (raise GenlabError naming the argument)."""

    # ------------------------------------------------------------------ network helpers
    def _network_kwargs(self) -> dict[str, Any]:
        return dict(
            width=int(self._param("width")),
            n_blocks=int(self._param("n_blocks")),
            norm=self.norm,
            n_classes=int(getattr(self, "n_classes_", 0) or 0) if self.conditional else 0,
        )

    @property
    def latent_dim_(self) -> int:
        """The code size d after preset resolution."""
        self._check_fitted()
        return int(self._param("latent_dim"))

    def _onehot(self, labels: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
        """(n, K) float one-hot (or soft) labels on ``device``; None for unconditional models."""
        if not self.conditional:
            return None
        if labels is None:
            raise GenlabError(f"{self.name} with condition='label' needs labels y (one per image, or one for all)")
        k = int(self.n_classes_)
        if labels.ndim == 2:
            return labels.to(device=device, dtype=torch.float32)
        return nn.functional.one_hot(labels.to(device), k).float()

    def _user_labels(self, y: Any, n: int) -> torch.Tensor | None:
        """Validate user labels for encode/decode: ints (n,) / one int, or soft labels (n, K)."""
        if not self.conditional:
            if y is not None:
                raise GenlabError(f"{self.name} is not class-conditional; call it without y (labels)")
            return None
        if y is None:
            raise GenlabError(f"{self.name} with condition='label' needs labels y (one per image, or one for all)")
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
        return check_labels(arr, n, n_classes=int(self.n_classes_), classes=getattr(self, "classes_", None))

    # ------------------------------------------------------------------ codec (override in families)
    def _encode_unit(self, u: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        """Codes (B, d) of dequantised images u (B, C, H, W) on the network's device."""
        raise NotImplementedError

    def _decode_unit(
        self, z: torch.Tensor, onehot: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images in [0, 1] (B, C, H, W) decoded from codes z (B, d); with a ``generator``
        a family with a decoder likelihood draws pixels from it instead of its mean."""
        raise NotImplementedError

    def _encode_tensor(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        dev = self._network_device()
        out = []
        with torch.no_grad():
            for start in range(0, len(images), CODEC_BATCH):
                u = dequantize(images[start : start + CODEC_BATCH].to(dev), noise=False)
                lab = labels[start : start + CODEC_BATCH] if labels is not None else None
                out.append(self._encode_unit(u, self._onehot(lab, len(u), dev)).float())
        return torch.cat(out)

    def _decode_tensor(
        self, z: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        dev = self._network_device()
        out = []
        with torch.no_grad():
            for start in range(0, len(z), CODEC_BATCH):
                zs = z[start : start + CODEC_BATCH].to(device=dev, dtype=torch.float32)
                lab = labels[start : start + CODEC_BATCH] if labels is not None else None
                out.append(self._decode_unit(zs, self._onehot(lab, len(zs), dev), generator).float().cpu())
        return torch.cat(out)

    # ------------------------------------------------------------------ public codec API
    def encode(self, X: Any, y: Any = None) -> torch.Tensor:
        """Codes of images ``X`` (uint8 (N, C, H, W)): float32 (N, d) on the CPU.

        VAE: the encoder's posterior means; WAE: the deterministic codes. Conditional
        models need the labels ``y`` (ints (N,) or one int).
        """
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        labels = self._user_labels(y, len(images))
        return self._encode_tensor(images, labels).cpu()

    def decode(self, Z: Any, y: Any = None) -> torch.Tensor:
        """Images decoded from codes ``Z`` (N, d): uint8 (N, C, H, W) on the CPU.

        Conditional models need ``y``: ints (N,), one int, or soft labels (N, K) (class
        weights summing to 1, which blend classes).
        """
        self._check_fitted()
        z = check_latents(Z, self.latent_dim_, dtype=torch.float32, what="codes")
        labels = self._user_labels(y, len(z))
        return quantize(self._decode_tensor(z, labels))

    def reconstruct(self, X: Any, y: Any = None) -> torch.Tensor:
        """``decode(encode(X))``: uint8 (N, C, H, W) reconstructions of ``X``."""
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        labels = self._user_labels(y, len(images))
        return quantize(self._decode_tensor(self._encode_tensor(images, labels), labels))

    # ------------------------------------------------------------------ sampling
    @property
    def latent_sampler_(self) -> LatentSampler:
        """The fitted latent sampler (rebuilt from ``latent_sampler_state_``)."""
        self._check_fitted()
        state = getattr(self, "latent_sampler_state_", None)
        if state is None:
            raise GenlabError(f"{self.name}: the latent sampler is not fitted (training did not finish)")
        return sampler_from_state(state)

    def _temperature(self) -> float:
        value = self._param("latent_temperature")
        return 1.0 if value is None else float(value)

    def sample_codes(
        self,
        n: int,
        *,
        y: Any = None,
        seed: int | None = None,
        sampler: str | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """``n`` codes (n, d) from the latent sampler (float32, CPU); conditional models
        draw from p(z | y) and need the labels ``y``; ``sampler`` and ``temperature`` as in
        :meth:`sample`."""
        from ..device import make_generator

        self._check_fitted()
        n = check_int("n", n, minimum=1)
        labels = self._user_labels(y, n) if self.conditional else None
        if labels is not None and labels.ndim != 1:
            raise GenlabError("y: sample_codes needs integer labels, not soft labels")
        if not self.conditional and y is not None:
            raise GenlabError(f"{self.name} is not class-conditional; call it without y (labels)")
        options = self._check_sample_options(
            {k: v for k, v in {"sampler": sampler, "temperature": temperature}.items() if v is not None}
        )
        return self._draw_codes(n, make_generator(seed), labels, **options).float().cpu()

    def _check_option_combination(self, options: dict[str, Any]) -> None:
        super()._check_option_combination(options)
        sampler = options.get("sampler")
        if sampler is not None and sampler != "prior" and sampler != self.latent_sampler:
            raise GenlabError(
                f"sampler={sampler!r}: this model was fitted with latent_sampler={self.latent_sampler!r}; refit with latent_sampler={sampler!r}"
            )

    def _draw_codes(
        self,
        n: int,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
        *,
        sampler: str | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        t = self._temperature() if temperature is None else float(temperature)
        if sampler == "prior" or getattr(self, "latent_sampler_state_", None) is None:
            # the prior, also during training (sample grids) when the ex-post sampler does not exist yet
            return torch.randn((n, int(self._param("latent_dim"))), generator=generator) * t
        return self.latent_sampler_.sample(n, generator, labels=labels, temperature=t)

    def _sample(
        self,
        n: int,
        labels: torch.Tensor | None,
        generator: torch.Generator,
        *,
        sampler: str | None = None,
        temperature: float | None = None,
        unconditional: bool = False,
    ) -> torch.Tensor:
        """Decode codes of the latent sampler. ``sampler``: "prior" or "gmm" overrides the
        model's ``latent_sampler`` for this call ("gmm" needs a model fitted with it);
        ``temperature`` overrides ``latent_temperature``. Conditional models always get
        labels here (drawn from the training frequencies when the caller gave none)."""
        z = self._draw_codes(n, generator, labels, sampler=sampler, temperature=temperature)
        pixel_generator = generator if getattr(self, "pixel_noise", False) else None
        return self._decode_tensor(z.float(), labels, pixel_generator)


def gaussian_log_density(
    z: torch.Tensor, mean: torch.Tensor | float = 0.0, log_var: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """log N(z; mean, diag(exp(log_var))) summed over the last dim, nats."""
    log_var_t = torch.as_tensor(log_var, dtype=z.dtype, device=z.device)
    return -0.5 * (((z - mean) ** 2) * torch.exp(-log_var_t) + log_var_t + math.log(2 * math.pi)).sum(-1)
