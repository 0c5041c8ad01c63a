"""Results promised exact to float32 rounding (KDE, Gaussian and mixture densities) never
use TF32 (CUDA) or bfloat16 (CPU) matrix products, whatever the caller allowed.

CI has no GPU, so what is checked is the guard itself: every matrix product these models
run sees "highest"/IEEE float32 precision on every backend, and the caller's settings come
back afterwards, whichever of torch's two APIs set them.
"""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import genlab
from genlab.device import full_precision_matmul

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "addmv", "mv", "dot", "_euclidean_dist"}  # cdist: its GEMM path
BACKENDS = [
    m
    for m in (torch.backends.cuda.matmul, getattr(torch.backends.mkldnn, "matmul", None))
    if m is not None and hasattr(m, "fp32_precision")
]


def _settings() -> tuple:
    """Every float32 matmul setting torch has, readable in any state ("mixed" where torch refuses)."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:
        legacy = "mixed"
    return (legacy, *(m.fp32_precision for m in BACKENDS))


FULL = ("highest", *("ieee" for _ in BACKENDS))


class MatmulSpy(TorchDispatchMode):
    """Records the matmul settings in force at every matrix product."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in MATMULS:
            self.seen.append((name, _settings()))
        return func(*args, **(kwargs or {}))


def _legacy_high():
    torch.set_float32_matmul_precision("high")


def _legacy_allow_tf32():
    torch.backends.cuda.matmul.allow_tf32 = True


def _new_api_reduced():
    for m in BACKENDS:
        m.fp32_precision = "tf32" if m is torch.backends.cuda.matmul else "bf16"


REDUCED = [_legacy_high, _legacy_allow_tf32, _new_api_reduced]


@pytest.fixture
def restore_matmul_settings():
    """Put torch's global matmul settings back exactly as they were."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:
        legacy = None
    backends = [m.fp32_precision for m in BACKENDS]
    yield
    if legacy is not None:
        torch.set_float32_matmul_precision(legacy)
    for m, value in zip(BACKENDS, backends):
        m.fp32_precision = value


@pytest.mark.parametrize("allow", REDUCED, ids=lambda f: f.__name__.strip("_"))
def test_the_guard_pins_full_precision_and_restores_the_callers_settings(allow, restore_matmul_settings):
    allow()
    before = _settings()
    assert before != FULL
    with full_precision_matmul():
        assert _settings() == FULL
        assert not torch.backends.cuda.matmul.allow_tf32  # readable: the legacy and new APIs agree inside
        with full_precision_matmul():  # nested: the outer block stays pinned
            pass
        assert _settings() == FULL
    assert _settings() == before
    with pytest.raises(ValueError), full_precision_matmul():
        raise ValueError("restored on errors too")
    assert _settings() == before


@pytest.mark.parametrize("allow", REDUCED, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(
    "name, params",
    [
        ("kde", {"bandwidth": "cv", "bandwidth_grid": [0.05, 0.1], "cv": 2}),
        ("gmm", {"n_components": 3, "covariance_type": "full", "max_iter": 3}),
        ("gmm", {"n_components": 3, "covariance_type": "diag", "max_iter": 3}),
        ("gaussian", {"covariance_type": "full"}),
    ],
)
def test_exact_models_fit_and_score_in_full_precision(digits_split, allow, name, params, restore_matmul_settings):
    train, test = digits_split
    model = genlab.make_model(name, device="cpu", **params)
    reference = model.fit(train.images[:200]).score_samples(test.images[:50])
    allow()
    before = _settings()
    with MatmulSpy() as spy:
        model.fit(train.images[:200])
        got = model.score_samples(test.images[:50])
    assert spy.seen, "the spy saw no matrix product"
    reduced = [(op, s) for op, s in spy.seen if s != FULL]
    assert not reduced, f"matrix products outside full precision: {reduced[:3]}"
    assert _settings() == before
    np.testing.assert_array_equal(got, reference)
