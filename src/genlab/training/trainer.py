"""The one training loop every genlab neural model uses.

The trainer never knows which family it trains. It needs a ``torch.nn.Module`` whose
``forward(batch)`` returns ``(loss, logs)``:

* ``batch``: dict with ``"images"`` uint8 (B, C, H, W) on the training device, and
  ``"labels"`` int64 (B,) when the data has labels (more fields as the data provides);
* ``loss``: a scalar tensor to minimise;
* ``logs``: dict of extra scalars to report (floats or 0-dim tensors), e.g. ``{"kl": ...}``;
  they appear in metrics.csv as ``train_<key>`` / ``val_<key>``.

Multi-optimiser families (GANs) use two hooks:

1. the network defines ``optimizer_groups() -> dict[str, params]`` (each value a list
   of parameters or of torch param-group dicts with overrides such as
   ``{"params": ..., "lr": 2e-4, "betas": (0.5, 0.999)}``); the trainer builds one
   optimiser per entry, all of kind ``config.optimizer`` and on the same schedule;
2. a ``Trainer`` subclass overrides :meth:`Trainer.train_step`, calling the network
   through ``self.model`` (the DDP/compiled wrapper) and :meth:`Trainer.optimize`
   once per optimiser, e.g.::

       class GANTrainer(Trainer):
           def train_step(self, batch):
               with self.autocast():
                   d_loss, d_logs = self.model({**batch, "phase": "discriminator"})
               self.optimize(d_loss, "discriminator")
               with self.autocast():
                   g_loss, g_logs = self.model({**batch, "phase": "generator"})
               self.optimize(g_loss, "generator")
               return g_loss.detach(), {**d_logs, **g_logs, "d_loss": d_loss.detach()}

   A network whose forward leaves some parameters unused in a phase sets the attribute
   ``ddp_find_unused_parameters = True`` so DDP tolerates it.

Everything else — batching, validation, early stopping, EMA, schedule, checkpoints,
resume, the NaN guard, logging and data parallelism — is handled here once.
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..errors import GenlabError
from ..progress import progress
from .callbacks import Callback
from .checkpoint import Checkpoint, CheckpointStore, flatten_optimizer_state, unflatten_optimizer_state
from .config import TrainingConfig, resolve_precision
from .data import (
    Prefetcher,
    batch_size_of,
    data_length,
    derive_seed,
    epoch_batches,
    fingerprint,
    move_data,
    sequential_batches,
    split_train_val,
    steps_per_epoch,
)
from .distributed import DistributedContext
from .ema import EMA
from .metrics import MetricsLog
from .schedule import LRSchedule

#: training-config fields that may change between a run and its resumption without a warning
_RESUME_FREE_FIELDS = {"device", "num_workers", "checkpoint_dir", "checkpoint_every", "sample_every", "log_every", "compile", "epochs", "max_steps", "patience"}


class TrainingDiverged(GenlabError):
    """A loss or gradient became NaN/inf; ``step`` is the optimiser step (1-based) that failed."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class _NonFinite(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs completed (= index of the current epoch)
    batch_in_epoch: int = 0  # batches of the current epoch done
    best_val_loss: float | None = None
    best_step: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    last_val_step: int | None = None
    epoch_loss_sum: float = 0.0
    epoch_count: int = 0
    epoch_logs_sum: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["best_val_loss"] = _finite_or_none(self.best_val_loss)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TrainResult:
    """Summary of a finished :meth:`Trainer.fit`."""

    steps: int
    epochs: int
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    final_train_loss: float | None
    seconds: float
    images_per_s: float
    history: list[dict[str, Any]]
    kept: str  # which weights the network holds now: "best", "ema" or "last"

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Trainer:
    """Mini-batch training of any network that returns its own loss (see the module docstring).

    >>> trainer = Trainer(TrainingConfig(epochs=5, lr=1e-3))          # doctest: +SKIP
    >>> result = trainer.fit(network, {"images": x_uint8, "labels": y}) # doctest: +SKIP

    After ``fit`` the network holds the weights to keep: the best on validation when a
    validation split is used, else the EMA weights when ``ema_decay`` is set, else the last.
    """

    def __init__(self, config: TrainingConfig, callbacks: Sequence[Callback] = (), *, description: str = "training") -> None:
        self.config = config
        self.callbacks = list(callbacks)
        self.description = description
        self.state = TrainState()

    # ------------------------------------------------------------------ public API
    def fit(self, network: nn.Module, data: Mapping[str, Any], val_data: Mapping[str, Any] | None = None, *, resume: bool = False) -> TrainResult:
        """Train ``network`` on ``data`` (dict of equally long fields, ``"images"`` required).

        ``val_data``: an explicit validation set; when None, ``config.val_fraction`` of
        ``data`` is held out with a fixed seed. ``resume=True`` continues from the newest
        checkpoint in ``config.checkpoint_dir`` exactly where it stopped.
        """
        cfg = self.config.validate()
        device = resolve_device(cfg.device)
        self.dist = DistributedContext.from_env(device)
        self.device = self.dist.device or device
        self.metrics = None
        python_state, numpy_state = random.getstate(), np.random.get_state()
        fork_devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=fork_devices):
                result = self._fit(network, data, val_data, resume)
            self.dist.barrier()
            return result
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            if getattr(self, "metrics", None) is not None:
                self.metrics.close()
            if self.dist.owns_group:
                # the DDP wrapper holds the process group: release it while the interpreter is
                # fully alive (gloo aborts if its threads are torn down at interpreter exit)
                self.model = getattr(self, "network", None)
                gc.collect()
            self.dist.shutdown()

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.dist.is_main if hasattr(self, "dist") else True

    def configure_optimizers(self, network: nn.Module) -> dict[str, torch.optim.Optimizer]:
        """One optimiser per entry of ``network.optimizer_groups()`` (or one, "main", over
        every trainable parameter)."""
        if hasattr(network, "optimizer_groups"):
            groups = dict(network.optimizer_groups())
        else:
            groups = {"main": [p for p in network.parameters() if p.requires_grad]}
        if not groups:
            raise GenlabError("the network has no parameter groups to optimise")
        return {name: make_optimizer(self.config, params) for name, params in groups.items()}

    def train_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """One optimisation step on ``batch``; returns (detached loss, logs).

        Override for families with several optimisers (see the module docstring).
        """
        with self.autocast():
            loss, logs = unpack_output(self.model(batch))
        self.optimize(loss)
        return loss.detach(), logs

    def optimize(self, loss: torch.Tensor, name: str | None = None) -> torch.Tensor:
        """Backward ``loss`` and step optimiser ``name`` (the only one when None), with the
        NaN guard and gradient clipping; returns the gradient norm before clipping."""
        if name is None:
            if len(self.optimizers) != 1:
                raise GenlabError(f"several optimisers ({', '.join(self.optimizers)}): name the one to step")
            name = next(iter(self.optimizers))
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()  # also for a NaN loss: under DDP every process must join the gradient all-reduce
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if self.config.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        else:
            norm = _total_norm(params, loss.device)
        prefix = "" if len(self.optimizers) == 1 else f"{name} "
        self._check_finite({f"{prefix}loss": loss, f"{prefix}gradient": norm})
        opt.step()
        return norm

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (bf16 on CUDA by default)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @contextlib.contextmanager
    def evaluation(self, purpose: str = "evaluation") -> Iterator[nn.Module]:
        """The network with the weights that will be kept (EMA when enabled), in eval mode,
        without gradients, with a forked RNG seeded for ``purpose`` (so evaluating never
        changes the training's random stream and repeats exactly)."""
        net = self.network
        was_training = net.training
        fork_devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if self.device.type == "cuda" else []
        ema_ctx = self.ema.applied_to(net) if self.ema is not None else contextlib.nullcontext(net)
        with torch.random.fork_rng(devices=fork_devices), ema_ctx, torch.no_grad():
            torch.manual_seed(derive_seed(self.seed, purpose) + self.dist.rank)
            net.eval()
            try:
                yield net
            finally:
                net.train(was_training)

    def validate(self) -> tuple[float, dict[str, float]]:
        """Mean loss (and logs) over the validation data with the kept weights."""
        loss_sum, count = 0.0, 0
        log_sums: dict[str, float] = {}
        with self.evaluation("validation") as net:
            for batch in sequential_batches(self.val_data, self.config.batch_size, rank=self.dist.rank, world_size=self.dist.world_size, device=self.device):
                n = batch_size_of(batch)
                with self.autocast():
                    loss, logs = unpack_output(net(batch))
                loss_sum += float(loss) * n
                count += n
                for k, v in logs.items():
                    log_sums[k] = log_sums.get(k, 0.0) + float(v) * n
        keys = sorted(log_sums)
        packed = [loss_sum, float(count)] + [log_sums[k] for k in keys]
        if self.dist.enabled:
            packed = self.dist.all_reduce_sum(torch.tensor(packed, dtype=torch.float64, device=self.device)).tolist()
        total = max(packed[1], 1.0)
        return packed[0] / total, {k: packed[2 + i] / total for i, k in enumerate(keys)}

    # ------------------------------------------------------------------ the loop
    def _fit(self, network: nn.Module, data: Mapping[str, Any], val_data: Mapping[str, Any] | None, resume: bool) -> TrainResult:
        cfg = self.config
        start_time = time.perf_counter()
        self.store = CheckpointStore(Path(cfg.checkpoint_dir)) if cfg.checkpoint_dir else None
        ckpt: Checkpoint | None = None
        if resume:
            if self.store is None:
                raise GenlabError("resume=True needs checkpoint_dir (the folder with the checkpoints to continue from)")
            ckpt = self.store.load_latest()
            if ckpt is None:
                raise GenlabError(f"{cfg.checkpoint_dir}: no checkpoint to resume from; start without resume")
            saved_cfg = ckpt.record.get("config", {})
            self._warn_config_changes(saved_cfg)
            self.seed = int(saved_cfg.get("random_state", cfg.random_state))
        else:
            self.seed = int(cfg.random_state)

        data_length(data)
        fp = fingerprint(data)
        if val_data is None:
            train, val = split_train_val(data, cfg.val_fraction, self.seed)
        else:
            train, val = dict(data), dict(val_data)
            fp += fingerprint(val)
        if ckpt is not None and ckpt.record.get("data_fingerprint") not in (None, fp):
            raise GenlabError(f"{cfg.checkpoint_dir}: the checkpoint was trained on different data; resume with the same images (and labels) or start afresh")
        self.train_data = move_data(train, self.device)
        self.val_data = move_data(val, self.device) if val is not None else None
        self.data_fingerprint = fp
        n_train = data_length(train)
        self.steps_per_epoch = steps_per_epoch(n_train, cfg.batch_size)
        self.global_batch = min(cfg.batch_size, n_train)
        if self.dist.world_size > self.global_batch:
            raise GenlabError(f"batch_size={cfg.batch_size} is smaller than the {self.dist.world_size} processes; every process needs at least one image per step")
        epoch_steps = cfg.epochs * self.steps_per_epoch if cfg.epochs is not None else math.inf
        self.total_steps = int(min(epoch_steps, cfg.max_steps if cfg.max_steps is not None else math.inf))

        self.network = network.to(self.device)
        self.network.train()
        self.optimizers = self.configure_optimizers(self.network)
        self.schedule = LRSchedule(list(self.optimizers.values()), warmup_steps=cfg.warmup_steps, total_steps=self.total_steps, schedule=cfg.lr_schedule, min_lr_ratio=cfg.min_lr_ratio)
        self.ema = EMA(self.network, cfg.ema_decay) if cfg.ema_decay is not None else None
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        self.best_state: dict[str, torch.Tensor] | None = None
        self._last_saved_step: int | None = None

        if ckpt is not None:
            self._restore(ckpt)
        else:
            self.state = TrainState()
            if self.store is not None and self.is_main:
                self.store.clear()
            rank_seed = derive_seed(self.seed, f"training-stream-{self.dist.rank}")
            torch.manual_seed(rank_seed)
            random.seed(rank_seed)
            np.random.seed(rank_seed % (2**32))
        self.model = self._wrap(self.network)

        if self.store is not None and self.is_main:
            self.metrics = MetricsLog(self.store.directory, resume_step=ckpt.step if ckpt is not None else None)

        st = self.state
        self._elapsed_offset = st.elapsed_s
        self._start_time = start_time
        images_at_start, self._window = st.step * self.global_batch, _Window()
        self._epoch_start = (time.perf_counter(), st.step)
        for cb in self.callbacks:
            cb.on_train_start(self)
        bar = progress(total=self.total_steps, initial=st.step, desc=self.description, unit="step")
        try:
            while not self._done():
                self._run_epoch(bar)
            if self.val_data is not None and st.last_val_step != st.step and st.step > 0:
                self._track_validation(*self.validate(), count_patience=False)
            if self._last_saved_step != st.step:
                self._save_checkpoint()
        except _NonFinite as exc:
            raise self._diverged(exc.what) from None
        finally:
            bar.close()

        kept = self._load_kept_weights()
        for cb in self.callbacks:
            cb.on_train_end(self)
        seconds = time.perf_counter() - start_time
        trained_images = st.step * self.global_batch - images_at_start
        last_loss = st.history[-1]["train_loss"] if st.history else None
        return TrainResult(
            steps=st.step,
            epochs=st.epoch,
            best_val_loss=st.best_val_loss,
            best_step=st.best_step,
            stopped_early=st.stopped_early,
            final_train_loss=last_loss,
            seconds=seconds,
            images_per_s=trained_images / seconds if seconds > 0 else 0.0,
            history=list(st.history),
            kept=kept,
        )

    def _done(self) -> bool:
        st, cfg = self.state, self.config
        return st.step >= self.total_steps or st.stopped_early or (cfg.epochs is not None and st.epoch >= cfg.epochs)

    def _run_epoch(self, bar) -> None:
        cfg, st = self.config, self.state
        batches: Iterator[dict[str, Any]] = epoch_batches(
            self.train_data, seed=self.seed, epoch=st.epoch, batch_size=cfg.batch_size, start_batch=st.batch_in_epoch,
            rank=self.dist.rank, world_size=self.dist.world_size, device=self.device,
        )
        prefetcher = Prefetcher(batches, cfg.num_workers) if cfg.num_workers > 0 else None
        try:
            for batch in prefetcher or batches:
                lr = self.schedule.apply(st.step)
                loss, logs = self.train_step(batch)
                if self.ema is not None:
                    self.ema.update(self.network, st.step)
                st.step += 1
                st.batch_in_epoch += 1
                self._record_step(loss, logs, lr, bar)
                if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0 and st.batch_in_epoch < self.steps_per_epoch:
                    self._save_checkpoint()
                for cb in self.callbacks:
                    cb.on_step_end(self)
                if st.step >= self.total_steps:
                    break
        finally:
            if prefetcher is not None:
                prefetcher.close()
        if st.batch_in_epoch >= self.steps_per_epoch:
            self._end_epoch()

    def _record_step(self, loss: torch.Tensor, logs: dict[str, Any], lr: float, bar) -> None:
        st = self.state
        keys = sorted(logs)
        values = torch.stack([loss.detach().float().reshape(())] + [torch.as_tensor(logs[k], device=loss.device).detach().float().reshape(()) for k in keys])
        if self.dist.enabled:
            values = self.dist.all_reduce_sum(values) / self.dist.world_size
        values = values.tolist()
        loss_value, log_values = values[0], dict(zip(keys, values[1:]))
        st.epoch_loss_sum += loss_value
        st.epoch_count += 1
        for k, v in log_values.items():
            st.epoch_logs_sum[k] = st.epoch_logs_sum.get(k, 0.0) + v
        self._window.add(loss_value, log_values, self.global_batch)
        bar.update(1)
        if st.step % self.config.log_every == 0 or st.step == 1:
            w = self._window
            ips = w.images_per_s()
            bar.set_postfix(loss=f"{w.mean_loss():.4g}", img_s=f"{ips:.0f}")
            if self.metrics is not None:
                row = {"kind": "step", "step": st.step, "epoch": st.epoch, "lr": lr, "train_loss": w.mean_loss(), "images_per_s": ips, "elapsed_s": self._elapsed()}
                row.update({f"train_{k}": v for k, v in w.mean_logs().items()})
                self.metrics.write(row, extra_columns=self._extra_columns(keys))
            self._window = _Window()

    def _end_epoch(self) -> None:
        st = self.state
        count = max(st.epoch_count, 1)
        log_keys = sorted(st.epoch_logs_sum)
        entry: dict[str, Any] = {"epoch": st.epoch + 1, "step": st.step, "train_loss": st.epoch_loss_sum / count}
        entry.update({f"train_{k}": v / count for k, v in sorted(st.epoch_logs_sum.items())})
        if self.val_data is not None:
            val_loss, val_logs = self.validate()
            self._track_validation(val_loss, val_logs, count_patience=True)
            entry["val_loss"] = _finite_or_none(val_loss)
            entry.update({f"val_{k}": _finite_or_none(v) for k, v in val_logs.items()})
        entry["lr"] = float(next(iter(self.optimizers.values())).param_groups[0]["lr"])
        st.history.append(entry)
        st.epoch += 1
        st.batch_in_epoch = 0
        st.epoch_loss_sum, st.epoch_count, st.epoch_logs_sum = 0.0, 0, {}
        if self.metrics is not None:
            now = time.perf_counter()
            images = (st.step - self._epoch_start[1]) * self.global_batch
            row = {"kind": "epoch", "elapsed_s": self._elapsed(), "images_per_s": images / max(now - self._epoch_start[0], 1e-9), **entry}
            self.metrics.write(row, extra_columns=self._extra_columns(log_keys))
        self._epoch_start = (time.perf_counter(), st.step)
        if self.config.patience is not None and st.epochs_without_improvement >= self.config.patience:
            st.stopped_early = True
        for cb in self.callbacks:
            cb.on_epoch_end(self)
        if self.store is not None:
            self._save_checkpoint()

    def _extra_columns(self, log_keys: list[str]) -> list[str]:
        cols = [f"train_{k}" for k in log_keys]
        if self.val_data is not None:
            cols += [f"val_{k}" for k in log_keys]
        return cols

    def _track_validation(self, val_loss: float, val_logs: dict[str, float], *, count_patience: bool) -> None:
        st = self.state
        st.last_val_step = st.step
        if math.isfinite(val_loss) and (st.best_val_loss is None or val_loss < st.best_val_loss):
            st.best_val_loss = val_loss
            st.best_step = st.step
            st.epochs_without_improvement = 0
            self.best_state = {k: v.detach().clone() for k, v in self._kept_state().items()}
        elif count_patience:
            st.epochs_without_improvement += 1

    def _kept_state(self) -> dict[str, torch.Tensor]:
        return self.ema.state_dict() if self.ema is not None else self.network.state_dict()

    def _load_kept_weights(self) -> str:
        if self.val_data is not None and self.best_state is not None:
            self.network.load_state_dict(self.best_state)
            kept = "best"
        elif self.ema is not None:
            self.ema.copy_to(self.network)
            kept = "ema"
        else:
            kept = "last"
        if self.dist.enabled:  # buffers (e.g. BatchNorm statistics) drift per process: end with rank 0's
            for tensor in self.network.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
        self.network.eval()
        return kept

    def _elapsed(self) -> float:
        return self._elapsed_offset + time.perf_counter() - self._start_time

    # ------------------------------------------------------------------ NaN guard
    def _check_finite(self, values: dict[str, torch.Tensor]) -> None:
        """Raise (on every process at once) if any of ``values`` is NaN/inf; one host sync."""
        flags = torch.stack([(~torch.isfinite(v.detach().float())).any() for v in values.values()]).to(torch.float32)
        if self.dist.enabled:
            flags = self.dist.all_reduce_sum(flags)
        flags = flags.tolist()
        for what, flag in zip(values, flags):
            if flag > 0:
                raise _NonFinite(what)

    def _diverged(self, what: str) -> TrainingDiverged:
        cfg, st = self.config, self.state
        step = st.step + 1
        tips = [f"a lower lr (now {cfg.lr:g}, e.g. lr={cfg.lr / 3:.2g})"]
        if cfg.grad_clip is None:
            tips.append("gradient clipping (grad_clip=1.0)")
        if self.autocast_dtype is not None:
            tips.append("full precision (precision='fp32')")
        if cfg.warmup_steps < 100:
            tips.append("a longer warm-up (warmup_steps=500)")
        if self._last_saved_step is not None and self.store is not None:
            where = f"the last good checkpoint (step {self._last_saved_step}) is in {self.store.directory}; fit again with resume=True to continue from it"
        else:
            where = "no checkpoint was written (set checkpoint_dir and checkpoint_every to keep progress)"
        msg = f"training diverged at step {step} (epoch {st.epoch + 1}): non-finite {what}. Try {', '.join(tips)}; {where}"
        return TrainingDiverged(msg, step)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self) -> None:
        """Write the full training state (collective under torchrun: every rank calls it)."""
        rng = self.dist.all_gather_object(_rng_snapshot(self.device))
        self._last_saved_step = self.state.step
        if self.store is None or not self.is_main:
            return
        tensors: dict[str, torch.Tensor] = {f"network.{k}": v for k, v in self.network.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        optim_meta = {}
        for name, opt in self.optimizers.items():
            t, meta = flatten_optimizer_state(opt.state_dict(), f"optimizer.{name}")
            tensors.update(t)
            optim_meta[name] = meta
        rng_json = []
        for rank, snap in enumerate(rng):
            tensors[f"rng.torch.{rank}"] = snap["torch"]
            if snap.get("cuda") is not None:
                tensors[f"rng.cuda.{rank}"] = snap["cuda"]
            rng_json.append({"python": snap["python"], "numpy": snap["numpy"]})
        record = {
            "epoch": self.state.epoch,
            "batch_in_epoch": self.state.batch_in_epoch,
            "state": {**self.state.to_dict(), "elapsed_s": self._elapsed()},
            "config": self.config.to_dict(),
            "optimizers": optim_meta,
            "rng": rng_json,
            "world_size": self.dist.world_size,
            "total_steps": self.total_steps,
            "data_fingerprint": self.data_fingerprint,
        }
        best = self.best_state if self.state.best_step is not None else None
        self.store.save(self.state.step, tensors, record, best_step=self.state.best_step if best is not None else None, best_tensors=best)

    def _restore(self, ckpt: Checkpoint) -> None:
        where = f"{self.config.checkpoint_dir}"
        try:
            self.network.load_state_dict(ckpt.section("network"))
            if self.ema is not None:
                ema_state = ckpt.section("ema")
                self.ema.load_state_dict(ema_state if ema_state else ckpt.section("network"))
        except (RuntimeError, KeyError) as exc:
            raise GenlabError(f"{where}: the checkpoint holds weights for a different network ({str(exc).splitlines()[0]})") from None
        saved_opts = ckpt.record.get("optimizers", {})
        if set(saved_opts) != set(self.optimizers):
            raise GenlabError(f"{where}: the checkpoint has optimisers {sorted(saved_opts)}, the network now uses {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(unflatten_optimizer_state(ckpt.tensors, saved_opts[name], f"optimizer.{name}"))
        self.state = TrainState.from_dict(ckpt.record["state"])
        self.state.step, self.state.epoch, self.state.batch_in_epoch = int(ckpt.step), int(ckpt.record["epoch"]), int(ckpt.record["batch_in_epoch"])
        if ckpt.best_tensors is not None:
            self.best_state = {k: v.to(self.device) for k, v in ckpt.best_tensors.items()}
        self._last_saved_step = ckpt.step
        rank = self.dist.rank
        saved_world = int(ckpt.record.get("world_size", 1))
        if saved_world == self.dist.world_size and f"rng.torch.{rank}" in ckpt.tensors:
            torch.set_rng_state(ckpt.tensors[f"rng.torch.{rank}"])
            if self.device.type == "cuda" and f"rng.cuda.{rank}" in ckpt.tensors:
                torch.cuda.set_rng_state(ckpt.tensors[f"rng.cuda.{rank}"], self.device)
            snap = ckpt.record["rng"][rank]
            random.setstate(_python_state_from_json(snap["python"]))
            np.random.set_state(_numpy_state_from_json(snap["numpy"]))
        else:
            warnings.warn(f"resuming with {self.dist.world_size} processes from a checkpoint written by {saved_world}: random streams restart (weights and position are restored)", stacklevel=3)
            rank_seed = derive_seed(self.seed, f"training-stream-{rank}-resumed-{ckpt.step}")
            torch.manual_seed(rank_seed)
            random.seed(rank_seed)
            np.random.seed(rank_seed % (2**32))

    def _warn_config_changes(self, saved: dict[str, Any]) -> None:
        now = self.config.to_dict()
        changed = sorted(k for k in now if k in saved and now[k] != saved[k] and k not in _RESUME_FREE_FIELDS)
        if changed:
            detail = ", ".join(f"{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
            warnings.warn(f"resuming with changed settings ({detail}); the optimiser keeps its saved state and the run will not repeat the original exactly", stacklevel=4)

    def _wrap(self, network: nn.Module) -> nn.Module:
        model: nn.Module = network
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            kwargs: dict[str, Any] = {"find_unused_parameters": bool(getattr(network, "ddp_find_unused_parameters", False))}
            if self.device.type == "cuda":
                kwargs["device_ids"] = [self.device.index]
            model = DistributedDataParallel(network, **kwargs)
        if self.config.compile:
            model = torch.compile(model)
        return model


# ---------------------------------------------------------------------- helpers
def make_optimizer(config: TrainingConfig, params: Any) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` ("adam", "adamw", "sgd" with momentum 0.9) over
    ``params`` (parameters or param-group dicts, whose own keys override the config)."""
    params = list(params)
    if not params:
        raise GenlabError("an optimiser group has no parameters")
    kind, lr, wd = config.optimizer, config.lr, config.weight_decay
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    raise GenlabError(f"optimizer={kind!r} is not valid; use 'adam', 'adamw' or 'sgd'")


def unpack_output(out: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """Check a network's ``forward`` output is (scalar loss tensor, dict of logs)."""
    if isinstance(out, torch.Tensor):
        loss, logs = out, {}
    elif isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[0], torch.Tensor) and isinstance(out[1], Mapping):
        loss, logs = out[0], dict(out[1])
    else:
        raise GenlabError(f"network.forward(batch) must return (loss, logs) — a scalar tensor and a dict; got {type(out).__name__}")
    if loss.ndim != 0:
        raise GenlabError(f"network.forward(batch) returned a loss of shape {tuple(loss.shape)}; it must be a scalar (reduce it with .mean())")
    return loss, logs


def _total_norm(params: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    if hasattr(torch.nn.utils, "get_total_norm"):
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))


class _Window:
    """Running means between two log rows."""

    def __init__(self) -> None:
        self.loss_sum, self.count, self.images = 0.0, 0, 0
        self.logs: dict[str, float] = {}
        self.start = time.perf_counter()

    def add(self, loss: float, logs: dict[str, float], images: int) -> None:
        self.loss_sum += loss
        self.count += 1
        self.images += images
        for k, v in logs.items():
            self.logs[k] = self.logs.get(k, 0.0) + v

    def mean_loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    def mean_logs(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.logs.items()}

    def images_per_s(self) -> float:
        dt = time.perf_counter() - self.start
        return self.images / dt if dt > 0 else 0.0


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rng_snapshot(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python": _python_state_to_json(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _python_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_json(value: list) -> tuple:
    return (value[0], tuple(value[1]), value[2])


def _numpy_state_from_json(value: list) -> tuple:
    return (value[0], np.asarray(value[1], dtype=np.uint32), int(value[2]), int(value[3]), float(value[4]))

