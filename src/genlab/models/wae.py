"""Wasserstein autoencoder (Tolstikhin et al. 2018) with three latent divergences.

A deterministic encoder ``z = E(u)`` and decoder ``û = G(z)`` (sigmoid outputs in
[0, 1]) minimise, per batch of n images,

    mean_i ‖u_i - G(E(u_i))‖²  +  λ · D({E(u_i)}, N(0, I))

(the squared error summed over pixels, as in the WAE and CWAE papers), where D is

* ``"mmd"`` — unbiased MMD² with the inverse multiquadratic kernel summed over the
  scales C = 2·d·{.1, .2, .5, 1, 2, 5, 10} against n fresh prior draws (WAE-MMD);
* ``"sliced"`` — sliced Wasserstein SW₂² over ``n_projections`` random directions
  against n fresh prior draws (Kolouri et al. 2019, SWAE);
* ``"cw"`` — the Cramér–Wold distance of the codes from N(0, I) in closed form, no prior
  draws needed (Tabor et al., CWAE, JMLR 2020). Following the paper, the objective uses
  its **logarithm**: ``‖u - û‖² + λ · log d²_cw`` (the paper's cost, λ = 1 there), with the
  paper's φ_D approximation and Silverman's γ = (4 / (3n))^(2/5).

See :mod:`genlab.divergences` for the estimators. There is no likelihood
(``likelihood = "none"``): compare WAEs with sample metrics (``genlab evaluate``).
Generation decodes codes from the latent sampler: "gmm" (default, a mixture fitted on
the training codes) or "prior".
"""

from __future__ import annotations

from typing import Any

import torch

from ..divergences import cramer_wold_normality, mmd_imq, sliced_wasserstein
from ..errors import GenlabError
from ..likelihood import dequantize
from .autoencoder import AutoencoderModel, AutoencoderNetwork
from .neural import training_schema
from .registry import register
from .schema import Param

DIVERGENCES = ("mmd", "sliced", "cw")
#: λ when ``reg_weight`` is None, per divergence (tuned for the squared error summed over pixels)
DEFAULT_REG_WEIGHTS = {"mmd": 100.0, "sliced": 100.0, "cw": 1.0}
#: the presets' latent temperature per divergence above 16x16. MMD: benchmarks/vae_memorisation.py
#: --family wae_mmd, mnist10k, K = 125, 1,000 samples: T = 0.6 FD 29.2, near-copies 9.7 %;
#: T = 1.0 FD 26.3, near-copies 6.7 % (precision 0.984 -> 0.953). Sliced and Cramér-Wold keep
#: the earlier sweep's values (the sliced codes need a lower T for the same precision, since its
#: mixture puts more mass between the classes); they were not re-measured for copies.
DEFAULT_LATENT_TEMPERATURES = {"mmd": 1.0, "sliced": 0.5, "cw": 0.6}


class WAENetwork(AutoencoderNetwork):
    """Deterministic encoder/decoder; ``forward(batch)`` returns reconstruction + λ·divergence."""

    def __init__(
        self, image_shape, latent_dim, divergence: str, reg_weight: float, n_projections: int, **kwargs
    ) -> None:
        super().__init__(image_shape, latent_dim, int(latent_dim), int(image_shape[0]), **kwargs)
        self.divergence = divergence
        self.reg_weight = float(reg_weight)
        self.n_projections = int(n_projections)

    def reconstruct_unit(self, z: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        return torch.sigmoid(self.decode_raw(z, onehot))

    def penalty(self, z: torch.Tensor) -> torch.Tensor:
        """The divergence term (before λ) of a batch of codes (B, d)."""
        if self.divergence == "cw":
            return torch.log(cramer_wold_normality(z).clamp(min=1e-12))
        prior = torch.randn_like(z)
        if self.divergence == "mmd":
            if len(z) < 2:  # the unbiased estimate needs pairs (a last validation batch can hold one image)
                return z.sum() * 0.0
            return mmd_imq(z, prior)
        return sliced_wasserstein(z, prior, n_projections=self.n_projections, p=2)

    def forward(self, batch: dict[str, Any]):
        u = dequantize(batch["images"])
        onehot = self.batch_onehot(batch)
        z = self.encode_raw(u, onehot)
        rec = (self.reconstruct_unit(z, onehot).float() - u).pow(2).flatten(1).sum(1).mean()
        with torch.autocast(device_type=z.device.type, enabled=False):  # distances in float32 (they cancel in bf16)
            penalty = self.penalty(z.float())
        loss = rec + self.reg_weight * penalty
        return loss, {"rec_sse": rec.detach(), self.divergence: penalty.detach()}


@register("wae")
class WAE(AutoencoderModel):
    """Wasserstein autoencoder (MMD, sliced-Wasserstein or Cramér–Wold latent penalty); no likelihood.

    Parameters
    ----------
    latent_dim, width, n_blocks, norm, condition, latent_sampler, latent_components, latent_temperature
        See :class:`~genlab.models.autoencoder.AutoencoderModel`.
    divergence : {"mmd", "sliced", "cw"}
        The latent penalty D (see the module docstring).
    reg_weight : float or None
        λ; None = the divergence's default (mmd 100, sliced 100, cw 1).
    n_projections : int
        Random directions per batch for ``divergence="sliced"``.
    **training parameters
        See :class:`~genlab.models.neural.NeuralGenerativeModel`.
    """

    likelihood = "none"
    capabilities = AutoencoderModel.capabilities - {"likelihood"}
    parameter_schema = {
        **AutoencoderModel.parameter_schema,
        "divergence": Param(
            "choice", "mmd", choices=DIVERGENCES, help="latent penalty: MMD, sliced Wasserstein or Cramér–Wold"
        ),
        "reg_weight": Param("float", None, low=0.0, nullable=True, help="λ (None = the divergence's default)"),
        "n_projections": Param("int", 50, low=1, help="random directions per batch for 'sliced'"),
        **training_schema(),
    }

    def __init__(
        self,
        latent_dim: int | None = None,
        width: int | None = None,
        n_blocks: int | None = None,
        norm: str = "group",
        condition: str = "none",
        divergence: str = "mmd",
        reg_weight: float | None = None,
        n_projections: int = 50,
        latent_sampler: str = "gmm",
        latent_components: int | None = None,
        latent_temperature: float | None = None,
        **training_params: Any,
    ) -> None:
        self.latent_dim = latent_dim
        self.width = width
        self.n_blocks = n_blocks
        self.norm = norm
        self.condition = condition
        self.divergence = divergence
        self.reg_weight = reg_weight
        self.n_projections = n_projections
        self.latent_sampler = latent_sampler
        self.latent_components = latent_components
        self.latent_temperature = latent_temperature
        self._set_training_params(training_params)

    def _check_family_params(self) -> None:
        if isinstance(self.batch_size, int) and self.batch_size < 2:
            raise GenlabError(
                f"batch_size={self.batch_size} must be >= 2: the latent divergence compares a batch of codes with the prior"
            )

    @property
    def default_latent_temperature(self) -> float:  # type: ignore[override]
        return DEFAULT_LATENT_TEMPERATURES.get(self.divergence, 1.0)

    def _reg_weight(self) -> float:
        return float(self.reg_weight) if self.reg_weight is not None else DEFAULT_REG_WEIGHTS[self.divergence]

    def _build_modules(self) -> None:
        self.network_ = WAENetwork(
            self.image_shape_,
            int(self._param("latent_dim")),
            self.divergence,
            self._reg_weight(),
            int(self.n_projections),
            **self._network_kwargs(),
        )

    def _encode_unit(self, u, onehot):
        return self.network_.encode_raw(u, onehot)

    def _decode_unit(self, z, onehot, generator=None):
        return self.network_.reconstruct_unit(z, onehot)


__all__ = ["WAE", "WAENetwork", "DIVERGENCES"]
