"""The trainer's hooks for adversarial and multi-step families (issue #8 §4): extra batches
within a step, per-optimiser clipping, EMA over a sub-module, the initialisation hook,
selection of the kept weights by a metric or none — and exact resume of a two-optimiser
run with several critic steps per generator step."""

import pytest
import torch
from torch import nn

from genlab import GenlabError
from genlab.training import StopAfterSteps, Trainer, TrainingConfig, epoch_batches, load_latest
from genlab.training.callbacks import Callback

from .test_training import _one_thread, small  # noqa: F401  (fixtures: one thread, 300 labelled digits)


def config(tmp=None, **kw):
    values = dict(epochs=2, batch_size=32, lr=2e-3, warmup_steps=2, val_fraction=0.0, random_state=0)
    if tmp is not None:
        values["checkpoint_dir"] = str(tmp)
    values.update(kw)
    return TrainingConfig(**values)


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def optimizer_tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, opt in trainer.optimizers.items():
        for pid, entry in opt.state_dict()["state"].items():
            for key, value in entry.items():
                out[f"{name}.{pid}.{key}"] = torch.as_tensor(value)
    return out


class TinyGAN(nn.Module):
    """A generator from noise to 8x8 images and a critic; the phase is a keyword argument."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.generator = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64))
        self.critic = nn.Sequential(nn.Linear(64, 32), nn.LeakyReLU(0.2), nn.Dropout(0.1), nn.Linear(32, 1))
        self.grad_clip_per_optimizer = {"critic": 1.0}

    def optimizer_groups(self):
        return {
            "critic": list(self.critic.parameters()),
            "generator": [{"params": self.generator.parameters(), "lr": 1e-3}],
        }

    def ema_module(self):
        return self.generator

    def forward(self, batch, phase="critic"):
        real = batch["images"].flatten(1).float() / 127.5 - 1
        fake = self.generator(torch.randn(len(real), 4))  # the global stream: must be restored on resume
        if phase == "critic":
            loss = self.critic(fake.detach()).mean() - self.critic(real).mean() + 0.1 * (self.critic(real) ** 2).mean()
            return loss, {"critic_real": self.critic(real).mean().detach()}
        return -self.critic(fake).mean(), {}


class CriticSteps(Trainer):
    """n_critic critic steps (the step's batch, then drawn ones) per generator step."""

    n_critic = 3

    def train_step(self, batch):
        self.seen = getattr(self, "seen", [])
        for i in range(self.n_critic):
            critic_batch = batch if i == 0 else self.draw_batch()
            self.seen.append(critic_batch["labels"].clone())
            with self.autocast():
                d_loss, logs = self.model(critic_batch, phase="critic")
            self.optimize(d_loss, "critic")
        with self.autocast():
            g_loss, _ = self.model(batch, phase="generator")
        self.optimize(g_loss, "generator")
        return g_loss.detach(), {**logs, "d_loss": d_loss.detach()}


def test_n_critic_two_optimizer_run_resumes_bit_identically(small, tmp_path):
    kw = dict(epochs=2, ema_decay=0.9, checkpoint_every=4)  # 9 steps/epoch: checkpoints at 4, 8, 9, 12, 16, 18
    straight_net = TinyGAN()
    straight = CriticSteps(config(tmp_path / "a", **kw))
    a = straight.fit(straight_net, small)
    assert a.steps == 18 and a.kept == "ema" and a.selection == "val_loss"
    # the extra batches are full, distinct from the step's batch and from each other
    assert len(straight.seen) == 3 * 18 and all(len(s) == 32 for s in straight.seen)
    assert not torch.equal(straight.seen[0], straight.seen[1]) and not torch.equal(straight.seen[1], straight.seen[2])

    with pytest.raises(KeyboardInterrupt):
        CriticSteps(config(tmp_path / "b", **kw), [StopAfterSteps(15)]).fit(TinyGAN(), small)
    assert load_latest(tmp_path / "b").step == 12  # mid-epoch 2
    torch.manual_seed(4321)  # a new process starts with other random states
    resumed_net = TinyGAN(seed=7)
    resumed = CriticSteps(config(tmp_path / "b", **kw))
    b = resumed.fit(resumed_net, small, resume=True)
    assert states_equal(straight_net.state_dict(), resumed_net.state_dict())
    assert states_equal(straight.ema.state_dict(), resumed.ema.state_dict())
    assert states_equal(optimizer_tensors(straight), optimizer_tensors(resumed))
    assert a.history == b.history
    # the resumed run drew the same extra batches as the straight run's last 6 steps
    assert len(resumed.seen) == 3 * 6 and all(torch.equal(x, y) for x, y in zip(straight.seen[-18:], resumed.seen))


def test_ema_covers_only_the_ema_module(small):
    net = TinyGAN()
    last = {}

    class KeepLast(Callback):
        def on_step_end(self, trainer):
            last.update({k: v.clone() for k, v in trainer.network.critic.state_dict().items()})
            with trainer.evaluation() as evaluated:  # only the generator is swapped
                assert states_equal(evaluated.critic.state_dict(), trainer.network.critic.state_dict())
                assert states_equal(evaluated.generator.state_dict(), trainer.ema.state_dict())

    trainer = CriticSteps(config(epochs=1, ema_decay=0.8), [KeepLast()])
    result = trainer.fit(net, small)
    assert result.kept == "ema"
    assert set(trainer.ema.state_dict()) == set(net.generator.state_dict())
    assert states_equal(net.generator.state_dict(), trainer.ema.state_dict())
    assert states_equal(net.critic.state_dict(), last)  # the critic keeps its last weights


def test_ema_module_must_be_a_submodule(small):
    net = TinyGAN()
    net.ema_module = lambda: nn.Linear(4, 32)
    with pytest.raises(GenlabError, match="sub-module"):
        CriticSteps(config(epochs=1, ema_decay=0.9)).fit(net, small)


class NormRecorder(CriticSteps):
    """Records each optimiser's gradient norm before (returned) and after clipping."""

    n_critic = 1

    def optimize(self, loss, name=None, **kw):
        before = super().optimize(loss, name, **kw)
        grads = [p.grad for p in self._optimizer_params[name] if p.grad is not None]
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        self.norms.setdefault(name, []).append((float(before), float(after)))
        return before


def test_grad_clip_per_optimizer_clips_only_the_named_one(small):
    net = TinyGAN()
    net.grad_clip_per_optimizer = {"critic": 0.05}
    trainer = NormRecorder(config(epochs=1))
    trainer.norms = {}
    trainer.fit(net, small)
    critic, gen = trainer.norms["critic"], trainer.norms["generator"]
    assert any(before > 0.1 for before, _ in critic)  # clipping had something to do
    assert all(after == pytest.approx(min(before, 0.05), rel=1e-4) for before, after in critic)
    assert any(before > 0.05 for before, _ in gen)
    assert all(after == pytest.approx(before, rel=1e-5) for before, after in gen)  # not clipped

    # config.grad_clip applies to the optimisers the network does not name; per call it is overridden
    net = TinyGAN()
    net.grad_clip_per_optimizer = {"critic": None}
    trainer = NormRecorder(config(epochs=1, grad_clip=0.02))
    trainer.norms = {}
    trainer.fit(net, small)
    assert all(after == pytest.approx(before, rel=1e-5) for before, after in trainer.norms["critic"])
    assert all(after == pytest.approx(min(before, 0.02), rel=1e-4) for before, after in trainer.norms["generator"])

    class PerCall(NormRecorder):
        def optimize(self, loss, name=None, **kw):
            return super().optimize(loss, name, grad_clip=0.01 if name == "generator" else None)

    trainer = PerCall(config(epochs=1, grad_clip=0.02))
    trainer.norms = {}
    trainer.fit(TinyGAN(), small)
    assert all(after == pytest.approx(min(before, 0.01), rel=1e-4) for before, after in trainer.norms["generator"])
    assert all(after == pytest.approx(before, rel=1e-5) for before, after in trainer.norms["critic"])


def test_grad_clip_per_optimizer_errors(small):
    net = TinyGAN()
    net.grad_clip_per_optimizer = {"discriminator": 1.0}
    with pytest.raises(GenlabError, match="discriminator"):
        CriticSteps(config(epochs=1)).fit(net, small)
    net.grad_clip_per_optimizer = {"critic": -1.0}
    with pytest.raises(GenlabError, match=r"grad_clip_per_optimizer\['critic'\]"):
        CriticSteps(config(epochs=1)).fit(net, small)


class ActNormLike(nn.Module):
    """Data-dependent initialisation: the bias starts at minus the first batch's mean."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(64, 64)
        self.calls = []

    def initialize(self, batch):
        x = batch["images"].flatten(1).float() / 255
        self.calls.append(
            {
                "grad": torch.is_grad_enabled(),
                "labels": batch["labels"].clone(),
                "weight": self.lin.weight.detach().clone(),
            }
        )
        self.lin.bias.copy_(-self.lin(x).mean(0) + self.lin.bias)

    def forward(self, batch):
        x = batch["images"].flatten(1).float() / 255
        y = self.lin(x) + 0.01 * torch.randn_like(x)
        return ((y - x) ** 2).mean(), {}


def test_initialize_runs_once_on_a_fresh_run_and_never_on_resume(small, tmp_path):
    kw = dict(epochs=2, checkpoint_every=4, ema_decay=0.9)
    straight = ActNormLike()
    initial_weight = straight.lin.weight.detach().clone()
    trainer = Trainer(config(tmp_path / "a", **kw))
    trainer.fit(straight, small)
    assert len(straight.calls) == 1
    call = straight.calls[0]
    first = next(epoch_batches(small, seed=0, epoch=0, batch_size=32))
    assert call["grad"] is False and torch.equal(call["labels"], first["labels"])  # the first training batch
    assert torch.equal(call["weight"], initial_weight)  # before any step

    interrupted = ActNormLike()
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(tmp_path / "b", **kw), [StopAfterSteps(6)]).fit(interrupted, small)
    assert len(interrupted.calls) == 1
    resumed = ActNormLike()
    Trainer(config(tmp_path / "b", **kw)).fit(resumed, small, resume=True)
    assert resumed.calls == []  # the checkpoint already holds the initialised weights
    assert states_equal(straight.state_dict(), resumed.state_dict())


class DriftsPastATarget(nn.Module):
    """Training pushes w down by a constant gradient; the selection metric |w - 0.5| is best
    in the middle of the run (not at its end)."""

    selection = "metric"

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.metric_calls = []

    def forward(self, batch):
        return self.w * 1.0, {}

    def selection_metric(self, trainer):
        self.metric_calls.append((trainer.state.step, self.training, torch.is_grad_enabled()))
        return abs(float(self.w) - 0.5)


def test_selection_by_metric_keeps_the_lowest(small, tmp_path):
    # SGD with momentum 0.9 on a constant gradient 1: w after k steps is known in closed form
    cfg = config(tmp_path, epochs=12, batch_size=100, optimizer="sgd", lr=0.02, warmup_steps=0, lr_schedule="constant")
    net = DriftsPastATarget()
    result = Trainer(cfg).fit(net, small)

    def w_after(k):
        return 1 - 0.02 * sum((1 - 0.9 ** (j + 1)) / 0.1 for j in range(k))

    per_epoch = [abs(w_after(3 * e) - 0.5) for e in range(1, 13)]
    best = min(range(12), key=per_epoch.__getitem__)
    assert 0 < best < 11  # the best is neither the first nor the last epoch
    assert result.kept == "best" and result.selection == "metric" and result.best_step == 3 * (best + 1)
    assert result.best_val_loss is None and result.best_score == pytest.approx(per_epoch[best], abs=1e-6)
    assert net.w.item() == pytest.approx(w_after(3 * (best + 1)), abs=1e-6)
    assert [h["selection_metric"] for h in result.history] == pytest.approx(per_epoch, rel=1e-6, abs=1e-6)  # float32 w
    assert all(not training and not grad for _, training, grad in net.metric_calls)  # eval mode, no grad
    assert [s for s, _, _ in net.metric_calls] == [3 * e for e in range(1, 13)]
    assert load_latest(tmp_path).best_tensors["w"].item() == pytest.approx(net.w.item())


def test_patience_counts_epochs_without_a_better_metric(small):
    net = DriftsPastATarget()
    cfg = config(
        epochs=50,
        batch_size=100,
        optimizer="sgd",
        lr=0.02,
        warmup_steps=0,
        lr_schedule="constant",
        patience=2,
        val_fraction=0.1,
    )
    result = Trainer(cfg).fit(net, small)
    best_epoch = result.best_step // 2  # 270 training images: 2 steps per epoch
    assert result.stopped_early and result.epochs == best_epoch + 2
    assert "val_loss" in result.history[0]  # the validation loss is still reported


class KeepsLast(DriftsPastATarget):
    selection = "last"


def test_selection_last_keeps_the_last_or_ema_weights(small):
    net = KeepsLast()
    cfg = config(
        epochs=3, batch_size=100, optimizer="sgd", lr=0.02, warmup_steps=0, lr_schedule="constant", val_fraction=0.1
    )
    result = Trainer(cfg).fit(net, small)
    assert result.kept == "last" and result.best_step is None and net.metric_calls == []
    assert all("val_loss" in h for h in result.history)
    assert net.w.item() == pytest.approx(1 - 0.02 * sum((1 - 0.9 ** (j + 1)) / 0.1 for j in range(6)), abs=1e-6)

    net = KeepsLast()
    trainer = Trainer(config(epochs=3, batch_size=100, ema_decay=0.5, val_fraction=0.1))
    result = trainer.fit(net, small)
    assert result.kept == "ema" and net.w.item() == trainer.ema.state_dict()["w"].item()


def test_selection_errors(small):
    net = KeepsLast()
    with pytest.raises(GenlabError, match="patience"):
        Trainer(config(patience=2, val_fraction=0.1)).fit(net, small)
    net.selection = "fid"
    with pytest.raises(GenlabError, match="selection='fid'"):
        Trainer(config()).fit(net, small)
    plain = ActNormLike()
    plain.selection = "metric"
    with pytest.raises(GenlabError, match="selection_metric"):
        Trainer(config()).fit(plain, small)


# ---------------------------------------------------------------------- no host sync per step (issue #11)
class Linear64(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(64, 64)

    def forward(self, batch):
        x = batch["images"].flatten(1).float() / 255
        loss = ((self.lin(x) - x) ** 2).mean()
        return loss, {"mse": loss.detach(), "constant": 1.0}


def _host_reads(small, steps, monkeypatch):
    """Device-to-host reads during a fit of ``steps`` steps inside one epoch: ``item``-style
    (seen by the profiler as aten::_local_scalar_dense) plus ``tolist``/``numpy`` calls."""
    calls = {"tolist": 0}
    original = torch.Tensor.tolist

    def counting_tolist(self):
        calls["tolist"] += 1
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    # SGD: Adam's CPU kernels read their CPU-resident step counter as a scalar (aten::item),
    # which is no device sync but would hide the trainer's own reads in the count
    cfg = config(
        epochs=None, max_steps=steps, batch_size=8, optimizer="sgd", ema_decay=0.9, grad_clip=1.0, log_every=1000
    )
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        Trainer(cfg).fit(Linear64(), small)
    monkeypatch.undo()
    scalar_reads = sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")
    return scalar_reads, calls["tolist"]


def test_no_host_sync_per_step(small, monkeypatch):
    """Reads of device values happen at log rows, epoch ends and checkpoints — not per step:
    10 and 30 steps of one epoch (37 steps) read the same number of times."""
    few, many = _host_reads(small, 10, monkeypatch), _host_reads(small, 30, monkeypatch)
    assert few == many
    assert many[1] <= 8  # step 1's log row, the end: a handful in all


def test_the_training_package_has_no_import_cycle():
    """Every import inside genlab.training (TYPE_CHECKING ones included) goes one way."""
    import ast
    from pathlib import Path

    import genlab.training

    folder = Path(genlab.training.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.add(node.module.split(".")[0] if node.module else "")
                deps.update(a.name for a in node.names if node.module is None)
        graph[path.stem] = {d for d in deps if (folder / f"{d}.py").is_file()}

    def visit(module, trail):
        assert module not in trail, f"import cycle: {' -> '.join(trail + [module])}"
        for dep in graph[module]:
            visit(dep, trail + [module])

    for module in graph:
        visit(module, [])
    assert "trainer" not in graph["callbacks"] and "state" in graph["callbacks"]


class NaNThenCrash(Linear64):
    """A NaN loss at call 3; at call 5 the forward raises, as e.g. torch.distributions does on
    NaN parameters: the error must name the non-finite step, not the later crash."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, batch):
        loss, logs = super().forward(batch)
        self.calls += 1
        if self.calls == 3:
            loss = loss * float("nan")
        if self.calls == 5:
            raise ValueError("Expected parameter loc to satisfy the constraint Real()")
        return loss, logs


def test_nan_guard_explains_a_later_crash(small):
    from genlab.training import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"step 3 \(epoch 1\): non-finite loss") as info:
        Trainer(config(epochs=None, max_steps=20, batch_size=8, log_every=100)).fit(NaNThenCrash(), small)
    assert info.value.step == 3 and isinstance(info.value.__cause__, ValueError)
