"""Base class of every neural generative model (VAE/WAE, GANs, flows, diffusion, ...).

A neural model owns ONE top-level ``torch.nn.Module`` in the fitted attribute
``network_``, whose ``forward(batch) -> (loss, logs)`` computes the training loss of a
batch (see :mod:`genlab.training.trainer` for the batch contents). The shared
:class:`~genlab.training.Trainer` trains it; the model never writes a training loop.

A family implements

* ``__init__``: its own hyper-parameters, then **every** training parameter of
  :data:`TRAINING_PARAMS` listed explicitly (scikit-learn reads the signature), ending
  with ``self._set_training_params(locals())``;
* ``_build_modules()``: create ``self.network_`` from hyper-parameters (read through
  :meth:`_param`, which returns preset-resolved values) and fitted JSON state such as
  ``self.image_shape_`` and ``self.n_classes_``; called before training and by ``load``;
* ``_sample(n, labels, generator, **options)`` (options declared in ``sample_options``) and ``_log_likelihood(images)`` (or ``likelihood = "none"``);
* optionally ``_preset_values(preset, image_shape, n_images)`` (call ``super()`` and update
  it), ``_training_data`` (extra batch fields), ``trainer_class`` (a Trainer subclass for
  multi-optimiser training).

Persistence is inherited: ``save`` writes ``network_``'s state dict, ``load`` calls
``_build_modules`` and loads it back.

Example (abridged)::

    @register("vae")
    class VAE(NeuralGenerativeModel):
        likelihood = "bound"

        def __init__(self, latent_dim=16, width=None, *, preset="auto", epochs=None, max_steps=None,
                     batch_size=64, optimizer="adam", lr=None, weight_decay=0.0, warmup_steps=None,
                     lr_schedule="cosine", grad_clip=None, ema_decay=None, val_fraction=0.1,
                     patience=None, device="auto", precision="auto", compile=False, num_workers=0,
                     random_state=0, checkpoint_dir=None, checkpoint_every=None, sample_every=None):
            self.latent_dim = latent_dim
            self.width = width
            self._set_training_params(locals())

        def _preset_values(self, preset, image_shape, n_images):
            values = super()._preset_values(preset, image_shape, n_images)
            values["width"] = 32 if preset == "quick" else 64
            return values

        def _build_modules(self):
            self.network_ = VAENetwork(self.image_shape_, self.latent_dim, self._param("width"))
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from ..device import make_generator, resolve_device
from ..errors import GenlabError
from ..likelihood import quantize
from ..training import SampleGridCallback, Trainer, TrainingConfig
from ..training.callbacks import Callback
from ..training.data import steps_per_epoch
from .base import GenerativeModel
from .validation import check_choice

#: the training parameters every neural model's ``__init__`` lists (sklearn convention)
TRAINING_PARAMS: tuple[str, ...] = (
    "preset",
    "epochs",
    "max_steps",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "warmup_steps",
    "lr_schedule",
    "grad_clip",
    "ema_decay",
    "val_fraction",
    "patience",
    "device",
    "precision",
    "compile",
    "num_workers",
    "random_state",
    "checkpoint_dir",
    "checkpoint_every",
    "sample_every",
)
#: training parameters whose None means "take the preset's value"
PRESET_CONTROLLED: tuple[str, ...] = ("epochs", "max_steps", "lr", "warmup_steps")
PRESETS = ("auto", "quick", "full")


class NeuralGenerativeModel(GenerativeModel):
    """A generative model trained by :class:`genlab.training.Trainer` (see the module docstring).

    Training parameters (shared by every neural model)
    ---------------------------------------------------
    preset : {"auto", "quick", "full"}
        Sizes everything left at None: "quick" trains in minutes on a laptop CPU, "full"
        is sized for a GPU; "auto" = "full" on CUDA, else "quick".
    epochs, max_steps : int or None
        Training length: ``epochs`` passes or ``max_steps`` optimiser steps, whichever ends
        first. None = the preset's (setting only ``max_steps`` trains exactly that many steps).
    batch_size : int
        Global mini-batch size (split across processes under torchrun).
    optimizer : {"adam", "adamw", "sgd"}
        SGD uses momentum 0.9.
    lr : float or None
        Peak learning rate (None = the preset's).
    weight_decay : float
    warmup_steps : int or None
        Linear warm-up steps (None = the preset's, at most 10% of the run).
    lr_schedule : {"cosine", "constant"}
        After warm-up: cosine decay to 0 over the run, or constant.
    grad_clip : float or None
        Clip the global gradient norm to this value (None = no clipping).
    ema_decay : float or None
        Keep an exponential moving average of the weights (e.g. 0.999) and sample with it.
    val_fraction : float
        Share of the training images held out (fixed seed) for a validation loss each
        epoch; the model ends with the weights of the best validation loss. 0 = off.
    patience : int or None
        Stop after this many epochs without a better validation loss (None = off).
    device : str
        "auto", "cpu", "cuda", "cuda:1", "mps".
    precision : {"auto", "fp32", "bf16"}
        "auto" = bfloat16 autocast on CUDA, float32 elsewhere.
    compile : bool
        ``torch.compile`` the network (faster on GPU after a slow first step).
    num_workers : int
        Batches prepared ahead in a background thread (0 = in the training thread; the
        data is in memory, so this matters only on fast accelerators).
    random_state : int or None
        Seed of initialisation, data order, validation split and the training noise.
    checkpoint_dir : str or None
        Folder for checkpoints, ``metrics.csv`` and sample grids (None = none written).
    checkpoint_every : int or None
        Also checkpoint every this many steps (checkpoints are always written at the end
        of each epoch and of training when ``checkpoint_dir`` is set).
    sample_every : int or None
        Write a sample grid PNG into ``checkpoint_dir/samples`` every this many epochs.
    """

    #: the Trainer class used by ``fit``; a family with several optimisers sets a subclass
    trainer_class: ClassVar[type[Trainer]] = Trainer
    #: images in the grid written every ``sample_every`` epochs
    sample_grid_size: ClassVar[int] = 64

    def __init__(
        self,
        *,
        preset: str = "auto",
        epochs: int | None = None,
        max_steps: int | None = None,
        batch_size: int = 64,
        optimizer: str = "adam",
        lr: float | None = None,
        weight_decay: float = 0.0,
        warmup_steps: int | None = None,
        lr_schedule: str = "cosine",
        grad_clip: float | None = None,
        ema_decay: float | None = None,
        val_fraction: float = 0.1,
        patience: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
        num_workers: int = 0,
        random_state: int | None = 0,
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        sample_every: int | None = None,
    ) -> None:
        self._set_training_params(locals())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params = inspect.signature(cls.__init__).parameters
        missing = [p for p in TRAINING_PARAMS if p not in params]
        if missing:
            raise TypeError(f"{cls.__name__}.__init__ must list every training parameter (scikit-learn reads the signature); missing: {', '.join(missing)}")

    def _set_training_params(self, values: Mapping[str, Any]) -> None:
        """Store the training parameters from ``locals()`` of a subclass ``__init__``."""
        for name in TRAINING_PARAMS:
            setattr(self, name, values[name])

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, resume: bool = False) -> "NeuralGenerativeModel":
        """Train on uint8 images ``X`` (N, C, H, W) (and labels ``y`` for conditional models).

        ``resume=True`` continues from the newest checkpoint in ``checkpoint_dir`` — model,
        optimiser, schedule, EMA, random states and the position inside the epoch — so an
        interrupted run ends exactly as an uninterrupted one would have.
        """
        return self._fit_checked(X, y, resume=bool(resume))

    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None, *, resume: bool = False, extra_data: Mapping[str, Any] | None = None) -> None:
        """Train. ``resume``: continue from the last checkpoint; ``extra_data``: further
        per-image training fields (e.g. caption embeddings ``{"cond": (N, D)}``) added to
        the batches next to those of :meth:`_training_data`."""
        preset = self._resolve_preset()
        self._check_explicit_training_params()
        n_images = int(images.shape[0])
        if self.conditional and labels is not None:
            self.n_classes_ = int(labels.max()) + 1
        self.preset_ = preset
        self.resolved_params_ = self._resolve_params(preset, self.image_shape_, n_images)
        config = self._training_config()
        self.training_config_ = config.to_dict()
        device = resolve_device(config.device)
        fork = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):  # seeds the initialisation without touching the caller's RNG
            torch.manual_seed(config.random_state)
            self._build_modules()
        if not isinstance(getattr(self, "network_", None), nn.Module):
            raise TypeError(f"{type(self).__name__}._build_modules must set self.network_ to a torch.nn.Module")
        trainer = self.trainer_class(config, self._training_callbacks(config), description=f"fitting {self.name or type(self).__name__}")
        data = self._training_data(images, labels)
        data.update(extra_data or {})
        result = trainer.fit(self.network_, data, resume=resume)
        self.network_.eval()
        self.history_ = result.history
        self.training_summary_ = {k: v for k, v in result.to_dict().items() if k != "history"}

    # ------------------------------------------------------------------ hooks for families
    def _build_modules(self) -> None:
        """Create ``self.network_`` (a ``torch.nn.Module`` whose ``forward(batch)`` returns
        ``(loss, logs)``) from hyper-parameters and fitted JSON state."""
        raise NotImplementedError

    def _preset_values(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        """Values for the parameters left at None, for ``preset`` "quick" or "full".

        Families call ``super()`` and add or change entries (their own hyper-parameters
        too, e.g. ``"width"``). ``n_images`` is the number of images passed to ``fit``.
        "quick": about 2,000 steps at lr 1e-3; "full": about 100,000 steps at lr 2e-4.
        """
        if preset == "quick":
            return {"epochs": self._epochs_for_steps(2_000, n_images), "max_steps": None, "lr": 1e-3, "warmup_steps": 100}
        return {"epochs": self._epochs_for_steps(100_000, n_images), "max_steps": None, "lr": 2e-4, "warmup_steps": 1_000}

    def _training_data(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, Any]:
        """The fields of each training batch: ``"images"`` (uint8) and ``"labels"`` (when given)."""
        data: dict[str, Any] = {"images": images}
        if labels is not None:
            data["labels"] = labels
        return data

    def _training_callbacks(self, config: TrainingConfig) -> list[Callback]:
        callbacks: list[Callback] = []
        if config.sample_every is not None and config.checkpoint_dir is not None:
            callbacks.append(SampleGridCallback(self._sample_grid, config.sample_every, config.checkpoint_dir))
        return callbacks

    def _sample_grid(self) -> torch.Tensor:
        """Images for the sample grid written during training (fixed seed; one row per
        class for conditional models)."""
        n = self.sample_grid_size
        labels = None
        n_classes = getattr(self, "n_classes_", None)
        if self.conditional and n_classes:
            labels = (torch.arange(n) % n_classes).to(torch.int64)
        out = self._sample(n, labels, make_generator(0))
        return out if out.dtype == torch.uint8 else quantize(out)

    # ------------------------------------------------------------------ helpers for families
    def _param(self, name: str) -> Any:
        """A hyper-parameter's value after preset resolution (the explicit value if given)."""
        value = getattr(self, name)
        if value is None:
            return getattr(self, "resolved_params_", {}).get(name)
        return value

    def _epochs_for_steps(self, target_steps: int, n_images: int) -> int:
        """Epochs that give about ``target_steps`` optimiser steps for ``n_images`` images
        with this model's batch size and validation split (at least 1)."""
        n_train = self._n_train(n_images)
        return max(1, math.ceil(target_steps / steps_per_epoch(n_train, int(self.batch_size))))

    def _n_train(self, n_images: int) -> int:
        vf = float(self.val_fraction or 0.0)
        n_val = max(1, int(round(vf * n_images))) if vf > 0 else 0
        return max(1, n_images - n_val)

    def _network_device(self) -> torch.device:
        """Device of the network's weights."""
        for p in self.network_.parameters():
            return p.device
        for b in self.network_.buffers():
            return b.device
        return torch.device("cpu")

    def _after_load(self) -> None:
        if isinstance(getattr(self, "network_", None), nn.Module):
            self.network_.to(self.device_).eval()

    def _check_params(self) -> None:
        self._resolve_preset()
        self._check_explicit_training_params()

    def _check_loaded(self) -> None:
        if not isinstance(getattr(self, "network_", None), nn.Module):
            raise GenlabError("fitted.network_: missing; a neural model's config must name its network ({\"__module__\": \"network_\"})")

    # ------------------------------------------------------------------ resolution
    def _resolve_preset(self) -> str:
        check_choice("preset", self.preset, PRESETS)
        if self.preset != "auto":
            return self.preset
        return "full" if resolve_device(self.device).type == "cuda" else "quick"

    def _resolve_params(self, preset: str, image_shape: tuple[int, ...], n_images: int) -> dict[str, Any]:
        values = dict(self._preset_values(preset, tuple(image_shape), n_images))
        params = self.get_params(deep=False)
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise TypeError(f"{type(self).__name__}._preset_values returned unknown parameter(s): {', '.join(unknown)}")
        resolved = {}
        for name in sorted(set(values) | set(PRESET_CONTROLLED)):
            explicit = params.get(name)
            resolved[name] = explicit if explicit is not None else values.get(name)
        if self.max_steps is not None and self.epochs is None:
            resolved["epochs"] = None  # "train for max_steps": the preset's epochs must not cut it short
        if self.warmup_steps is None and resolved.get("warmup_steps") is not None:
            total = self._planned_steps(resolved, n_images)
            resolved["warmup_steps"] = int(min(resolved["warmup_steps"], total // 10))
        return resolved

    def _planned_steps(self, resolved: Mapping[str, Any], n_images: int) -> int:
        spe = steps_per_epoch(self._n_train(n_images), int(self.batch_size))
        epochs, max_steps = resolved.get("epochs"), resolved.get("max_steps")
        total = math.inf
        if epochs is not None:
            total = int(epochs) * spe
        if max_steps is not None:
            total = min(total, int(max_steps))
        return int(total) if math.isfinite(total) else 0

    def _check_explicit_training_params(self) -> None:
        """Validate what the user set before the presets use it (batch_size, val_fraction, ...)."""
        values = {name: getattr(self, name) for name in TRAINING_PARAMS if name != "preset"}
        placeholders = {"epochs": 1, "lr": 1.0, "warmup_steps": 0, "random_state": 0}
        for name, value in placeholders.items():
            if values[name] is None:
                values[name] = value
        TrainingConfig(**values).validate()

    def _training_config(self) -> TrainingConfig:
        """The :class:`TrainingConfig` of this fit: explicit parameters, then preset values."""
        values = {name: self._param(name) for name in TRAINING_PARAMS if name != "preset"}
        if values["random_state"] is None:
            values["random_state"] = int(np.random.SeedSequence().entropy % (2**31))
        if values["checkpoint_dir"] is not None:
            values["checkpoint_dir"] = str(values["checkpoint_dir"])
        try:
            return TrainingConfig(**values).validate()
        except TypeError as exc:  # pragma: no cover - a wrong field list is a programming error
            raise GenlabError(f"training parameters: {exc}") from None
