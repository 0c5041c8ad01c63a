"""Sample-based distances between distributions in R^d, differentiable, in torch.

The Wasserstein autoencoder (:mod:`genlab.models.wae`) penalises the distance between
its batch of codes and the prior N(0, I) with one of these; they are plain functions
of tensors (not network blocks), so metrics can use them too.

* :func:`mmd_imq` — unbiased MMD² with the inverse multiquadratic kernel summed over
  scales (Tolstikhin et al. 2018, "Wasserstein Auto-Encoders", WAE-MMD).
* :func:`sliced_wasserstein` — Monte-Carlo sliced Wasserstein distance SW_p^p from random
  projections and sorted 1-D samples (Kolouri et al. 2019, "Sliced-Wasserstein Autoencoder").
* :func:`cramer_wold_normality` — the Cramér–Wold distance d²_cw of a sample from N(0, I)
  in closed form (Tabor, Knop, Spurek, Podolak, Mazur, Jastrzębski, "Cramer-Wold
  AutoEncoder", JMLR 21 (2020) 19-560), with the paper's approximation of φ_D and
  Silverman's smoothing rule; :func:`phi_d` is that approximation.

Pairwise squared distances are formed from centred inner products (O(n·m) memory, no
(n, m, d) temporaries); the batches these are used on are small (tens to hundreds).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .errors import GenlabError

#: the IMQ kernel scales of Tolstikhin et al.: C = 2·d·σ²·s for each s
IMQ_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def pairwise_sq_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖x_i - y_j‖² for x (n, d) and y (m, d): (n, m), clamped at 0.

    Both sets are centred on x's mean first: the expansion ‖x‖² + ‖y‖² - 2 x·y then
    cancels far less in float32.
    """
    centre = x.mean(0, keepdim=True).detach()
    xc, yc = x - centre, y - centre
    d2 = xc.pow(2).sum(1)[:, None] + yc.pow(2).sum(1)[None, :] - 2.0 * (xc @ yc.T)
    return d2.clamp(min=0.0)


def _check_sets(x: torch.Tensor, y: torch.Tensor | None, name: str, min_rows: int = 2) -> None:
    if x.ndim != 2:
        raise GenlabError(f"{name}: samples must be (n, d), got shape {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise GenlabError(f"{name}: needs at least {min_rows} samples, got {x.shape[0]}")
    if y is not None and (y.ndim != 2 or y.shape[1] != x.shape[1]):
        raise GenlabError(
            f"{name}: both sample sets must be (n, d) with the same d, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def mmd_imq(
    x: torch.Tensor, y: torch.Tensor, *, scales: Sequence[float] = IMQ_SCALES, prior_variance: float = 1.0
) -> torch.Tensor:
    """Unbiased estimate of MMD²(P, Q) from x ~ P (n, d) and y ~ Q (m, d).

    Kernel: ``k(a, b) = Σ_s C_s / (C_s + ‖a - b‖²)`` with ``C_s = 2·d·σ²·s`` (σ² =
    ``prior_variance``, s in ``scales``): the inverse multiquadratic kernel of WAE-MMD,
    whose heavy tails keep gradients alive for codes far from the prior.

    ``MMD² = 1/(n(n-1)) Σ_{i≠j} k(x_i, x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i, y_j) - 2/(nm) Σ_{i,j} k(x_i, y_j)``;
    its expectation is the population MMD² (so it can be slightly negative). Scalar.
    """
    _check_sets(x, y, "mmd_imq")
    if y.shape[0] < 2:
        raise GenlabError(f"mmd_imq: needs at least 2 samples in y, got {y.shape[0]}")
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    cs = [2.0 * d * float(prior_variance) * float(s) for s in scales]

    def kernel(d2: torch.Tensor) -> torch.Tensor:
        return sum(c / (c + d2) for c in cs)

    k_xx = kernel(pairwise_sq_distances(x, x))
    k_yy = kernel(pairwise_sq_distances(y, y))
    k_xy = kernel(pairwise_sq_distances(x, y))
    # the diagonal of k_xx and k_yy is k(a, a) = number of scales exactly: drop it
    diag = float(len(cs))
    xx = (k_xx.sum() - n * diag) / (n * (n - 1))
    yy = (k_yy.sum() - m * diag) / (m * (m - 1))
    return xx + yy - 2.0 * k_xy.mean()


def random_directions(
    n: int, d: int, *, generator: torch.Generator | None = None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere in R^d: (n, d)."""
    v = torch.randn((n, d), generator=generator, dtype=dtype, device="cpu" if generator is not None else device)
    v = v.to(device) if device is not None else v
    return v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_projections: int = 50,
    p: int = 2,
    directions: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo sliced Wasserstein distance SW_p^p between x (n, d) and y (n, d).

    Both sets are projected on ``n_projections`` random unit directions (or the given
    ``directions`` (L, d)); in 1-D the optimal coupling of two equally large samples
    pairs them in sorted order, so ``W_p^p = mean_i |sort(x·θ)_i - sort(y·θ)_i|^p``.
    Returns the mean over directions of W_p^p (not its p-th root, as SWAE's loss does).
    """
    _check_sets(x, y, "sliced_wasserstein", min_rows=1)
    if x.shape[0] != y.shape[0]:
        raise GenlabError(
            f"sliced_wasserstein: both sets need the same number of samples, got {x.shape[0]} and {y.shape[0]}"
        )
    if p < 1:
        raise GenlabError(f"sliced_wasserstein: p={p} must be >= 1")
    if directions is None:
        directions = random_directions(
            int(n_projections), x.shape[1], generator=generator, device=x.device, dtype=x.dtype
        )
    px = torch.sort(x @ directions.T, dim=0).values
    py = torch.sort(y @ directions.T, dim=0).values
    diff = (px - py).abs()
    return (diff.pow(p) if p != 1 else diff).mean()


def silverman_gamma(n: int) -> float:
    """The CWAE paper's smoothing γ for n codes: Silverman's rule for a unit-variance
    normal, γ = (4 / (3n))^(2/5) (γ is a variance)."""
    if n < 1:
        raise GenlabError(f"silverman_gamma: n={n} must be >= 1")
    return (4.0 / (3.0 * n)) ** 0.4


def phi_d(s: torch.Tensor, d: int) -> torch.Tensor:
    """The CWAE paper's approximation ``φ_D(s) ≈ (1 + 4s / (2D - 3))^(-1/2)`` of
    ``φ_D(s) = ₁F₁(1/2; D/2; -s)`` (good for D ≥ 20; exact as D → ∞ and at s = 0)."""
    if d < 2:
        raise GenlabError(f"phi_d: D={d} must be >= 2")
    return torch.rsqrt(1.0 + 4.0 * s / (2.0 * d - 3.0))


def cramer_wold_normality(z: torch.Tensor, gamma: float | None = None) -> torch.Tensor:
    """Squared Cramér–Wold distance d²_cw between the sample z (n, D) and N(0, I), scalar.

    Closed form of the CWAE paper (smoothing every 1-D projection with N(0, γ)):

    ``d²_cw = 1/(2n²√(πγ)) Σ_{i,j} φ_D(‖z_i - z_j‖² / (4γ)) + 1/(2√(π(1+γ)))
    - 1/(n √(π(γ + 1/2))) Σ_i φ_D(‖z_i‖² / (2 + 4γ))``

    with φ_D from :func:`phi_d` and γ from :func:`silverman_gamma` unless given.
    """
    _check_sets(z, None, "cramer_wold_normality", min_rows=1)
    n, d = z.shape
    gamma = silverman_gamma(n) if gamma is None else float(gamma)
    if gamma <= 0:
        raise GenlabError(f"cramer_wold_normality: gamma={gamma} must be > 0")
    pair = phi_d(pairwise_sq_distances(z, z) / (4.0 * gamma), d).sum() / (2.0 * n * n * math.sqrt(math.pi * gamma))
    prior = 1.0 / (2.0 * math.sqrt(math.pi * (1.0 + gamma)))
    cross = phi_d(z.pow(2).sum(1) / (2.0 + 4.0 * gamma), d).sum() / (n * math.sqrt(math.pi * (gamma + 0.5)))
    return pair + prior - cross
