"""Base class of every neural generative model (VAE/WAE, GANs, flows, diffusion, ...).

A neural model owns ONE top-level ``torch.nn.Module`` in the fitted attribute
``network_``, whose ``forward(batch) -> (loss, logs)`` computes the training loss of a
batch (see :mod:`genlab.training.trainer` for the batch contents). The shared
:class:`~genlab.training.Trainer` trains it; the model never writes a training loop.

A family implements

* ``__init__``: its own hyper-parameters, then ``**training_params``, ending with
  ``self._set_training_params(training_params)``. The class's signature is then completed
  with every training parameter of :data:`TRAINING_PARAMS` as keyword-only parameters
  (their one list is :class:`~genlab.training.TrainingConfig`), so scikit-learn's
  ``get_params``/``clone``, ``inspect.signature`` and the CLI see them all. (Listing all
  of them explicitly and ending with ``self._set_training_params(locals())`` works too.);
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

        def __init__(self, latent_dim=16, width=None, **training_params):
            self.latent_dim = latent_dim
            self.width = width
            self._set_training_params(training_params)

        def _preset_values(self, preset, image_shape, n_images):
            values = super()._preset_values(preset, image_shape, n_images)
            values["width"] = 32 if preset == "quick" else 64
            return values

        def _build_modules(self):
            self.network_ = VAENetwork(self.image_shape_, self.latent_dim, self._param("width"))
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from ..device import make_generator, resolve_device, training_memory_bytes
from ..errors import GenlabError
from ..likelihood import quantize
from ..progress import progress
from ..tone_curve import TONE_IMAGES, apply_tone_curve, check_tone_thresholds, fit_tone_thresholds
from ..training import SampleGridCallback, Trainer, TrainingConfig
from ..training.config import model_training_fields
from ..training.callbacks import Callback
from ..training.data import steps_per_epoch
from .base import GenerativeModel
from .schema import Param

PRESET_HELP = (
    'Sizes everything left at None: "quick" trains in minutes on a laptop CPU, "full" is sized for a GPU; '
    '"auto" = "full" on CUDA, else "quick".'
)
#: the training parameters every neural model's ``__init__`` takes (keyword-only, after the
#: family's own): "preset", then the model fields of :class:`TrainingConfig` — listed there once
TRAINING_PARAMS: tuple[str, ...] = ("preset",) + tuple(f.name for f in model_training_fields())
PRESETS = ("auto", "quick", "full")
#: types, ranges and defaults of the training parameters (the names come from TrainingConfig)
TRAINING_SCHEMA: dict[str, Param] = {
    "preset": Param(
        "choice",
        "auto",
        choices=PRESETS,
        help="size of network and training: quick (CPU minutes), full (GPU), auto = full on CUDA",
    ),
    "epochs": Param("int", None, low=1, nullable=True, help="passes over the training split (None = the preset's)"),
    "max_steps": Param("int", None, low=1, nullable=True, help="optimiser steps (None = the preset's)"),
    "batch_size": Param("int", 64, low=1, help="global mini-batch size"),
    "optimizer": Param("choice", "adam", choices=("adam", "adamw", "sgd"), help="optimiser (SGD with momentum 0.9)"),
    "lr": Param(
        "float", None, low=0.0, low_inclusive=False, nullable=True, help="peak learning rate (None = the preset's)"
    ),
    "weight_decay": Param("float", 0.0, low=0.0, help="weight decay"),
    "warmup_steps": Param("int", None, low=0, nullable=True, help="linear warm-up steps (None = the preset's)"),
    "lr_schedule": Param(
        "choice", "cosine", choices=("cosine", "constant"), help="after warm-up: cosine decay to 0, or constant"
    ),
    "grad_clip": Param(
        "float",
        None,
        low=0.0,
        low_inclusive=False,
        nullable=True,
        help="clip the global gradient norm (None = no clipping)",
    ),
    "ema_decay": Param(
        "float",
        None,
        low=0.0,
        high=1.0,
        low_inclusive=False,
        high_inclusive=False,
        nullable=True,
        help="EMA of the weights for sampling (None = the preset's or none)",
    ),
    "val_fraction": Param(
        "float", 0.1, low=0.0, high=1.0, high_inclusive=False, help="share held out for the validation loss (0 = off)"
    ),
    "patience": Param(
        "int", None, low=1, nullable=True, help="early stopping after this many epochs without improvement (None = off)"
    ),
    "device": Param("str", "auto", help="auto, cpu, cuda, cuda:1, mps"),
    "precision": Param("choice", "auto", choices=("auto", "fp32", "bf16"), help="bf16 autocast (auto = on CUDA)"),
    "compile": Param("bool", False, help="torch.compile the network"),
    "num_workers": Param("int", 0, low=0, help="batches prepared ahead in a background thread"),
    "random_state": Param(
        "int",
        0,
        low=0,
        nullable=True,
        help="seed of initialisation, data order, split and noise (None = fresh entropy)",
    ),
    "checkpoint_dir": Param("path", None, nullable=True, help="folder for checkpoints, metrics.csv and sample grids"),
    "checkpoint_every": Param("int", None, low=1, nullable=True, help="also checkpoint every this many steps"),
    "sample_every": Param("int", None, low=1, nullable=True, help="write a sample grid every this many epochs"),
}
if set(TRAINING_SCHEMA) != set(TRAINING_PARAMS):  # pragma: no cover - caught at import by every test
    raise RuntimeError(
        f"TRAINING_SCHEMA and TrainingConfig's model fields differ: {sorted(set(TRAINING_SCHEMA) ^ set(TRAINING_PARAMS))}"
    )
#: training parameters whose None means "take the preset's value"
PRESET_CONTROLLED: tuple[str, ...] = ("epochs", "max_steps", "lr", "warmup_steps")


def training_schema(**defaults: Any) -> dict[str, Param]:
    """:data:`TRAINING_SCHEMA` with a family's own defaults (e.g. ``grad_clip=1.0``)."""
    return {
        name: dataclasses.replace(p, default=defaults[name]) if name in defaults else p
        for name, p in TRAINING_SCHEMA.items()
    }


class NeuralGenerativeModel(GenerativeModel):
    """A generative model trained by :class:`genlab.training.Trainer` (see the module docstring).

    The training parameters shared by every neural model are listed under "Training
    parameters" below (built from :class:`~genlab.training.TrainingConfig`).
    """

    #: the Trainer class used by ``fit``; a family with several optimisers sets a subclass
    trainer_class: ClassVar[type[Trainer]] = Trainer
    #: images in the grid written every ``sample_every`` epochs
    sample_grid_size: ClassVar[int] = 64
    parameter_schema: ClassVar[dict[str, Param]] = TRAINING_SCHEMA
    sample_options: ClassVar[dict[str, Param]] = {
        **GenerativeModel.sample_options,
        "tone_curve": Param(
            "bool",
            True,
            help="map outputs to pixel levels with the tone curve fitted after training (False: plain rounding)",
        ),
    }
    #: images drawn after training to fit the tone curve (:mod:`genlab.tone_curve`)
    tone_images: ClassVar[int] = TONE_IMAGES

    def __init__(self, **training_params: Any) -> None:
        self._set_training_params(training_params)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            _complete_signature(init)
        params = inspect.signature(cls.__init__).parameters
        missing = [p for p in TRAINING_PARAMS if p not in params]
        if missing:
            raise TypeError(
                f"{cls.__name__}.__init__ must take the training parameters (scikit-learn reads the signature): end it with "
                f"**training_params, or list them all; missing: {', '.join(missing)}"
            )

    def _set_training_params(self, values: Mapping[str, Any], /, **listed: Any) -> None:
        """Store the training parameters: ``values`` is the ``**training_params`` dict of a
        subclass ``__init__`` (what the caller passed; the rest take the signature's
        defaults), or its ``locals()`` when it lists every training parameter.

        A family that changes a training parameter's default lists it in its ``__init__``
        (e.g. ``grad_clip=1.0``) and passes it on: ``_set_training_params(training_params,
        grad_clip=grad_clip)``."""
        if all(name in values for name in TRAINING_PARAMS):
            for name in TRAINING_PARAMS:
                setattr(self, name, values[name])
            return
        unknown = sorted((set(values) | set(listed)) - set(TRAINING_PARAMS))
        if unknown:
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {unknown[0]!r}")
        values = {**values, **listed}
        defaults = inspect.signature(type(self).__init__).parameters
        for name in TRAINING_PARAMS:
            setattr(self, name, values[name] if name in values else defaults[name].default)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, resume: bool = False) -> "NeuralGenerativeModel":
        """Train on uint8 images ``X`` (N, C, H, W) (and labels ``y`` for conditional models).

        ``resume=True`` continues from the newest checkpoint in ``checkpoint_dir`` — model,
        optimiser, schedule, EMA, random states and the position inside the epoch — so an
        interrupted run ends exactly as an uninterrupted one would have.
        """
        return self._fit_checked(X, y, resume=bool(resume))

    def _fit(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        resume: bool = False,
        extra_data: Mapping[str, Any] | None = None,
    ) -> None:
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
        fork = (
            [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        )
        self._check_network_fits(device)
        with torch.random.fork_rng(devices=fork):  # seeds the initialisation without touching the caller's RNG
            torch.manual_seed(config.random_state)
            self._build_modules()
        if not isinstance(getattr(self, "network_", None), nn.Module):
            raise TypeError(f"{type(self).__name__}._build_modules must set self.network_ to a torch.nn.Module")
        trainer = self.trainer_class(
            config, self._training_callbacks(config), description=f"fitting {self.name or type(self).__name__}"
        )
        data = self._training_data(images, labels)
        data.update(extra_data or {})
        result = trainer.fit(self.network_, data, resume=resume)
        self.network_.eval()
        diverged = [
            name
            for name, p in self.network_.state_dict().items()
            if p.is_floating_point() and not bool(torch.isfinite(p).all())
        ]
        if diverged:  # a NaN network samples black images and scores nan: say so now, not later
            raise GenlabError(
                f"{self.name or type(self).__name__}: training diverged — {len(diverged)} weight tensor(s) hold NaN/inf (first: {diverged[0]}); "
                "lower lr, set grad_clip, or use precision='fp32'"
            )
        self.history_ = result.history
        self.training_summary_ = {k: v for k, v in result.to_dict().items() if k != "history"}

    def _after_fit(self, images: torch.Tensor) -> None:
        """Fit the tone curve: draw ``tone_images`` images as ``sample()`` would by default
        (labels from the training frequencies, prompts from the training captions) with plain
        rounding off, and match their output values to the training histogram
        (:mod:`genlab.tone_curve`). The draw has its own generator (seeded from
        ``random_state``), so it changes no other random stream."""
        super()._after_fit(images)
        if type(self)._sample is GenerativeModel._sample:  # a family that cannot sample has nothing to calibrate
            return
        seed = int(self.training_config_.get("random_state") or 0) + 7_919
        generator = make_generator(seed)
        n, chunk, outputs = int(self.tone_images), 64, []
        with progress(total=n, desc="fitting the tone curve", unit="img") as bar:
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                labels = self._default_labels(m, generator) if self.conditional else None
                out = self._sample(m, labels, generator)
                if out.dtype == torch.uint8:  # a family that rounds itself has no tone curve
                    return
                outputs.append(out.detach().float().cpu())
                bar.update(m)
        self.tone_thresholds_ = fit_tone_thresholds(torch.cat(outputs), images, generator)

    def _to_pixels(
        self, out: torch.Tensor, *, tone_curve: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        thresholds = getattr(self, "tone_thresholds_", None)
        if out.dtype == torch.uint8 or thresholds is None or not tone_curve:
            return super()._to_pixels(out)
        return apply_tone_curve(out, thresholds, generator)

    def _check_network_fits(self, device: torch.device) -> None:
        """Refuse, before anything is allocated, a network whose training state cannot fit:
        the network is built on the meta device (no memory) and its parameters counted; fp32
        weights, gradients, two Adam moments and an EMA copy take 20 bytes per parameter
        (activations come on top, so this is a floor)."""
        with torch.device("meta"):
            self._build_modules()
        n_params = sum(p.numel() for p in self.network_.parameters())
        del self.network_
        needed, limit = 20 * n_params, training_memory_bytes(device)
        if needed > limit:
            raise GenlabError(
                f"{self.name or type(self).__name__}: these settings build a network of {n_params:,} parameters whose training state alone "
                f"needs {needed / 1e9:.3g} GB, more than the {limit / 1e9:.3g} GB available on {device}; lower the width or depth"
            )

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
            return {
                "epochs": self._epochs_for_steps(2_000, n_images),
                "max_steps": None,
                "lr": 1e-3,
                "warmup_steps": 100,
            }
        return {
            "epochs": self._epochs_for_steps(100_000, n_images),
            "max_steps": None,
            "lr": 2e-4,
            "warmup_steps": 1_000,
        }

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
        super()._check_params()
        self._resolve_preset()
        self._check_explicit_training_params()

    def _check_loaded(self) -> None:
        if not isinstance(getattr(self, "network_", None), nn.Module):
            raise GenlabError(
                'fitted.network_: missing; a neural model\'s config must name its network ({"__module__": "network_"})'
            )
        if hasattr(self, "tone_thresholds_"):  # absent in models saved before the tone curve: plain rounding
            check_tone_thresholds(self.tone_thresholds_, int(self.image_shape_[0]))

    # ------------------------------------------------------------------ resolution
    def _resolve_preset(self) -> str:
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


def _training_parameters() -> list[inspect.Parameter]:
    """The keyword-only parameters every neural model's ``__init__`` takes, from the one list."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("preset", kw, default="auto", annotation="str")]
    for f in model_training_fields():
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if f.metadata["nullable"] and "None" not in annotation:
            annotation = f"{annotation} | None"
        params.append(inspect.Parameter(f.name, kw, default=f.metadata["model_default"], annotation=annotation))
    return params


def _complete_signature(init: Any) -> None:
    """Give an ``__init__(self, ..., **training_params)`` the signature scikit-learn reads:
    its own parameters, then every training parameter it does not list, keyword-only (the
    ``**`` catch-all itself is dropped, so no other keyword is advertised)."""
    sig = inspect.signature(init)
    own = list(sig.parameters.values())
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own):
        return
    names = {p.name for p in own}
    positional = [
        p for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD and p.kind is not inspect.Parameter.KEYWORD_ONLY
    ]
    keyword = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    added = [p for p in _training_parameters() if p.name not in names]
    init.__signature__ = sig.replace(parameters=positional + keyword + added)


def _training_params_doc() -> str:
    lines = [
        "",
        "    Training parameters",
        "    -------------------",
        '    preset : {"auto", "quick", "full"}',
        f"        {PRESET_HELP}",
    ]
    for p in _training_parameters()[1:]:
        f = TrainingConfig.__dataclass_fields__[p.name]
        lines += [f"    {p.name} : {p.annotation} = {p.default!r}", f"        {f.metadata['help']}"]
    return "\n".join(lines) + "\n"


_complete_signature(NeuralGenerativeModel.__init__)
NeuralGenerativeModel.__doc__ = (NeuralGenerativeModel.__doc__ or "") + _training_params_doc()
