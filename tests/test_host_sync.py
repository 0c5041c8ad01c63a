"""No host synchronisation per training step in any neural family's quick preset (issue #11):
on a GPU every read of a device value (``item``, ``bool``/``float`` of a tensor, ``nonzero``,
``tolist``, ``numpy``) stalls the loop until the device catches up. Counted on the CPU inside
the trainer's loop, at the dispatcher (reads from torch's own Python code too) and at the
Python methods that leave no dispatcher trace on CPU tensors: 3 and 8 steps of one epoch must
read equally often (log rows come at step 1 and at the end only)."""

import warnings
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import genlab
from genlab.models.registry import get_model_class, list_models
from genlab.training import Trainer

#: ops that read a device value on the host (a sync on CUDA)
HOST_READ_OPS = {"_local_scalar_dense", "nonzero", "is_nonzero", "equal", "masked_select", "unique_consecutive"}
#: the smallest networks of each family (the step's code path does not depend on the width)
TINY = {
    "diffusion": {"width": 4},
    "flow-matching": {"width": 4},
    "vae": {"width": 8, "latent_dim": 2, "latent_components": 2},
    "wae": {"width": 8, "latent_dim": 2},
}
NEURAL = [name for name in list_models() if "checkpoint_dir" in get_model_class(name)().get_params()]


class _Reads(TorchDispatchMode):
    def __init__(self, counts: Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in HOST_READ_OPS:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def _loop_reads(name: str, steps: int, digits, monkeypatch) -> Counter:
    """Host reads inside the trainer's loop (not the family's set-up or post-training work)."""
    counts: Counter = Counter()
    inside = [False]
    loop = Trainer._loop

    def counted_loop(self):
        inside[0] = True
        try:
            with _Reads(counts):
                return loop(self)
        finally:
            inside[0] = False

    monkeypatch.setattr(Trainer, "_loop", counted_loop)
    for method in ("tolist", "numpy", "item"):
        original = getattr(torch.Tensor, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            if inside[0]:
                counts[_method] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    model = genlab.make_model(
        name,
        preset="quick",
        max_steps=steps,
        epochs=None,
        batch_size=4,
        val_fraction=0.0,
        device="cpu",
        **TINY.get(name, {}),
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(digits.images[:100], digits.labels[:100])
    finally:
        monkeypatch.undo()
    return counts


@pytest.mark.parametrize("name", NEURAL)
def test_no_host_read_per_training_step(name, digits, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        few, many = _loop_reads(name, 3, digits, monkeypatch), _loop_reads(name, 8, digits, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert few == many, f"{name}: host reads grow with the steps: 3 steps {dict(few)}, 8 steps {dict(many)}"
