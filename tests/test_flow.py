"""Normalizing-flow layers (genlab.nn.flows): invertibility, log-determinants against a
brute-force autograd Jacobian, the spline's monotonicity and inverse, and a normalised
density in 2-D by quadrature."""

import math

import numpy as np
import pytest
import torch

from genlab.nn.flows import (
    ActNorm,
    Coupling,
    InvConv1x1,
    MultiscaleFlow,
    Split,
    Squeeze,
    rational_quadratic_spline,
    standard_normal_log_prob,
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # layer construction (random 1x1 convolutions) is reproducible
    yield
    torch.set_num_threads(before)


def perturb(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Move every parameter off its (often identity) initial value so the tests are not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(1)
    return module


class SplitAsLayer(torch.nn.Module):
    """Split seen as a bijection x -> cat(h, eps) (for the generic tests)."""

    def __init__(self, shape, n_classes=0):
        super().__init__()
        self.split = Split(shape, n_classes=n_classes)
        self.onehot = None

    def forward(self, x):
        h, eps, ld = self.split(x, self.onehot)
        return torch.cat([h, eps], 1), ld

    def inverse(self, y):
        k = self.split.keep
        return self.split.inverse(y[:, :k], y[:, k:], self.onehot)


class WholeFlow(torch.nn.Module):
    """MultiscaleFlow seen as a bijection x -> flat eps."""

    def __init__(self, flow, onehot=None):
        super().__init__()
        self.flow, self.onehot = flow, onehot

    def forward(self, x):
        eps, ld = self.flow(x, self.onehot)
        return self.flow.flatten(eps).reshape(x.shape), ld

    def inverse(self, y):
        return self.flow.inverse(self.flow.unflatten(y.flatten(1)), self.onehot)


def layers(shape=(4, 4, 4)):
    c, h, w = shape
    kw = dict(width=8, n_blocks=1)
    return {
        "squeeze": Squeeze(),
        "actnorm": ActNorm(shape),
        "actnorm_per_dim": ActNorm(shape, per_dimension=True),
        "invconv": InvConv1x1(c),
        "affine_channel": Coupling(c, "affine", "channel", **kw),
        "affine_channel_swapped": Coupling(c, "affine", "channel", parity=1, **kw),
        "affine_checkerboard": Coupling(c, "affine", "checkerboard", **kw),
        "spline_channel": Coupling(c, "spline", "channel", n_bins=5, tail_bound=2.0, **kw),
        "spline_checkerboard": Coupling(c, "spline", "checkerboard", parity=1, n_bins=4, tail_bound=2.0, **kw),
        "split": SplitAsLayer(shape),
    }


def whole_flows():
    kw = dict(width=8, n_blocks=1, depth=2)
    return {
        "glow_affine": MultiscaleFlow((1, 4, 4), n_levels=2, **kw),
        "glow_spline": MultiscaleFlow((1, 4, 4), n_levels=2, coupling="spline", n_bins=4, tail_bound=2.0, **kw),
        "realnvp_checkerboard": MultiscaleFlow((1, 4, 4), n_levels=1, mask="checkerboard", **kw),
        "conditional": MultiscaleFlow((1, 4, 4), n_levels=2, n_classes=3, **kw),
    }


def all_bijections():
    out = {name: layer for name, layer in layers().items()}
    for name, flow in whole_flows().items():
        onehot = torch.nn.functional.one_hot(torch.tensor([0, 2, 1]), 3) if flow.n_classes else None
        out[name] = WholeFlow(flow, onehot)
    return out


def inputs(name, dtype, n=3):
    g = torch.Generator().manual_seed(1)
    shape = (n, 1, 4, 4) if name in whole_flows() else (n, 4, 4, 4)
    return (1.5 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def prepared(name, module, dtype):
    module = perturb(module).to(dtype).eval()
    if isinstance(module, WholeFlow) and module.onehot is not None:
        module.onehot = module.onehot.to(dtype)
    return module


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.float64, 1e-10)])
@pytest.mark.parametrize("name", list(all_bijections()))
def test_round_trip(name, dtype, tol):
    module = prepared(name, all_bijections()[name], dtype)
    x = inputs(name, dtype)
    with torch.no_grad():
        y, logdet = module(x)
        back = module.inverse(y)
    assert y.dtype == dtype and logdet.shape == (x.shape[0],)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    assert float((back - x).abs().max()) < tol


@pytest.mark.parametrize("name", list(all_bijections()))
def test_logdet_matches_brute_force_jacobian(name):
    module = prepared(name, all_bijections()[name], torch.float64)
    x = inputs(name, torch.float64, n=3)
    _, logdet = module(x)
    for i in range(x.shape[0]):
        xi = x[i : i + 1]

        def f(flat):
            return (
                module(flat.reshape(xi.shape))[0].flatten()
                if not isinstance(module, WholeFlow)
                else _single(module, flat, xi, i)
            )

        jac = torch.autograd.functional.jacobian(f, xi.flatten())
        sign, ref = torch.linalg.slogdet(jac)
        assert float(sign) != 0
        assert float(logdet[i].detach()) == pytest.approx(float(ref), abs=1e-8), (name, i)


def _single(module, flat, xi, i):
    """The whole flow on one example, with that example's label."""
    onehot = module.onehot[i : i + 1] if module.onehot is not None else None
    eps, _ = module.flow(flat.reshape(xi.shape), onehot)
    return module.flow.flatten(eps).flatten()


def test_logdet_stays_float32_under_bf16_autocast():
    flow = perturb(MultiscaleFlow((1, 4, 4), n_levels=2, depth=2, width=8, coupling="spline", n_bins=4, tail_bound=2.0))
    x = inputs("glow_spline", torch.float32)
    ref = flow.log_prob(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = flow.log_prob(x)
        eps, _ = flow(x)
    assert lp.dtype == torch.float32
    # only the coupling networks run in bf16; the log-density moves by their rounding only
    assert torch.allclose(lp, ref, rtol=0.05, atol=2.0)
    assert all(e.dtype == torch.float32 for e in eps)


# ---------------------------------------------------------------------- spline
def random_spline_params(shape, k, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn((*shape, n), generator=g, dtype=torch.float64) for n in (k, k, k - 1)]


def test_spline_is_monotone_and_matches_its_inverse():
    k, bound = 7, 3.0
    x = torch.linspace(-5, 5, 4001, dtype=torch.float64)
    w, h, d = (p.expand(len(x), -1) for p in random_spline_params((1,), k))
    y, lg = rational_quadratic_spline(x, w, h, d, bound=bound)
    assert bool((torch.diff(y) > 0).all())
    # identity tails, continuous at the boundary, interval mapped onto itself
    out = x.abs() > bound
    assert torch.equal(y[out], x[out]) and bool((lg[out] == 0).all())
    y_end, _ = rational_quadratic_spline(
        torch.tensor([-bound, bound], dtype=torch.float64), w[:2], h[:2], d[:2], bound=bound
    )
    torch.testing.assert_close(y_end, torch.tensor([-bound, bound], dtype=torch.float64))
    # log-derivative against finite differences and against autograd
    xr = x.clone().requires_grad_(True)
    yr, _ = rational_quadratic_spline(xr, w, h, d, bound=bound)
    (grad,) = torch.autograd.grad(yr.sum(), xr)
    torch.testing.assert_close(lg, torch.log(grad), atol=1e-9, rtol=1e-9)
    # inverse
    back, lg_inv = rational_quadratic_spline(y, w, h, d, bound=bound, inverse=True)
    assert float((back - x).abs().max()) < 1e-10
    torch.testing.assert_close(lg_inv, -lg, atol=1e-9, rtol=1e-9)


def test_spline_with_zero_parameters_is_the_identity():
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    z = torch.zeros(101, 6, dtype=torch.float64)
    y, lg = rational_quadratic_spline(x, z, z, z[:, :5], bound=2.0)
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(lg, torch.zeros_like(lg), atol=1e-9, rtol=0)


def test_couplings_start_as_the_identity():
    x = inputs("x", torch.float32)
    for coupling in ("affine", "spline"):
        for mask in ("channel", "checkerboard"):
            y, ld = Coupling(4, coupling, mask, width=8)(x)
            torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
            torch.testing.assert_close(ld, torch.zeros(3), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------- densities
def test_2d_flow_density_integrates_to_one():
    """A small 2-D flow (as (2, 1, 1) "images": ActNorm, 1x1 conv, affine and spline
    couplings, learned Gaussian prior) is a normalised density: trapezoid quadrature on a
    wide grid gives 1."""

    class Flow2D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            kw = dict(width=8, n_blocks=1)
            self.steps = torch.nn.ModuleList(
                [
                    ActNorm((2, 1, 1)),
                    InvConv1x1(2),
                    Coupling(2, "affine", **kw),
                    InvConv1x1(2),
                    Coupling(2, "spline", parity=1, n_bins=5, tail_bound=2.0, **kw),
                ]
            )
            self.mean = torch.nn.Parameter(torch.zeros(1, 2, 1, 1))

        def log_prob(self, x):
            ld = torch.zeros(x.shape[0], dtype=x.dtype)
            for s in self.steps:
                x, d = s(x)
                ld = ld + d
            return standard_normal_log_prob(x - self.mean) + ld

    flow = perturb(Flow2D(), scale=0.15, seed=3).double().eval()
    grid = torch.linspace(-12, 12, 2001, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)[:, :, None, None]
    with torch.no_grad():
        dens = torch.exp(flow.log_prob(pts)).reshape(len(grid), len(grid)).numpy()
    total = np.trapezoid(np.trapezoid(dens, grid.numpy(), axis=1), grid.numpy())
    assert total == pytest.approx(1.0, abs=1e-4)


def test_actnorm_initialises_from_the_first_training_batch_once():
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(256, 3, 4, 4, generator=g)
    an = ActNorm((3, 4, 4))
    y, _ = an(x)
    assert bool(an.initialized)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    before = {k: v.clone() for k, v in an.state_dict().items()}
    an(x * 10)
    for k, v in an.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a fresh layer loading those weights does not initialise again
    fresh = ActNorm((3, 4, 4))
    fresh.load_state_dict(before)
    fresh(x * 10)
    assert torch.equal(fresh.bias, before["bias"])
    # eval mode never initialises
    other = ActNorm((3, 4, 4)).eval()
    other(x)
    assert not bool(other.initialized)


def test_flow_of_actnorm_only_is_a_diagonal_gaussian():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 1, 4, 4, generator=g, dtype=torch.float64) * torch.linspace(
        0.1, 3, 16, dtype=torch.float64
    ).reshape(1, 1, 4, 4)
    flow = MultiscaleFlow((1, 4, 4), n_levels=1, depth=0).double()
    flow.initialize(x)
    lp = flow.log_prob(x)
    mean, var = x.flatten(1).mean(0), x.flatten(1).var(0, unbiased=False)
    ref = (-0.5 * ((x.flatten(1) - mean) ** 2 / var + torch.log(2 * math.pi * var))).sum(1)
    torch.testing.assert_close(lp, ref, atol=1e-9, rtol=1e-12)
