"""GAN objectives and regularisers.

Every loss takes discriminator logits (any shape, reduced by the mean) and returns a
scalar. With ``r = D(x_real)`` and ``f = D(G(z))``:

=================  ===========================================  ==============================
loss               discriminator minimises                       generator minimises
=================  ===========================================  ==============================
``"ns"``           ``softplus(-r) + softplus(f)``                ``softplus(-f)``
                   (= ``-log σ(r) - log(1 - σ(f))``)             (= ``-log σ(f)``, non-saturating)
``"hinge"``        ``relu(1 - r) + relu(1 + f)``                 ``-f``
``"wgan-gp"``      ``f - r`` (+ λ·gradient penalty)              ``-f``
``"lsgan"``        ``½(r - 1)² + ½ f²``                          ``½(f - 1)²``
=================  ===========================================  ==============================

(Goodfellow et al. 2014; Lim & Ye 2017 / Miyato et al. 2018; Gulrajani et al. 2017;
Mao et al. 2017.) The penalties are computed in float32 even inside a bf16 autocast
region: a squared gradient norm in bfloat16 loses most of its digits.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from ..errors import GenlabError

LOSSES = ("ns", "hinge", "wgan-gp", "lsgan")


def _check(kind: str) -> None:
    if kind not in LOSSES:
        raise GenlabError(f"loss={kind!r} is not valid; use one of {', '.join(map(repr, LOSSES))}")


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss (scalar, float32) for ``kind`` (see the module table); the
    WGAN-GP penalty is added separately with :func:`gradient_penalty`."""
    _check(kind)
    r, f = real_logits.float(), fake_logits.float()
    if kind == "ns":
        return F.softplus(-r).mean() + F.softplus(f).mean()
    if kind == "hinge":
        return F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
    if kind == "wgan-gp":
        return f.mean() - r.mean()
    return 0.5 * ((r - 1.0) ** 2).mean() + 0.5 * (f**2).mean()


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss (scalar, float32) for ``kind`` (see the module table)."""
    _check(kind)
    f = fake_logits.float()
    if kind == "ns":
        return F.softplus(-f).mean()
    if kind in ("hinge", "wgan-gp"):
        return -f.mean()
    return 0.5 * ((f - 1.0) ** 2).mean()


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇_x̂ D(x̂)‖₂ - 1)²]`` at ``x̂ = ε x_real + (1 - ε) x_fake``,
    ``ε ~ U(0, 1)`` per image; float32, differentiable w.r.t. the critic's weights.

    ``critic``: images (B, C, H, W) -> logits (B,) (close over the labels for a
    conditional critic). ``fake`` is detached. Returns the (unweighted) scalar penalty.
    """
    with _no_autocast(real.device):
        eps = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, generator=generator)
        x_hat = (eps * real.detach().float() + (1.0 - eps) * fake.detach().float()).requires_grad_(True)
        out = critic(x_hat).float()
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        norm = grad.flatten(1).norm(2, dim=1)
        return ((norm - 1.0) ** 2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R1 (Mescheder et al. 2018): ``E[‖∇_x D(x_real)‖²]`` (float32, unweighted; the usual
    weight is γ/2). Returns (penalty, the real logits it computed) so a lazy step can reuse
    them."""
    with _no_autocast(real.device):
        x = real.detach().float().requires_grad_(True)
        out = critic(x).float()
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return grad.flatten(1).pow(2).sum(1).mean(), out
