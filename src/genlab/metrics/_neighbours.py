"""Feature validation and exact, chunked nearest-neighbour work shared by the metrics.

Squared distances come from one float32 GEMM on centred rows,
``‖q‖² + ‖t‖² − 2 q·t``: fast, but rounded. Every decision that depends on a distance
(which rows are a point's k nearest neighbours, is a point inside a radius) is taken
from the float32 value only where a rounding-error bound proves it safe; the few
pairs inside the bound are recomputed in float64 from the original rows as
``Σ (q − t)²``. Results therefore agree with a float64 brute-force reference
(``scipy.spatial.distance.cdist``) up to float64 rounding, at the cost of one float32
GEMM per pair of sets. Work is chunked over rows so that temporaries stay within
``MEMORY_BUDGET_BYTES`` whatever N is.

The bound: for centred float32 rows q, t with ``a = ‖q‖²``, ``b = ‖t‖²``, the GEMM
expansion errs by at most about ``(2F + 16)·u·(a + b)`` (recursive summation of F
products, Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1), u = 2⁻²⁴;
when torch is allowed TF32/bfloat16 matmuls (``torch.set_float32_matmul_precision``)
the input rounding of those formats is added. We use twice that as ``tol`` and bound
``b`` by the largest norm of the other set, so the band is one number per row.
"Exact" therefore means: the same neighbours and the same inside/outside decisions as
a float64 brute force, except for pairs whose distances differ by float64 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from ..models.validation import check_int

MEMORY_BUDGET_BYTES = 1 << 28  # bounds every (rows x something) temporary: 256 MiB
EXTRA_CANDIDATES = 4  # float32 candidates refined in float64 beyond the k needed


def as_features(
    x: Any, name: str, *, min_rows: int = 1, why: str = "", device: torch.device | None = None
) -> torch.Tensor:
    """Validate a feature matrix and return it as a 2-D float tensor (N, F).

    Accepts a NumPy array or torch tensor (or nested lists). float64 stays float64;
    every other numeric dtype becomes float32 (exact for integers below 2²⁴, e.g.
    pixels). Moved to ``device`` when given, else left where it is.
    """
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.iscomplexobj(x):
            raise GenlabError(
                f"{name}: dtype {x.dtype} is not a real number type; pass features as a float array (N, F)"
            )
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise GenlabError(f"{name}: expected a NumPy array or torch tensor of shape (N, F), got {type(x).__name__}")
    x = x.detach()
    if x.is_complex():
        raise GenlabError(f"{name}: complex values are not features")
    if x.ndim != 2:
        raise GenlabError(
            f"{name}: shape {tuple(x.shape)} is not (N, F); flatten images first, e.g. x.reshape(len(x), -1)"
        )
    if x.shape[1] == 0:
        raise GenlabError(f"{name}: rows have no features (F = 0)")
    if x.shape[0] < min_rows:
        raise GenlabError(f"{name}: {x.shape[0]} rows, need at least {min_rows}" + (f" ({why})" if why else ""))
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    if device is not None:
        x = x.to(device)
    finite = torch.isfinite(x).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise GenlabError(f"{name}: {bad.numel()} rows hold NaN or inf (first: row {int(bad[0])})")
    return x


def check_same_width(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise GenlabError(
            f"{name_b}: {b.shape[1]} features per row, but {name_a} has {a.shape[1]}; both must come from the same feature extractor"
        )


def check_k(k: Any, *, minimum: int = 1) -> int:
    return check_int("k", k, minimum=minimum)


def rows_per_chunk(n_rows: int, bytes_per_row: int) -> int:
    """Rows per chunk so that a chunk's temporaries fit in MEMORY_BUDGET_BYTES."""
    return max(1, min(n_rows, MEMORY_BUDGET_BYTES // max(bytes_per_row, 1)))


def _matmul_rounds_inputs() -> bool:
    """True when torch may run float32 matmuls with TF32/bfloat16 inputs."""
    try:
        if torch.get_float32_matmul_precision() != "highest":
            return True
    except RuntimeError:  # legacy and new precision APIs were mixed: assume the worst
        return True
    cuda_matmul = torch.backends.cuda.matmul
    return bool(getattr(cuda_matmul, "allow_tf32", False)) or getattr(cuda_matmul, "fp32_precision", "none") not in (
        "none",
        "ieee",
    )


def gemm_tolerance(n_features: int) -> float:
    """Relative band ``tol`` with ``|d²_gemm − d²| ≤ tol·(‖q‖² + ‖t‖²)`` (see module doc)."""
    u = 2.0**-24
    u_inputs = 2.0**-8 if _matmul_rounds_inputs() else u  # bfloat16 rounding covers TF32 (2⁻¹¹) too
    return 2.0 * ((2 * n_features + 16) * u + 4 * u_inputs)


@dataclass
class Rows:
    """A feature matrix prepared for distance work.

    exact : (n, F) float32/float64, the validated rows (float64 refinement reads these).
    work : (n, F) float32, rows minus a shared centre (centring shrinks the norms, so
        the GEMM expansion cancels less).
    sq_norm : (n,) float32, ``‖work‖²``.
    """

    exact: torch.Tensor
    work: torch.Tensor
    sq_norm: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.exact.shape[0])


def _column_sum64(x: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    step = rows_per_chunk(x.shape[0], 8 * x.shape[1])
    for start in range(0, x.shape[0], step):
        total += x[start : start + step].to(torch.float64).sum(0)
    return total


def prepare(*sets: torch.Tensor, names: tuple[str, ...] | None = None) -> list[Rows]:
    """Centre every set on their common mean (float64) and keep float32 working copies.

    ``names`` (one per set) only label the error raised when values are too large for
    float32 squared distances.
    """
    centre = sum(_column_sum64(x) for x in sets) / sum(x.shape[0] for x in sets)
    out = []
    for x in sets:
        work = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        step = rows_per_chunk(x.shape[0], 8 * x.shape[1])
        for start in range(0, x.shape[0], step):
            work[start : start + step] = (x[start : start + step].to(torch.float64) - centre).to(torch.float32)
        sq_norm = work.pow(2).sum(1)
        if not bool(torch.isfinite(sq_norm).all()):
            largest = max(range(len(sets)), key=lambda j: float(sets[j].abs().max()))  # the culprit
            name = names[largest] if names else "features"
            raise GenlabError(
                f"{name}: values too large for float32 distance arithmetic (squared norms overflow); rescale the features"
            )
        out.append(Rows(exact=x, work=work, sq_norm=sq_norm))
    return out


def gemm_sq_dist(query: Rows, ref: Rows, start: int, stop: int) -> torch.Tensor:
    """Float32 squared distances of query rows start:stop to every ref row: (stop-start, n_ref).

    Not clamped at 0: tiny negative values from rounding only ever feed comparisons
    that the rounding band covers; reported distances come from the float64 refinement.
    """
    d2 = ref.sq_norm[None].repeat(stop - start, 1)  # in-place addmm_ then needs no second buffer
    return d2.addmm_(query.work[start:stop], ref.work.T, alpha=-2.0).add_(query.sq_norm[start:stop, None])


def exact_sq_dist(query: torch.Tensor, ref: torch.Tensor, qi: torch.Tensor, ri: torch.Tensor) -> torch.Tensor:
    """``Σ (query[qi] − ref[ri])²`` in float64 for index pairs (P,), chunked: (P,) float64."""
    p, f = qi.numel(), query.shape[1]
    out = torch.empty(p, dtype=torch.float64, device=query.device)
    # a quarter of the budget: this runs while the caller's distance block is still alive
    step = max(1, min(p, MEMORY_BUDGET_BYTES // 4 // (3 * 8 * f)))
    for start in range(0, p, step):
        diff = query[qi[start : start + step]].to(torch.float64) - ref[ri[start : start + step]].to(torch.float64)
        out[start : start + step] = diff.pow_(2).sum(1)
    return out


def _float32_towards(x: torch.Tensor, direction: float) -> torch.Tensor:
    """float64 -> float32, rounded towards +inf or -inf (keeps float32 comparisons conservative)."""
    y = x.to(torch.float32)
    off = (y.to(torch.float64) < x) if direction > 0 else (y.to(torch.float64) > x)
    return torch.where(off, torch.nextafter(y, torch.full_like(y, direction * float("inf"))), y)


MAX_PAIRS_PER_GROUP = 1 << 20  # doubtful pairs handled at once (~40 bytes each)


def _row_groups(mask: torch.Tensor) -> list[tuple[int, int]]:
    """Split the rows of a boolean (rows, n) mask into ranges holding at most
    MAX_PAIRS_PER_GROUP true entries each (a single row may hold more); rows with no
    true entry still belong to a range, so every row is visited."""
    ends = (
        mask.view(torch.uint8).sum(1, dtype=torch.int32).cumsum(0, dtype=torch.int64)
    )  # int32 sum: no widened copy of the mask
    total = int(ends[-1]) if ends.numel() else 0
    if total <= MAX_PAIRS_PER_GROUP:
        return [(0, mask.shape[0])]
    cuts = torch.searchsorted(
        ends, torch.arange(MAX_PAIRS_PER_GROUP, total, MAX_PAIRS_PER_GROUP, device=ends.device), right=True
    )
    bounds = sorted({0, mask.shape[0], *(int(c) for c in cuts.clamp(max=mask.shape[0]))})
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _k_smallest_per_row(
    cand_d2: torch.Tensor,
    cand: torch.Tensor,
    extra_rows: torch.Tensor | None,
    extra_d2: torch.Tensor | None,
    extra_idx: torch.Tensor | None,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest exact distances per row among a row's candidates (rows, c) plus
    extra (row, distance, index) triples; returns ((rows, k) float64 ascending, (rows, k) int64)."""
    rows, c = cand_d2.shape
    if extra_rows is None or extra_rows.numel() == 0:
        best_d2, order = torch.topk(cand_d2, k, dim=1, largest=False, sorted=True)
        return best_d2, cand.gather(1, order)
    row_of = torch.cat([torch.arange(rows, device=cand.device).repeat_interleave(c), extra_rows])
    all_d2 = torch.cat([cand_d2.reshape(-1), extra_d2])
    all_idx = torch.cat([cand.reshape(-1), extra_idx])
    order = torch.argsort(all_d2, stable=True)
    order = order[torch.argsort(row_of[order], stable=True)]  # grouped by row, ascending within
    sizes = c + torch.bincount(extra_rows, minlength=rows)
    first = sizes.cumsum(0) - sizes
    take = order[first[:, None] + torch.arange(k, device=cand.device)[None]]
    return all_d2[take], all_idx[take]


def knn(query: Rows, ref: Rows, k: int, *, exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of every query row among the ref rows.

    With ``exclude_self`` query and ref are the same set and row i never counts as its
    own neighbour (an identical duplicate of it does, at distance 0).

    Returns squared L2 distances (m, k) float64, ascending, and ref indices (m, k) int64.
    Ties between equidistant neighbours are broken arbitrarily.

    Method: the k + EXTRA_CANDIDATES smallest float32 distances of a row are refined in
    float64; any other ref row whose float32 distance lies within the rounding band
    ``tol·(‖q‖² + max‖t‖²)`` of the k-th refined distance is refined too, so no true
    neighbour can be missed.
    """
    m, n, f = query.n, ref.n, query.work.shape[1]
    available = n - 1 if exclude_self else n
    if k > available:
        raise GenlabError(f"k={k} nearest neighbours need at least {k + int(exclude_self)} reference rows, got {n}")
    n_cand = min(k + EXTRA_CANDIDATES, available)
    tol = gemm_tolerance(f)
    band = tol * (query.sq_norm.to(torch.float64) + float(ref.sq_norm.max()))
    out_d2 = torch.empty((m, k), dtype=torch.float64, device=query.exact.device)
    out_idx = torch.empty((m, k), dtype=torch.int64, device=query.exact.device)
    step = rows_per_chunk(m, n * (4 + 4 + 1) + n_cand * 8 * 4)  # block, top-k scratch, mask
    for start in range(0, m, step):
        stop = min(m, start + step)
        rows = stop - start
        d2 = gemm_sq_dist(query, ref, start, stop)
        row_ids = torch.arange(start, stop, device=d2.device)
        if exclude_self:
            d2[row_ids - start, row_ids] = float("inf")
        cand = torch.topk(d2, n_cand, dim=1, largest=False, sorted=False).indices
        cand_d2 = exact_sq_dist(
            query.exact, ref.exact, row_ids[:, None].expand(rows, n_cand).reshape(-1), cand.reshape(-1)
        ).view(rows, n_cand)
        if n_cand < available:
            # A non-candidate can only matter if its true distance could be <= the k-th
            # refined one: float32 distance <= k-th + rounding band.
            kth = torch.kthvalue(cand_d2, k, dim=1).values
            d2.scatter_(1, cand, float("inf"))
            doubt = d2 <= _float32_towards(kth + band[start:stop], 1.0)[:, None]
            del d2
            for g0, g1 in _row_groups(doubt):
                qi, ri = doubt[g0:g1].nonzero(as_tuple=True)
                extra_d2 = exact_sq_dist(query.exact, ref.exact, qi + start + g0, ri)
                out_d2[start + g0 : start + g1], out_idx[start + g0 : start + g1] = _k_smallest_per_row(
                    cand_d2[g0:g1], cand[g0:g1], qi, extra_d2, ri, k
                )
        else:
            out_d2[start:stop], out_idx[start:stop] = _k_smallest_per_row(cand_d2, cand, None, None, None, k)
    return out_d2, out_idx


@dataclass
class RadiusMatches:
    """Outcome of comparing every real-fake distance with the k-NN radii.

    fake_count : (M,) int64, ``#{i : d(fake_j, real_i) <= r_real_i}``.
    real_covered : (N,) bool, ``min_j d(real_i, fake_j) <= r_real_i``.
    real_in_fake : (N,) bool or None, ``∃ j : d(real_i, fake_j) <= r_fake_j``.
    """

    fake_count: torch.Tensor
    real_covered: torch.Tensor
    real_in_fake: torch.Tensor | None


def radius_matches(real: Rows, fake: Rows, real_r2: torch.Tensor, fake_r2: torch.Tensor | None) -> RadiusMatches:
    """One chunked pass over the real x fake distance matrix (see RadiusMatches).

    ``real_r2`` (N,) and ``fake_r2`` (M,) are squared radii in float64. A comparison is
    taken from the float32 distance when it is outside the rounding band
    ``tol·(‖x‖² + ‖y‖²)`` (bounded with the other set's largest norm) of the radius,
    and redone in float64 otherwise.
    """
    n, m, f = real.n, fake.n, real.work.shape[1]
    device = real.exact.device
    tol = gemm_tolerance(f)
    real_norm, fake_norm = real.sq_norm.to(torch.float64), fake.sq_norm.to(torch.float64)
    real_band = tol * (real_norm + float(fake_norm.max()))
    real_hi, real_lo = _float32_towards(real_r2 + real_band, 1.0), _float32_towards(real_r2 - real_band, -1.0)
    if fake_r2 is not None:
        fake_band = tol * (fake_norm + float(real_norm.max()))
        fake_hi, fake_lo = (
            _float32_towards(fake_r2 + fake_band, 1.0)[None],
            _float32_towards(fake_r2 - fake_band, -1.0)[None],
        )
    fake_count = torch.zeros(m, dtype=torch.int64, device=device)
    real_covered = torch.zeros(n, dtype=torch.bool, device=device)
    real_in_fake = None if fake_r2 is None else torch.zeros(n, dtype=torch.bool, device=device)
    step = rows_per_chunk(n, m * 10)  # float32 block + 4 boolean masks (+ slack)
    for start in range(0, n, step):
        stop = min(n, start + step)
        d2 = gemm_sq_dist(real, fake, start, stop)
        # surely inside: below the band; doubtful: inside the band (maybe xor surely)
        inside_real = d2 <= real_lo[start:stop, None]
        doubt = d2 <= real_hi[start:stop, None]
        doubt ^= inside_real
        if fake_r2 is not None:
            inside_fake = d2 <= fake_lo
            maybe = d2 <= fake_hi
            maybe ^= inside_fake
            doubt |= maybe
            del maybe
        del d2
        for g0, g1 in _row_groups(doubt):
            ri, fi = doubt[g0:g1].nonzero(as_tuple=True)
            ri += g0
            exact = exact_sq_dist(real.exact, fake.exact, ri + start, fi)
            inside_real[ri, fi] = exact <= real_r2[ri + start]
            if fake_r2 is not None:
                inside_fake[ri, fi] = exact <= fake_r2[fi]
        del doubt
        fake_count += inside_real.view(torch.uint8).sum(0, dtype=torch.int32)  # no int copy of the mask
        real_covered[start:stop] = inside_real.any(1)
        if real_in_fake is not None:
            real_in_fake[start:stop] = inside_fake.any(1)
    return RadiusMatches(fake_count=fake_count, real_covered=real_covered, real_in_fake=real_in_fake)
