"""Variational autoencoder (Kingma & Welling 2014), class-conditional with ``condition="label"``.

Model: ``z ~ N(0, I)``, ``u | z ~ p_θ(u | z)`` (a decoder likelihood from
:mod:`genlab.nn.likelihoods`, a normalised density on the unit cube), Gaussian encoder
``q_φ(z | u) = N(μ_φ(u), diag σ²_φ(u))``. Training maximises the β-ELBO of freshly
dequantised images ``u`` (:mod:`genlab.likelihood`):

    ELBO_β(u) = E_q[log p_θ(u | z)] - β KL(q_φ(z | u) || N(0, I))

``score_samples`` returns the importance-weighted bound (Burda et al. 2016)

    IWAE_k(u) = log (1/k) Σ_i p_θ(u | z_i) p(z_i) / q_φ(z_i | u),   z_i ~ q_φ(z | u),

a lower bound on ``log p(u)`` that tightens with k (``likelihood = "bound"``);
``elbo(X)`` gives the ELBO from the same draws, so ``IWAE >= ELBO`` image by image.

Conditional (CVAE, Sohn et al. 2015): the encoder sees one-hot label maps and the
decoder the one-hot label. ``score_samples`` then bounds the *marginal* density
``p(u) = Σ_y p(y) p(u | y)`` with the training label frequencies ``p(y)``: each class gets
``k // n_classes`` (at least 1) draws, and ``log Σ_y p(y) Ŵ_y`` (Ŵ_y the unbiased
importance estimate of ``p(u | y)``) is a lower bound by Jensen's inequality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..device import make_generator
from ..errors import GenlabError
from ..likelihood import dequantize, score_generator
from ..nn.likelihoods import LIKELIHOODS, make_likelihood
from ..validation import check_images, check_int
from .autoencoder import AutoencoderModel, AutoencoderNetwork, gaussian_log_density
from .neural import training_schema
from .registry import register
from .schema import Param

#: log-variance bounds of the encoder (σ from ~5e-4 to ~150)
LOG_VAR_MIN, LOG_VAR_MAX = -15.0, 10.0
#: seed of the latent draws used for scoring (the dequantisation noise has its own)
SCORE_LATENT_SEED = 1
#: codes decoded per forward pass while scoring (k draws x images), bounds memory
SCORE_DECODE_BATCH = 1024


class VAENetwork(AutoencoderNetwork):
    """Gaussian encoder + likelihood decoder; ``forward(batch)`` returns the β-ELBO loss."""

    def __init__(self, image_shape, latent_dim, decoder_likelihood: str, beta: float, **kwargs) -> None:
        self.likelihood_kind = decoder_likelihood
        lik = make_likelihood(decoder_likelihood)
        super().__init__(image_shape, latent_dim, 2 * int(latent_dim), lik.n_params * int(image_shape[0]), **kwargs)
        self.lik = lik
        self.beta = float(beta)

    def posterior(self, u: torch.Tensor, onehot: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of q(z | u), each (B, d)."""
        mean, log_var = self.encode_raw(u, onehot).chunk(2, dim=1)
        return mean, log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    def forward(self, batch: dict[str, Any]):
        u = dequantize(batch["images"])
        onehot = self.batch_onehot(batch)
        mean, log_var = (t.float() for t in self.posterior(u, onehot))  # float32 even under bf16 autocast
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        rec = self.lik.log_prob(u, self.decode_raw(z, onehot).float())  # (B,) nats
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)
        loss = (self.beta * kl - rec).mean() / u[0].numel()  # nats per dimension
        return loss, {
            "elbo_nats": (rec - kl).mean().detach(),
            "kl_nats": kl.mean().detach(),
            "rec_nats": rec.mean().detach(),
        }


@register("vae")
class VAE(AutoencoderModel):
    """Variational autoencoder (conv encoder/decoder), optionally class-conditional; IWAE-bound likelihood.

    Parameters
    ----------
    latent_dim, width, n_blocks, norm, condition, latent_sampler, latent_components, latent_temperature
        See :class:`~genlab.models.autoencoder.AutoencoderModel` (``condition="label"``
        makes it a CVAE).
    decoder_likelihood : {"bernoulli", "gaussian", "logistic"}
        p(u | z) per pixel: "bernoulli" = the continuous Bernoulli (a normalised density on
        [0, 1]), "gaussian" = a Gaussian with learned variance truncated to [0, 1],
        "logistic" = the discretised logistic (256-bin probabilities turned into the
        unit-cube density). See :mod:`genlab.nn.likelihoods`.
    beta : float
        Weight of the KL term (1 = the ELBO; β-VAE otherwise). Scores always use β = 1.
    iwae_samples : int
        Importance samples k of ``score_samples`` (the IWAE bound; k = 1 is the ELBO).
    pixel_noise : bool
        ``sample`` returns a draw of p(u | z) when True; when False (default) the decoder's
        mean image, the usual VAE practice (per-pixel noise only adds grain).
    **training parameters
        See :class:`~genlab.models.neural.NeuralGenerativeModel`.

    Attributes
    ----------
    network_ : VAENetwork
    latent_sampler_state_ : dict — the fitted latent sampler (rebuild it with ``latent_sampler_``)
    n_classes_, class_prior_ : conditional models only
    history_, training_summary_ : training records
    """

    likelihood = "bound"
    #: the CVAE's preset T above 16x16 (the unconditional VAE overrides it, see below):
    #: benchmarks/vae_memorisation.py --family cvae, mnist10k, K = 125, 1,000 samples: T = 0.65
    #: (the earlier preset, chosen for precision) FD 24.0, precision 0.988, recall 0.752,
    #: near-copies 8.8 %; T = 1.0 FD 20.7, precision 0.963, recall 0.892, near-copies 7.5 %
    default_latent_temperature = 1.0
    #: the unconditional VAE's sampler presets, chosen so that near-copies of training images
    #: stay within a point of the held-out real rate (5 %) — benchmarks/vae_memorisation.py,
    #: quick preset, 1,000 samples: mnist10k K = 125, T = 0.65 copied 9.3 % (FD 23.6); K = 30,
    #: T = 1.0 5.8 % (FD 25.8, recall 0.76 -> 0.85); digits K = 22, T = 1.0 7.2 % (FD 8.73),
    #: T = 1.2 5.8 % (FD 9.27). A sharp GMM at low temperature puts samples on training codes.
    UNCONDITIONAL_CODES_PER_COMPONENT = 256
    UNCONDITIONAL_TEMPERATURE = {"small": 1.2, "large": 1.0}
    parameter_schema = {
        **AutoencoderModel.parameter_schema,
        "decoder_likelihood": Param("choice", "bernoulli", choices=LIKELIHOODS, help="p(u | z) per pixel"),
        "beta": Param("float", 1.0, low=0.0, help="weight of the KL term (1 = the ELBO)"),
        "iwae_samples": Param("int", 100, low=1, help="importance samples of score_samples (1 = the ELBO)"),
        "pixel_noise": Param("bool", False, help="sample draws p(u | z) instead of returning its mean"),
        **training_schema(),
    }

    def __init__(
        self,
        latent_dim: int | None = None,
        width: int | None = None,
        n_blocks: int | None = None,
        norm: str = "group",
        condition: str = "none",
        decoder_likelihood: str = "bernoulli",
        beta: float = 1.0,
        latent_sampler: str = "gmm",
        latent_components: int | None = None,
        latent_temperature: float | None = None,
        iwae_samples: int = 100,
        pixel_noise: bool = False,
        **training_params: Any,
    ) -> None:
        self.latent_dim = latent_dim
        self.width = width
        self.n_blocks = n_blocks
        self.norm = norm
        self.condition = condition
        self.decoder_likelihood = decoder_likelihood
        self.beta = beta
        self.latent_sampler = latent_sampler
        self.latent_components = latent_components
        self.latent_temperature = latent_temperature
        self.iwae_samples = iwae_samples
        self.pixel_noise = pixel_noise
        self._set_training_params(training_params)

    # ------------------------------------------------------------------ fit
    def _preset_values(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        """The autoencoders' presets; an unconditional VAE's latent sampler is wider (see
        ``UNCONDITIONAL_*``): K = N/256 components (clipped to [10, 128]) above 16x16 pixels,
        and T = 1.2 up to 16x16, 1.0 above. The CVAE keeps the family presets (K = N/64, T = 1.0)."""
        values = super()._preset_values(preset, image_shape, n_images)
        if not self.conditional:
            small = image_shape[1] * image_shape[2] <= 16 * 16
            if not small:
                values["latent_components"] = int(min(128, max(10, n_images // self.UNCONDITIONAL_CODES_PER_COMPONENT)))
            values["latent_temperature"] = self.UNCONDITIONAL_TEMPERATURE["small" if small else "large"]
        return values

    def _build_modules(self) -> None:
        self.network_ = VAENetwork(
            self.image_shape_,
            int(self._param("latent_dim")),
            self.decoder_likelihood,
            float(self.beta),
            **self._network_kwargs(),
        )

    # ------------------------------------------------------------------ codec
    def _encode_unit(self, u, onehot):
        return self.network_.posterior(u, onehot)[0]

    def _decode_unit(self, z, onehot, generator: torch.Generator | None = None):
        params = self.network_.decode_raw(z, onehot)
        if self.pixel_noise and generator is not None:
            return self.network_.lik.sample(params, generator)
        return self.network_.lik.mean(params)

    # ------------------------------------------------------------------ likelihood bounds
    def _log_weights(
        self, u: torch.Tensor, onehot: torch.Tensor | None, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """log w_i = log p(u|z_i) + log p(z_i) - log q(z_i|u) for k draws per image: (k, B) float64."""
        net = self.network_
        dev = self._network_device()
        mean, log_var = net.posterior(u, onehot)
        b, d = mean.shape
        eps = torch.randn((k, b, d), generator=generator).to(dev)
        z = mean[None] + torch.exp(0.5 * log_var)[None] * eps  # (k, B, d)
        log_q = gaussian_log_density(z, mean[None], log_var[None])
        log_prior = gaussian_log_density(z)
        flat_z = z.reshape(k * b, d)
        u_rep = u[None].expand(k, *u.shape).reshape(k * b, *u.shape[1:])
        oh_rep = onehot[None].expand(k, *onehot.shape).reshape(k * b, -1) if onehot is not None else None
        log_px = torch.empty(k * b, dtype=torch.float64, device=dev)
        for start in range(0, k * b, SCORE_DECODE_BATCH):
            sl = slice(start, start + SCORE_DECODE_BATCH)
            params = net.decode_raw(flat_z[sl], oh_rep[sl] if oh_rep is not None else None)
            log_px[sl] = net.lik.log_prob(u_rep[sl], params).to(torch.float64)
        return log_px.reshape(k, b) + (log_prior - log_q).to(torch.float64)

    def _bounds(self, images: torch.Tensor, labels: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(IWAE_k, ELBO) per image, float64 (N,), from the same draws.

        ``labels=None`` on a conditional model bounds the marginal over classes.
        """
        dev = self._network_device()
        u_all = dequantize(images, score_generator())
        gen = make_generator(SCORE_LATENT_SEED)
        marginal = self.conditional and labels is None
        n_classes = int(self.n_classes_) if marginal else 1
        k_each = max(1, k // n_classes) if marginal else k
        chunk = max(1, SCORE_DECODE_BATCH // k_each)
        iwae, elbo = [], []
        with torch.no_grad():
            for start in range(0, len(images), chunk):
                u = u_all[start : start + chunk].to(dev)
                b = len(u)
                if not marginal:
                    onehot = self._onehot(labels[start : start + chunk] if labels is not None else None, b, dev)
                    lw = self._log_weights(u, onehot, k_each, gen)
                    iwae.append(torch.logsumexp(lw, 0) - np.log(k_each))
                    elbo.append(lw.mean(0))
                    continue
                log_py = torch.log(self.class_prior_.to(device=dev, dtype=torch.float64))
                per_class_iwae, per_class_elbo = [], []
                for c in range(n_classes):
                    onehot = self._onehot(torch.full((b,), c, dtype=torch.int64), b, dev)
                    lw = self._log_weights(u, onehot, k_each, gen)
                    per_class_iwae.append(torch.logsumexp(lw, 0) - np.log(k_each) + log_py[c])
                    per_class_elbo.append(lw.mean(0) + log_py[c])
                iwae.append(torch.logsumexp(torch.stack(per_class_iwae), 0))
                elbo.append(torch.logsumexp(torch.stack(per_class_elbo), 0))
        return torch.cat(iwae).cpu(), torch.cat(elbo).cpu()

    def _log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        return self._bounds(images, None, int(self.iwae_samples))[0]

    def iwae_bound(self, X: Any, y: Any = None, *, k: int | None = None) -> np.ndarray:
        """IWAE_k lower bound on ``log p(u)`` per image (nats, float64 (N,)); ``k`` defaults to ``iwae_samples``.

        With labels ``y`` a conditional model bounds ``log p(u | y)`` instead of the marginal.
        """
        return self._bound_api(X, y, k)[0]

    def elbo(self, X: Any, y: Any = None, *, k: int | None = None) -> np.ndarray:
        """ELBO per image (nats, float64 (N,)) at β = 1, estimated with the same ``k``
        draws as :meth:`iwae_bound` (the mean log-weight), so ``elbo <= iwae_bound`` exactly."""
        return self._bound_api(X, y, k)[1]

    def _bound_api(self, X: Any, y: Any, k: int | None) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        images = check_images(X, expected_shape=self.image_shape_)
        k = check_int("k", int(self.iwae_samples) if k is None else k, minimum=1)
        labels = None
        if y is not None:
            labels = self._user_labels(y, len(images))
            if labels is not None and labels.ndim != 1:
                raise GenlabError("y: bounds need integer labels, not soft labels")
        iwae, elbo = self._bounds(images, labels, k)
        return iwae.numpy(), elbo.numpy()


__all__ = ["VAE", "VAENetwork"]
