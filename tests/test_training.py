"""The trainer: schedule and EMA math, overfitting, exact resume, NaN guard, crash-safe
checkpoints, early stopping, logging, the multi-optimiser hook and DDP on CPU."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genlab import GenlabError
from genlab.likelihood import dequantize
from genlab.training import (
    EMA,
    CheckpointStore,
    StopAfterSteps,
    Trainer,
    TrainingConfig,
    TrainingDiverged,
    epoch_batches,
    load_latest,
    lr_factor,
    read_metrics,
    split_train_val,
)
from genlab.training import checkpoint as checkpoint_module

from .markers import DEVICES


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks: one thread is faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small(digits):
    """300 labelled 8x8 digits as the trainer's data dict."""
    return {"images": digits.images[:300], "labels": digits.labels[:300]}


class TinyAutoencoder(nn.Module):
    """Conv + BatchNorm + dropout + noisy dequantisation: every source of randomness and
    every kind of state (buffers, EMA) a resume has to restore."""

    def __init__(self, bottleneck: int = 16):
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Flatten(),
            nn.Linear(256, bottleneck),
        )
        self.decode = nn.Sequential(nn.ReLU(), nn.Linear(bottleneck, 64))

    def forward(self, batch):
        x = dequantize(batch["images"]).to(
            next(self.parameters()).device
        )  # torch's global generator: noise differs per step
        recon = torch.sigmoid(self.decode(self.encode(x))).view_as(x)
        loss = ((recon - x) ** 2).mean()
        return loss, {"mse": loss.detach(), "mean_pixel": recon.mean().detach()}


def make_net(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyAutoencoder(**kw)


def config(tmp=None, **kw):
    # the CPU unless a test says otherwise: under the default "auto" a GPU machine would train on
    # CUDA (bfloat16 autocast) and the comparisons with CPU tensors below would mix devices
    values = dict(epochs=3, batch_size=32, lr=3e-3, warmup_steps=3, val_fraction=0.1, random_state=0, device="cpu")
    if tmp is not None:
        values["checkpoint_dir"] = str(tmp)
    values.update(kw)
    return TrainingConfig(**values)


def weights_equal(a: nn.Module, b: nn.Module) -> bool:
    """Bitwise equal state dicts, wherever each module lives."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


# ---------------------------------------------------------------------- schedule, EMA, config
def test_warmup_cosine_schedule_values():
    w, total = 10, 110
    assert [lr_factor(s, warmup_steps=w, total_steps=total) for s in range(w)] == pytest.approx(
        [(s + 1) / 10 for s in range(w)]
    )
    for s in (10, 35, 60, 85, 109):
        expected = 0.5 * (1 + math.cos(math.pi * (s - 10) / 100))
        assert lr_factor(s, warmup_steps=w, total_steps=total) == pytest.approx(expected, abs=1e-15)
    assert lr_factor(60, warmup_steps=w, total_steps=total) == pytest.approx(0.5)
    assert lr_factor(60, warmup_steps=w, total_steps=total, min_lr_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(500, warmup_steps=w, total_steps=total) == pytest.approx(0.0)
    assert lr_factor(50, warmup_steps=w, total_steps=total, schedule="constant") == 1.0
    assert lr_factor(0, warmup_steps=0, total_steps=total) == 1.0


def test_trainer_applies_the_schedule(small, tmp_path):
    result = Trainer(config(tmp_path, epochs=2, warmup_steps=4, log_every=1)).fit(make_net(), small)
    rows = [r for r in read_metrics(tmp_path) if r["kind"] == "step"]
    total = result.steps
    assert total == 2 * (270 // 32)
    for r in rows:
        s = int(r["step"]) - 1  # the row logs the rate used for that step
        assert float(r["lr"]) == pytest.approx(3e-3 * lr_factor(s, warmup_steps=4, total_steps=total), rel=1e-5)


def test_ema_update_matches_hand_computation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.9)
    expected = {k: v.double().clone() for k, v in net.state_dict().items()}
    params = {name for name, _ in net.named_parameters()}
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(5, 3))  # changes the BatchNorm running statistics
        ema.update(net)
        for k, v in net.state_dict().items():
            expected[k] = 0.9 * expected[k] + 0.1 * v.double() if k in params else v.double()
    for k, v in ema.state_dict().items():
        np.testing.assert_allclose(v.double().numpy(), expected[k].numpy(), rtol=1e-6, atol=1e-7)
    # with the step, the decay warms up: (1 + t) / (10 + t) until it reaches the set decay
    assert [EMA(net, 0.999).decay_at(t) for t in (0, 8, 10_000)] == [0.1, 0.5, 0.999]
    weights = net[0].weight.detach().clone()
    fresh = EMA(net, decay=0.999)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    fresh.update(net, step=0)  # decay 0.1: the shadow moves 90% of the way
    np.testing.assert_allclose(fresh.state_dict()["0.weight"].numpy(), (weights + 0.9).numpy(), rtol=1e-6)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.applied_to(net):
        assert torch.equal(net[0].weight, ema.state_dict()["0.weight"])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"epochs": None, "max_steps": None}, "epochs or max_steps"),
        ({"lr": 0.0}, "lr=0.0"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"patience": 2, "val_fraction": 0.0}, "patience"),
        ({"checkpoint_every": 5}, "checkpoint_every needs checkpoint_dir"),
        ({"precision": "fp16"}, "precision='fp16'"),
        ({"batch_size": 0}, "batch_size=0"),
    ],
)
def test_config_errors_name_the_argument(kw, match):
    with pytest.raises(GenlabError, match=match):
        TrainingConfig(**kw).validate()


# ---------------------------------------------------------------------- data order
def test_batches_are_seeded_resumable_and_shard_across_ranks(small):
    def ids(start=0, rank=0, world=1, seed=0, epoch=0):
        return [
            b["labels"].tolist()
            for b in epoch_batches(
                small, seed=seed, epoch=epoch, batch_size=32, start_batch=start, rank=rank, world_size=world
            )
        ]

    full = ids()
    assert len(full) == 300 // 32 and all(len(b) == 32 for b in full)
    assert ids() == full and ids(epoch=1) != full and ids(seed=1) != full
    assert ids(start=4) == full[4:]  # resuming mid-epoch continues the same order
    images = torch.cat([b["images"] for b in epoch_batches(small, seed=0, epoch=0, batch_size=32)])
    r0 = list(epoch_batches(small, seed=0, epoch=0, batch_size=32, rank=0, world_size=2))
    r1 = list(epoch_batches(small, seed=0, epoch=0, batch_size=32, rank=1, world_size=2))
    assert len(r0) == len(r1) == len(full)
    assert all(len(a["images"]) == len(b["images"]) == 16 for a, b in zip(r0, r1))
    merged = torch.cat([torch.cat([a["images"], b["images"]]) for a, b in zip(r0, r1)])
    assert sorted(map(bytes, merged.flatten(1).numpy())) == sorted(map(bytes, images.flatten(1).numpy()))
    train, val = split_train_val(small, 0.1, seed=0)
    train2, val2 = split_train_val(small, 0.1, seed=0)
    assert len(val["images"]) == 30 and len(train["images"]) == 270
    assert torch.equal(val["images"], val2["images"]) and torch.equal(train["labels"], train2["labels"])


# ---------------------------------------------------------------------- training
def test_overfits_one_batch(digits):
    batch = {"images": digits.images[:16]}
    net = make_net(bottleneck=32)
    cfg = TrainingConfig(max_steps=300, epochs=None, batch_size=16, lr=5e-3, warmup_steps=10, val_fraction=0.0)
    with torch.no_grad():
        start = net(batch)[0].item()
    result = Trainer(cfg).fit(net, batch)
    net.train()
    with torch.no_grad():
        end = net(batch)[0].item()
    assert result.steps == 300 and result.kept == "last"
    assert end < 0.1 * start


def test_resume_is_bit_identical(small, tmp_path):
    """2N steps straight vs N steps, a simulated kill, fresh objects and a resume."""
    kw = dict(epochs=3, ema_decay=0.9, checkpoint_every=5, num_workers=1)
    straight = make_net()
    a = Trainer(config(tmp_path / "a", **kw)).fit(straight, small)
    first = make_net()
    with pytest.raises(KeyboardInterrupt):
        Trainer(config(tmp_path / "b", **kw), [StopAfterSteps(12)]).fit(
            first, small
        )  # last checkpoint: step 10, mid-epoch
    assert load_latest(tmp_path / "b").step == 10
    torch.manual_seed(12345)  # a new process would start with other random states
    resumed = make_net(seed=999)
    b = Trainer(config(tmp_path / "b", **kw)).fit(resumed, small, resume=True)
    assert weights_equal(straight, resumed)
    assert a.history == b.history and a.best_step == b.best_step and a.steps == b.steps == 3 * 8
    assert [r["step"] for r in read_metrics(tmp_path / "b")] == [r["step"] for r in read_metrics(tmp_path / "a")]


def test_resume_of_a_finished_run_changes_nothing(small, tmp_path):
    net = make_net()
    Trainer(config(tmp_path, epochs=2)).fit(net, small)
    again = make_net(seed=5)
    result = Trainer(config(tmp_path, epochs=2)).fit(again, small, resume=True)
    assert weights_equal(net, again) and result.steps == 16


def test_resume_errors(small, tmp_path):
    with pytest.raises(GenlabError, match="needs checkpoint_dir"):
        Trainer(config()).fit(make_net(), small, resume=True)
    with pytest.raises(GenlabError, match="no checkpoint to resume"):
        Trainer(config(tmp_path)).fit(make_net(), small, resume=True)
    Trainer(config(tmp_path, epochs=1)).fit(make_net(), small)
    with pytest.raises(GenlabError, match="different data"):
        Trainer(config(tmp_path, epochs=2)).fit(make_net(), {"images": small["images"][:200]}, resume=True)
    with pytest.raises(GenlabError, match="different network"):
        Trainer(config(tmp_path, epochs=2)).fit(make_net(bottleneck=8), small, resume=True)


class NaNAt(nn.Module):
    """Trains normally, then returns a NaN loss (or NaN gradient) at step ``at``."""

    def __init__(self, at: int, where: str = "loss"):
        super().__init__()
        self.lin = nn.Linear(64, 64)
        self.at, self.where, self.calls = at, where, 0

    def forward(self, batch):
        x = batch["images"].flatten(1).float() / 255
        loss = ((self.lin(x) - x) ** 2).mean()
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                if self.where == "loss":
                    loss = loss * float("nan")
                else:  # a finite loss whose gradient is NaN (d sqrt(s)/ds at 0 is infinite, times 0)
                    loss = loss + (self.lin.bias.sum() * 0).sqrt()
        return loss, {}


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(small, tmp_path, where):
    net = NaNAt(13, where)
    cfg = config(tmp_path, epochs=5, checkpoint_every=5, val_fraction=0.0, batch_size=32)
    with pytest.raises(
        TrainingDiverged, match=rf"step 13 \(epoch 2\): non-finite {where}.*lr.*grad_clip.*step 10"
    ) as info:
        Trainer(cfg).fit(net, small)
    assert info.value.step == 13 and isinstance(info.value, GenlabError)
    last = load_latest(tmp_path)
    assert last.step == 10
    assert all(torch.isfinite(t).all() for k, t in last.tensors.items() if k.startswith("network."))
    good = NaNAt(10**9)
    Trainer(config(tmp_path, epochs=2, checkpoint_every=5, val_fraction=0.0)).fit(good, small, resume=True)
    assert all(torch.isfinite(p).all() for p in good.parameters())


def test_nan_guard_without_checkpoints_says_so(small):
    with pytest.raises(TrainingDiverged, match="step 2 .*no checkpoint was written"):
        Trainer(config(val_fraction=0.0)).fit(NaNAt(2), small)


# ---------------------------------------------------------------------- checkpoints
def test_checkpoint_survives_a_crash_between_files(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    t1 = {"w": torch.ones(3)}
    store.save(1, t1, {"epoch": 0}, best_step=1, best_tensors={"w": torch.zeros(3)})
    store.save(2, {"w": torch.full((3,), 2.0)}, {"epoch": 0}, best_step=1, best_tensors={"w": torch.zeros(3)})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed after the tensor file, before the commit")

    monkeypatch.setattr(checkpoint_module, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        store.save(
            3, {"w": torch.full((3,), 3.0)}, {"epoch": 1}, best_step=3, best_tensors={"w": torch.full((3,), 3.0)}
        )
    monkeypatch.undo()
    orphans = sorted(p.name for p in tmp_path.glob("*-000000003-*.safetensors"))
    assert len(orphans) == 2  # new train + best tensors exist, but were never committed
    latest = load_latest(tmp_path)
    assert latest.step == 2 and torch.equal(latest.tensors["w"], torch.full((3,), 2.0))
    assert torch.equal(latest.best_tensors["w"], torch.zeros(3)) and latest.record["best"]["step"] == 1

    # the next successful save prunes the orphans and the oldest commit
    store.save(4, {"w": torch.full((3,), 4.0)}, {"epoch": 2}, best_step=1, best_tensors={"w": torch.zeros(3)})
    assert not list(tmp_path.glob("*-000000003-*"))
    assert len(list(tmp_path.glob("checkpoint-*.json"))) == 2
    assert load_latest(tmp_path).step == 4 and len(list(tmp_path.glob("best-*"))) == 1


KILL_ME = """
import sys, torch
from torch import nn
from genlab.training import Trainer, TrainingConfig
torch.set_num_threads(1)
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = net
    def forward(self, batch):
        x = batch["images"].flatten(1).float() / 255
        return ((self.body(x) - x) ** 2).mean(), {}
images = torch.randint(0, 256, (256, 1, 8, 8), dtype=torch.uint8)
cfg = TrainingConfig(epochs=None, max_steps=10**7, batch_size=8, val_fraction=0.0, ema_decay=0.9, checkpoint_dir=sys.argv[1], checkpoint_every=1)
Trainer(cfg).fit(Net(), {"images": images})
"""


def test_a_killed_process_leaves_a_loadable_checkpoint(tmp_path):
    """SIGKILL a training process that checkpoints every step, at an arbitrary moment."""
    import signal
    import time

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_ME, str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            commits = sorted(tmp_path.glob("checkpoint-*.json"))
            if commits and int(commits[-1].name[11:19]) >= 25:  # sequence numbers: 25 commits written
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.0123)  # somewhere inside a later write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    ckpt = load_latest(tmp_path)
    assert ckpt is not None and ckpt.step >= 25
    assert ckpt.section("network").keys() == ckpt.section("ema").keys() and ckpt.section("network")
    assert int(ckpt.record["state"]["step"]) == ckpt.step


@pytest.mark.parametrize(
    "damage", ["truncated tensors", "foreign tensor file", "missing tensor file", "garbled commit"]
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    store = CheckpointStore(tmp_path)
    store.save(1, {"w": torch.ones(3)}, {"epoch": 0})
    commit = store.save(2, {"w": torch.full((3,), 2.0)}, {"epoch": 0})
    rec = json.loads(commit.read_text())
    tensor_file = tmp_path / rec["train"]["file"]
    if damage == "truncated tensors":
        tensor_file.write_bytes(tensor_file.read_bytes()[:20])
    elif damage == "foreign tensor file":  # e.g. left by another run: its write id differs
        rec["train"]["write_id"] = "0" * 32
        commit.write_text(json.dumps(rec))
    elif damage == "missing tensor file":
        tensor_file.unlink()
    else:
        commit.write_text("{not json")
    latest = load_latest(tmp_path)
    assert latest.step == 1 and torch.equal(latest.tensors["w"], torch.ones(3))


def test_checkpoint_holds_the_full_training_state(small, tmp_path):
    Trainer(config(tmp_path, epochs=1, ema_decay=0.99, checkpoint_every=3)).fit(make_net(), small)
    ckpt = load_latest(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert sum(f.startswith("checkpoint-") for f in files) == 2 and "metrics.csv" in files
    keys = set(ckpt.tensors)
    assert any(k.startswith("network.encode.1.running_mean") for k in keys)
    assert any(k.startswith("ema.") for k in keys)
    assert any(k.startswith("optimizer.main.") and k.endswith("exp_avg_sq") for k in keys)
    assert "rng.torch.0" in keys
    rec = ckpt.record
    assert rec["step"] == 8 and rec["epoch"] == 1 and rec["batch_in_epoch"] == 0
    assert rec["config"]["lr"] == 3e-3 and rec["state"]["best_step"] == 8 and rec["best"]["step"] == 8
    assert len(rec["rng"][0]["numpy"][1]) == 624 and len(rec["rng"][0]["python"][1]) == 625


# ---------------------------------------------------------------------- validation, early stopping
class OverfitsOnSchedule(nn.Module):
    """Training always pushes w down by lr; the validation loss is w**2, so it is best
    when w is nearest 0 and worsens afterwards: early stopping must keep that w."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))

    def forward(self, batch):
        if self.training:
            return self.w * 1.0, {}
        return self.w**2, {}


def test_early_stopping_restores_the_best_weights(small, tmp_path):
    # 270 training images, batch 90 -> 3 steps/epoch; SGD lr 0.05 with momentum 0.9 on a
    # constant gradient 1: w after k steps = 1 - 0.05 * sum_{j<k} (1 - 0.9**(j+1)) / 0.1
    cfg = config(
        tmp_path, epochs=50, batch_size=90, optimizer="sgd", lr=0.05, warmup_steps=0, lr_schedule="constant", patience=3
    )
    net = OverfitsOnSchedule()
    result = Trainer(cfg).fit(net, small)

    def w_after(k):
        return 1 - 0.05 * sum((1 - 0.9 ** (j + 1)) / 0.1 for j in range(k))

    per_epoch = [w_after(3 * e) ** 2 for e in range(1, 51)]
    best_epoch = int(np.argmin(per_epoch)) + 1
    assert result.stopped_early and result.epochs == best_epoch + 3
    assert result.best_step == 3 * best_epoch and result.kept == "best"
    assert net.w.item() == pytest.approx(w_after(3 * best_epoch), abs=1e-5)
    assert [h["val_loss"] for h in result.history] == pytest.approx(per_epoch[: result.epochs], abs=1e-5)
    assert load_latest(tmp_path).best_tensors["w"].item() == pytest.approx(net.w.item())


@pytest.mark.parametrize("device", DEVICES)
def test_without_validation_the_ema_weights_are_kept(small, device):
    net = make_net()
    trainer = Trainer(config(epochs=1, val_fraction=0.0, ema_decay=0.5, device=device))
    result = trainer.fit(net, small)
    assert result.kept == "ema" and result.best_val_loss is None
    assert weights_equal(net, _module_from(trainer.ema.state_dict()))


def _module_from(state):
    m = make_net()
    m.load_state_dict(state)
    return m


# ---------------------------------------------------------------------- logging
def test_metrics_csv_has_step_and_epoch_rows(small, tmp_path):
    Trainer(config(tmp_path, epochs=2, log_every=4)).fit(make_net(), small)
    rows = read_metrics(tmp_path)
    header = list(rows[0])
    assert header[:8] == ["kind", "step", "epoch", "lr", "train_loss", "val_loss", "images_per_s", "elapsed_s"]
    assert {"train_mse", "train_mean_pixel", "val_mse", "val_mean_pixel"} <= set(header)
    epochs = [r for r in rows if r["kind"] == "epoch"]
    steps = [r for r in rows if r["kind"] == "step"]
    assert [int(r["step"]) for r in epochs] == [8, 16] and all(float(r["val_loss"]) > 0 for r in epochs)
    assert [int(r["step"]) for r in steps] == [1, 4, 8, 12, 16]
    assert all(float(r["images_per_s"]) > 0 and float(r["train_loss"]) > 0 for r in rows)
    assert float(epochs[0]["val_mse"]) == pytest.approx(float(epochs[0]["val_loss"]))


def test_sample_grid_callback_and_compile_hook(small, tmp_path, monkeypatch):
    from genlab.training import SampleGridCallback

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(m) or m)
    net = make_net()
    grids = SampleGridCallback(lambda: (torch.rand(6, 1, 8, 8) * 255).to(torch.uint8), every=2, directory=tmp_path)
    Trainer(config(tmp_path, epochs=4, compile=True), [grids]).fit(net, small)
    assert compiled == [net]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["epoch-0002.png", "epoch-0004.png"]


# ---------------------------------------------------------------------- multi-optimiser hook
class TwoPart(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 8)
        self.b = nn.Linear(8, 64)

    def optimizer_groups(self):
        return {"first": [{"params": self.a.parameters(), "lr": 1e-2}], "second": list(self.b.parameters())}

    def forward(self, batch, phase="first"):
        assert "phase" not in batch  # the phase is a keyword argument, never a batch field
        x = batch["images"].flatten(1).float() / 255
        loss = ((self.b(self.a(x)) - x) ** 2).mean()
        return loss, {"phase": 1.0 if phase == "second" else 0.0}


class AlternatingTrainer(Trainer):
    def train_step(self, batch):
        with self.autocast():
            loss_a, logs = self.model(batch)
        self.optimize(loss_a, "first")
        with self.autocast():
            loss_b, logs_b = self.model(batch, phase="second")
        self.optimize(loss_b, "second")
        return loss_b.detach(), {"first_loss": loss_a.detach(), **logs_b}


@pytest.mark.parametrize("device", DEVICES)
def test_multi_optimizer_hook_and_its_resume(small, tmp_path, device):
    cfg = dict(
        epochs=2, lr=1e-3, warmup_steps=0, lr_schedule="constant", checkpoint_every=3, val_fraction=0.0, device=device
    )
    straight = TwoPart()
    before = {k: v.clone() for k, v in straight.state_dict().items()}
    trainer = AlternatingTrainer(config(tmp_path / "a", **cfg))
    result = trainer.fit(straight, small)
    assert set(trainer.optimizers) == {"first", "second"}
    assert (
        trainer.optimizers["first"].param_groups[0]["lr"] == 1e-2
        and trainer.optimizers["second"].param_groups[0]["lr"] == 1e-3
    )
    assert all(not torch.equal(before[k], v.cpu()) for k, v in straight.state_dict().items())
    assert result.history[0]["train_phase"] == 1.0
    torch.manual_seed(0)
    interrupted = TwoPart()
    interrupted.load_state_dict(before)
    with pytest.raises(KeyboardInterrupt):
        AlternatingTrainer(config(tmp_path / "b", **cfg), [StopAfterSteps(4)]).fit(interrupted, small)
    resumed = TwoPart()
    AlternatingTrainer(config(tmp_path / "b", **cfg)).fit(resumed, small, resume=True)
    assert weights_equal(straight, resumed)


def test_bf16_autocast_trains_on_cpu(small):
    net = make_net()
    trainer = Trainer(config(epochs=1, precision="bf16"))
    result = trainer.fit(net, small)
    assert trainer.autocast_dtype == torch.bfloat16
    assert result.history[0]["train_loss"] > 0 and math.isfinite(result.best_val_loss)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # weights stay float32


def test_bad_network_output_is_explained(small):
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3))

        def forward(self, batch):
            return self.w * 2

    with pytest.raises(GenlabError, match=r"loss of shape \(3,\)"):
        Trainer(config(val_fraction=0.0)).fit(Bad(), small)


# ---------------------------------------------------------------------- data parallel
def test_more_processes_than_gpus_is_explained(monkeypatch):
    from genlab.training.distributed import _rank_device

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert _rank_device(torch.device("cuda"), 0) == torch.device("cuda", 0)
    with pytest.raises(GenlabError, match=r"LOCAL_RANK=1 has no GPU: 1 CUDA device\(s\) visible.*device='cpu'"):
        _rank_device(torch.device("cuda"), 1)
    assert _rank_device(torch.device("cpu"), 1) == torch.device("cpu")


def test_torchrun_two_processes_on_cpu_end_identical(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    script = Path(__file__).with_name("ddp_train_script.py")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from safetensors.torch import load_file

    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    summary = json.loads((tmp_path / "rank0.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 8 and summary["changed"]
    ckpt = tmp_path / "ckpt"
    assert load_latest(ckpt).record["world_size"] == 2
    rows = read_metrics(ckpt)
    assert {r["kind"] for r in rows} == {"step", "epoch"}
    step_rows = [r["step"] for r in rows if r["kind"] == "step"]
    assert len(step_rows) == len(set(step_rows))  # written once: only rank 0 writes
