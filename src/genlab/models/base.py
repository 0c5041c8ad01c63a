"""The contract every genlab model follows.

A genlab model is a scikit-learn estimator: ``__init__`` only stores hyper-parameters
(so ``get_params``, ``set_params``, ``clone``, ``cross_val_score`` and ``GridSearchCV``
work), everything learned lives in attributes ending in ``_``, and

* ``fit(X, y=None)``            learn from uint8 images (N, C, H, W)
* ``sample(n, *, y=None, seed=None, **options)`` -> uint8 images (n, C, H, W)
* ``score_samples(X)``          -> log-likelihood per image in nats (see
  :mod:`genlab.likelihood` for the convention); ``score(X)`` is its mean
* ``bits_per_dim(X)``           -> bits per dimension on the 256-level scale
* ``save(dir)`` / ``load(dir)`` -> ``config.json`` + ``model.safetensors``, never pickle.

``likelihood`` (a class attribute) says whether ``score_samples`` is ``"exact"``, a
lower ``"bound"``, or ``"none"`` (then scoring raises a clear error).

A subclass implements ``_fit``, ``_sample`` and (unless ``likelihood == "none"``)
``_log_likelihood``; neural models also implement ``_build_modules`` so that ``load``
can rebuild their networks from JSON before loading weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from .._version import __version__
from ..device import make_generator, resolve_device
from ..errors import GenlabError
from ..io import load_tensors, read_json, save_tensors, write_json
from ..likelihood import bits_per_dim, quantize
from ..validation import check_images, check_labels, check_n_samples
from .schema import Param, validate_values

#: capability tags a model class may declare (each names methods the model then has):
#: likelihood = score_samples/score/bits_per_dim; encode/decode/reconstruct = the latent codec;
#: interpolate, invert, edit, inpaint = the methods of those names; attributes = latent attribute
#: directions (encode + decode on labelled data)
CAPABILITIES = frozenset({"likelihood", "encode", "decode", "reconstruct", "interpolate", "invert", "edit", "inpaint", "attributes"})
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class GenerativeModel(BaseEstimator):
    """Base class of every genlab generative model (see the module docstring)."""

    #: registry name, set by :func:`genlab.models.registry.register`
    name: ClassVar[str] = ""
    #: "exact", "bound" or "none": what ``score_samples`` returns
    likelihood: ClassVar[str] = "exact"
    #: whether ``fit``/``sample`` take class labels ``y``
    conditional: ClassVar[bool] = False
    #: per-call options of ``sample`` (name -> :class:`~genlab.models.schema.Param`); families
    #: extend these (``{**GenerativeModel.sample_options, ...}``)
    sample_options: ClassVar[dict[str, Param]] = {
        "unconditional": Param("bool", False, help="conditional models: sample the unconditional (null) branch instead of drawing labels/prompts from the training data"),
    }
    #: whether a conditional model also learned an unconditional (null-label) branch
    has_null_branch: ClassVar[bool] = False
    #: hyper-parameters of ``__init__`` (name -> Param): validated at ``fit``, listed by ``genlab models --json``
    parameter_schema: ClassVar[dict[str, Param]] = {}
    #: what the model can do beyond fit/sample, a subset of :data:`CAPABILITIES`
    capabilities: ClassVar[frozenset[str]] = frozenset({"likelihood"})
    #: the conditionings it supports, a subset of ("none", "label", "text")
    conditionings: ClassVar[tuple[str, ...]] = ("none",)
    _estimator_type = "DensityEstimator"

    # ------------------------------------------------------------------ public API
    def fit(self, X: Any, y: Any = None) -> "GenerativeModel":
        """Learn the distribution of ``X`` (uint8 images, (N, C, H, W) or (N, H, W)).

        ``y`` (integer labels, (N,)) is used by conditional models and ignored by the rest,
        so that scikit-learn's ``cross_val_score(model, X, y)`` works for every model.
        """
        return self._fit_checked(X, y)

    def _fit_checked(self, X: Any, y: Any, **fit_args: Any) -> "GenerativeModel":
        """Validate ``X``/``y``, forget the previous fit and call ``_fit(images, labels, **fit_args)``.

        Subclasses whose ``fit`` takes more (``resume``, captions) pass them as ``fit_args``,
        so that nothing travels through attributes of the instance.
        """
        from ..data.dataset import Dataset

        if y is None and isinstance(X, Dataset) and self.conditional:
            y = X.labels
        self._check_params()
        images = check_images(X)
        labels = check_labels(y, len(images)) if (y is not None and self.conditional) else None
        self._reset_fitted()
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        if labels is not None:  # training class frequencies: the default labels of sample(n)
            self.class_counts_ = torch.bincount(labels).to(torch.int64)
        self._fit(images, labels, **fit_args)
        return self

    def sample(self, n: int, *, y: Any = None, seed: int | None = None, **options: Any) -> torch.Tensor:
        """Draw ``n`` images as a uint8 tensor of shape (n, C, H, W) on the CPU.

        ``y``: labels for class-conditional models (a single int or one per image).
        ``y=None`` on a class-conditional model draws the labels from the training class
        frequencies (``class_counts_``; uniform for models saved before it existed) with this
        call's random generator and samples those classes as if they had been given (with the
        model's default guidance), so the default draw looks like the training data;
        ``unconditional=True`` instead samples the unconditional (null-label) branch where the
        model has one (diffusion) and is refused where it has none (CVAE).
        ``seed``: makes the draw reproducible (labels included).
        ``options``: per-call sampling options of the family, declared in
        ``type(model).sample_options`` (e.g. ``sampler``, ``steps``, ``guidance`` for
        diffusion); unknown or out-of-range options raise a :class:`GenlabError`. Options are
        arguments of this call only, so one fitted model can be sampled from several
        threads at once.
        """
        self._check_fitted()
        n = check_n_samples(n)
        options = self._check_sample_options(options)
        generator = make_generator(seed)
        labels = None
        if y is not None:
            if not self.conditional:
                raise GenlabError(f"{self.name or type(self).__name__} is not class-conditional; sample without y (labels)")
            if options.get("unconditional"):
                raise GenlabError("give labels y or unconditional=True, not both")
            labels = check_labels(y, n, n_classes=getattr(self, "n_classes_", None))
        elif self.conditional and not options.get("unconditional"):
            labels = self._default_labels(n, generator)
        out = self._sample(n, labels, generator, **options)
        if out.dtype != torch.uint8:
            out = quantize(out)
        return out.cpu()

    def _default_labels(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n labels (int64) drawn from the training class frequencies (uniform without them)."""
        counts = getattr(self, "class_counts_", None)
        if counts is not None:
            probs = torch.as_tensor(counts).to(torch.float64)
            probs = probs / probs.sum()
        elif getattr(self, "class_prior_", None) is not None:  # autoencoders saved before class_counts_
            probs = torch.as_tensor(self.class_prior_).to(torch.float64)
        else:  # older run folders: no frequencies were saved
            probs = torch.full((int(self.n_classes_),), 1.0 / int(self.n_classes_), dtype=torch.float64)
        return torch.multinomial(probs.cpu(), n, replacement=True, generator=generator)

    def _check_params(self) -> None:
        """Check the hyper-parameters against ``parameter_schema`` (types, ranges, choices);
        what a schema cannot say (one parameter against another or the data) is checked in ``_fit``."""
        schema = type(self).parameter_schema
        for name, value in self.get_params(deep=False).items():
            if name in schema:
                schema[name].validate(name, value)

    def _check_sample_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Options checked against ``sample_options`` (unknown names, types, ranges), then
        :meth:`_check_option_combination` for what one option alone cannot say."""
        checked = validate_values(options, type(self).sample_options, what=f"{self.name or type(self).__name__} sample options")
        self._check_option_combination(checked)
        return checked

    def _check_option_combination(self, options: dict[str, Any]) -> None:
        """Family hook (call ``super()``): reject combinations of valid options that make no sense together."""
        if options.get("unconditional") and self.conditional and not self.has_null_branch:
            name = self.name or type(self).__name__
            raise GenlabError(
                f"unconditional=True: this {name} model is class-conditional and has no unconditional branch "
                "(it always needs a label); sample without it to draw labels from the training class frequencies, or give y"
            )

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood of each image in nats, float64 array (N,).

        A density over dequantised pixels in [0, 1] (see :mod:`genlab.likelihood`);
        ``type(model).likelihood`` says whether it is exact or a lower bound.
        """
        self._check_fitted()
        self._check_has_likelihood()
        images = check_images(X, expected_shape=self.image_shape_)
        with torch.no_grad():
            ll = self._log_likelihood(images)
        return ll.detach().cpu().to(torch.float64).numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per image in nats (higher is better); ``y`` is ignored.

        This is what ``cross_val_score`` and ``GridSearchCV`` maximise by default.
        """
        return float(np.mean(self.score_samples(X)))

    def bits_per_dim(self, X: Any) -> float:
        """Mean bits per dimension of ``X`` (lower is better); 8.0 is uniform noise."""
        return float(bits_per_dim(self.score(X), int(np.prod(self.image_shape_))))

    @property
    def n_dims_(self) -> int:
        """D = C * H * W of the images the model was fitted on."""
        self._check_fitted()
        return int(np.prod(self.image_shape_))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` (hyper-parameters, learned scalars) and
        ``model.safetensors`` (learned tensors, network weights) into folder ``path``."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        params = {k: _encode(v, f"param.{k}", tensors) for k, v in self.get_params(deep=False).items()}
        fitted = {}
        for key, value in vars(self).items():
            if key.endswith("_") and not key.startswith("_"):
                if isinstance(value, torch.nn.Module):
                    for pname, tensor in value.state_dict().items():
                        tensors[f"{key}.{pname}"] = tensor
                    fitted[key] = {"__module__": key}
                else:
                    fitted[key] = _encode(value, f"fitted.{key}", tensors)
        config = {"genlab_version": __version__, "model": self.name, "likelihood": self.likelihood, "params": params, "fitted": fitted}
        # weights first: a config.json only ever points at weights that are complete
        save_tensors(path / WEIGHTS_FILE, tensors, metadata={"model": self.name})
        write_json(path / CONFIG_FILE, config)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "GenerativeModel":
        """Rebuild a saved model from ``config.json`` + ``model.safetensors``.

        Called on the base class it dispatches to the registered model named in the
        config; no code from the checkpoint is executed.
        """
        from .registry import get_model_class

        path = Path(path)
        if not path.is_dir():
            raise GenlabError(f"{path}: not a model folder (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
        config = read_json(path / CONFIG_FILE)
        if not isinstance(config, dict) or "model" not in config or "params" not in config:
            raise GenlabError(f"{path / CONFIG_FILE}: not a genlab model config")
        model_cls = get_model_class(config["model"])
        if cls is not GenerativeModel and not issubclass(model_cls, cls):
            raise GenlabError(f"{path}: holds a {config['model']!r} model, not {cls.__name__}")
        tensors = load_tensors(path / WEIGHTS_FILE)
        params = {k: _decode(v, tensors) for k, v in config["params"].items()}
        try:
            model = model_cls(**params)
        except TypeError as exc:
            raise GenlabError(f"{path / CONFIG_FILE}: parameters do not fit {model_cls.__name__} ({exc})") from None
        modules = {}
        for key, value in config.get("fitted", {}).items():
            if isinstance(value, dict) and "__module__" in value:
                modules[key] = value["__module__"]
            else:
                setattr(model, key, _decode(value, tensors))
        if modules:
            model._build_modules()
            for key in modules:
                prefix = f"{key}."
                state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                try:
                    getattr(model, key).load_state_dict(state)
                except (RuntimeError, AttributeError) as exc:
                    raise GenlabError(f"{path / WEIGHTS_FILE}: weights for {key} do not match the network ({exc})") from None
        model._after_load()
        return model

    # ------------------------------------------------------------------ subclass hooks
    def _fit(self, images: torch.Tensor, labels: torch.Tensor | None, **fit_args: Any) -> None:
        raise NotImplementedError

    def _sample(self, n: int, labels: torch.Tensor | None, generator: torch.Generator, **options: Any) -> torch.Tensor:
        """Return (n, C, H, W): floats in [0, 1] or uint8. ``options`` are the validated
        per-call options (only those the caller gave; absent ones mean the model's default)."""
        raise NotImplementedError

    def _log_likelihood(self, images: torch.Tensor) -> torch.Tensor:
        """Log-density (nats) of each uint8 image, (N,)."""
        raise NotImplementedError

    def _build_modules(self) -> None:
        """Neural models: create the networks (attributes ending in ``_``) from JSON state."""

    def _after_load(self) -> None:
        """Move loaded state to the model's device or rebuild caches."""

    # ------------------------------------------------------------------ helpers
    @property
    def device_(self) -> torch.device:
        return resolve_device(getattr(self, "device", "auto"))

    def _reset_fitted(self) -> None:
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    def _check_fitted(self) -> None:
        if not hasattr(self, "image_shape_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(X) first (or load a saved model)")

    def _check_has_likelihood(self) -> None:
        if self.likelihood == "none":
            raise GenlabError(f"{self.name or type(self).__name__} has no likelihood (neither exact nor a bound); compare it with sample metrics (genlab evaluate) instead")

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.estimator_type = "density_estimator"
        return tags


# ---------------------------------------------------------------------- JSON codec
def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``value``; arrays/tensors go to ``tensors`` under ``key``."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"__list__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value.tolist())]}
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"__ndarray__": key}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise GenlabError(f"cannot save {key}: dictionary keys must be strings")
        return {"__dict__": {k: _encode(v, f"{key}.{k}", tensors) for k, v in value.items()}}
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not np.isfinite(value):
            return {"__float__": repr(value)}
        return value
    raise GenlabError(f"cannot save {key}: {type(value).__name__} is not a tensor, array or JSON value")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__ndarray__" in value:
            return tensors[value["__ndarray__"]].numpy()
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__list__" in value:
            return np.array([_decode(v, tensors) for v in value["__list__"]], dtype=object)
        if "__dict__" in value:
            return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
        if "__float__" in value:
            return float(value["__float__"])
        return {k: _decode(v, tensors) for k, v in value.items()}
    return value


def describe(model: GenerativeModel) -> str:
    """One line: name, likelihood kind and hyper-parameters."""
    params = ", ".join(f"{k}={v!r}" for k, v in model.get_params(deep=False).items() if not isinstance(v, (np.ndarray, torch.Tensor)))
    return f"{model.name}({params}) [likelihood: {model.likelihood}]"


