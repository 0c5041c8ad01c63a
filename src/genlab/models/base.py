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
lower ``"bound"``, an unbiased ``"estimate"`` (flow matching), or ``"none"`` (then scoring
raises a clear error).

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
from ..validation import check_images, check_labels, check_n_samples, encode_labels
from .schema import Param, validate_values

#: capability tags a model class may declare (each names methods the model then has):
#: likelihood = score_samples/score/bits_per_dim; encode/decode/reconstruct = the latent codec;
#: interpolate, invert, edit, inpaint = the methods of those names; attributes = latent attribute
#: directions (encode + decode on labelled data)
CAPABILITIES = frozenset(
    {"likelihood", "encode", "decode", "reconstruct", "interpolate", "invert", "edit", "inpaint", "attributes"}
)
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
        "unconditional": Param(
            "bool",
            False,
            help="conditional models: sample the unconditional (null) branch instead of drawing labels/prompts from the training data",
        ),
    }
    #: whether a conditional model also learned an unconditional (null-label) branch
    has_null_branch: ClassVar[bool] = False
    #: hyper-parameters of ``__init__`` (name -> Param): validated at ``fit``, listed by ``genlab models --json``
    parameter_schema: ClassVar[dict[str, Param]] = {}
    #: what the model can do beyond fit/sample, a subset of :data:`CAPABILITIES`
    capabilities: ClassVar[frozenset[str]] = frozenset({"likelihood"})
    #: models with the "invert" capability: how they find an image's latent (shown by interpolate)
    inversion_method: ClassVar[str] = "inversion"
    #: the conditionings it supports, a subset of ("none", "label", "text")
    conditionings: ClassVar[tuple[str, ...]] = ("none",)
    #: hyper-parameter values for saved configs that lack them: the behaviour of the models
    #: saved before the parameter existed (its ``__init__`` default is the new behaviour)
    loaded_defaults: ClassVar[dict[str, Any]] = {}
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
        labels, classes = self._fit_labels(X, y, len(images))
        self._reset_fitted()
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        if labels is not None:  # training class frequencies: the default labels of sample(n)
            self.class_counts_ = torch.bincount(labels).to(torch.int64)
        if classes is not None:
            self.classes_ = classes
        self._fit(images, labels, **fit_args)
        self._after_fit(images)
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
        diffusion; ``tone_curve=False`` for neural models: round outputs to the nearest
        level instead of mapping them through the tone curve fitted after training, see
        :mod:`genlab.tone_curve`); unknown or out-of-range options raise a :class:`GenlabError`. Options are
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
                raise GenlabError(
                    f"{self.name or type(self).__name__} is not class-conditional; sample without y (labels)"
                )
            if options.get("unconditional"):
                raise GenlabError("give labels y or unconditional=True, not both")
            labels = check_labels(
                y, n, n_classes=getattr(self, "n_classes_", None), classes=getattr(self, "classes_", None)
            )
        elif self.conditional and not options.get("unconditional"):
            labels = self._default_labels(n, generator)
        tone_curve = bool(options.pop("tone_curve", True))  # how outputs become levels, not a sampler option
        out = self._sample(n, labels, generator, **options)
        return self._to_pixels(out, tone_curve=tone_curve, generator=generator).cpu()

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

    def _check_sample_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Options checked against ``sample_options`` (unknown names, types, ranges), then
        :meth:`_check_option_combination` for what one option alone cannot say."""
        checked = validate_values(
            options, type(self).sample_options, what=f"{self.name or type(self).__name__} sample options"
        )
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
        ll = ll.detach().cpu().to(torch.float64).numpy()
        bad = ~np.isfinite(ll)
        if bad.any():
            raise GenlabError(
                f"{self.name or type(self).__name__}: non-finite log-likelihood ({ll[bad][0]}) for {int(bad.sum())} of {len(ll)} images; "
                "the model's parameters or weights are degenerate (NaN/inf weights, an extreme bandwidth or variance) — refit it with sane settings"
            )
        return ll

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
        config = {
            "genlab_version": __version__,
            "model": self.name,
            "likelihood": self.likelihood,
            "params": params,
            "fitted": fitted,
        }
        nan = sorted(k for k, t in tensors.items() if t.is_floating_point() and bool(torch.isnan(t).any()))
        if nan:  # load refuses such a folder, so never write one
            raise GenlabError(
                f"cannot save {self.name or type(self).__name__} to {path}: tensor {nan[0]} holds NaN values ({len(nan)} tensor(s)); the model diverged — refit it"
            )
        path.mkdir(parents=True, exist_ok=True)
        # weights first: a config.json only ever points at weights that are complete
        save_tensors(path / WEIGHTS_FILE, tensors, metadata={"model": self.name})
        write_json(path / CONFIG_FILE, config)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "GenerativeModel":
        """Rebuild a saved model from ``config.json`` + ``model.safetensors``.

        Called on the base class it dispatches to the registered model named in the
        config; no code from the checkpoint is executed. The folder is validated as it is
        read: only known config keys; fitted names ending in ``_`` (never private names or
        the class's own attributes); every tensor reference present in the weights file and
        every tensor of the file used; network weights of exactly the shapes and dtypes the
        rebuilt network declares; hyper-parameters re-validated; no NaN/inf weights. Any
        problem raises :class:`GenlabError` naming the file and what is wrong.
        """
        try:
            return cls._load_checked(Path(path))
        except GenlabError as exc:  # names from the files may hold newlines: keep the message on one line
            message = str(exc)
            printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
            if printable == message:
                raise
            raise GenlabError(printable) from None

    @classmethod
    def _load_checked(cls, path: Path) -> "GenerativeModel":
        from .registry import get_model_class

        path = Path(path)
        config_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
        if not path.is_dir():
            raise GenlabError(f"{path}: not a model folder (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
        config = read_json(config_file)
        _check_config(config, config_file)
        try:
            model_cls = get_model_class(config["model"])
        except GenlabError as exc:
            raise GenlabError(f"{config_file}: {exc}") from None
        if cls is not GenerativeModel and not issubclass(model_cls, cls):
            raise GenlabError(f"{path}: holds a {config['model']!r} model, not {cls.__name__}")
        tensors = load_tensors(weights_file)
        used: set[str] = set()
        try:
            params = {k: _decode(v, tensors, f"params.{k}", used) for k, v in config["params"].items()}
        except GenlabError as exc:
            raise GenlabError(f"{config_file}: {exc}") from None
        params = {**model_cls.loaded_defaults, **params}
        valid = set(model_cls().get_params(deep=False))
        unknown = sorted(set(params) - valid)
        if unknown:
            raise GenlabError(
                f"{config_file}: unknown parameter(s) {', '.join(unknown)} for {config['model']}; valid: {', '.join(sorted(valid))}"
            )
        model = model_cls(**params)
        try:
            model._check_params()
        except GenlabError as exc:
            raise GenlabError(f"{config_file}: {exc}") from None
        modules: list[str] = []
        for key, value in config["fitted"].items():
            _check_fitted_name(model_cls, key, config_file)
            if isinstance(value, dict) and "__module__" in value:
                if value != {"__module__": key}:
                    raise GenlabError(f'{config_file}: fitted.{key}: a network entry must be {{"__module__": "{key}"}}')
                modules.append(key)
                continue
            try:
                setattr(model, key, _decode(value, tensors, f"fitted.{key}", used))
            except GenlabError as exc:
                raise GenlabError(f"{config_file}: {exc}") from None
        _check_image_shape(getattr(model, "image_shape_", None), config_file)
        model.image_shape_ = tuple(int(s) for s in model.image_shape_)
        if modules:
            used |= _load_modules(model, modules, tensors, config_file, weights_file)
        unused = sorted(set(tensors) - used)
        if unused:
            shown = ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else "")
            raise GenlabError(
                f"{weights_file}: {len(unused)} tensor(s) that {CONFIG_FILE} does not refer to ({shown}); the two files are from different models"
            )
        # NaN is never learned state (inf can be: a log-SNR schedule's end points)
        bad = sorted(
            k for k, t in tensors.items() if (t.is_floating_point() or t.is_complex()) and bool(torch.isnan(t).any())
        )
        if bad:
            raise GenlabError(
                f"{weights_file}: tensor {bad[0]} holds NaN values ({len(bad)} tensor(s) affected); the model diverged or the file is damaged — retrain it"
            )
        try:
            model._after_load()
            model._check_loaded()
        except GenlabError as exc:
            raise GenlabError(f"{config_file}: {exc}") from None
        except Exception as exc:  # hostile or damaged state the family cannot use: say so, no traceback
            raise GenlabError(
                f"{config_file}: the saved state does not fit a {config['model']} model ({exc.__class__.__name__}: {exc})"
            ) from None
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

    def _after_fit(self, images: torch.Tensor) -> None:
        """Called by ``fit`` after ``_fit`` with the training images (uint8 (N, C, H, W));
        neural models fit their tone curve here (:mod:`genlab.tone_curve`)."""

    def _to_pixels(
        self, out: torch.Tensor, *, tone_curve: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``_sample``'s output -> uint8 images: floats in [0, 1] are rounded to their level
        (:func:`~genlab.likelihood.quantize`); neural models may map them through their tone
        curve (whose tie-breaking draws from ``generator``, the sampling call's)."""
        return out if out.dtype == torch.uint8 else quantize(out)

    def _fit_labels(self, X: Any, y: Any, n: int) -> tuple[torch.Tensor | None, list | None]:
        """(class indices, label values) for a conditional fit; (None, None) otherwise.

        The user's label values need not be 0..K-1 (e.g. {0, 10**15}): they are re-indexed
        and kept as ``classes_`` so that ``sample(y=...)`` accepts them. For a Dataset the
        classes are its ``class_names`` (integers when every name is one)."""
        from ..data.dataset import Dataset

        if y is None or not self.conditional:
            return None, None
        names = X.class_names if isinstance(X, Dataset) and y is X.labels else None
        return encode_labels(y, n, class_names=names)

    def _check_params(self) -> None:
        """Validate the hyper-parameters (raise GenlabError naming the bad one) against
        ``parameter_schema`` (types, ranges, choices); called by ``fit`` and by ``load`` (so an
        edited config.json is refused). Families extend it (calling ``super()``) with what a
        schema cannot say (one parameter against another)."""
        schema = getattr(type(self), "parameter_schema", None)
        if schema:
            params = self.get_params(deep=False)
            validate_values(
                {k: v for k, v in params.items() if k in schema},
                schema,
                what=f"{self.name or type(self).__name__} parameters",
            )

    def _check_loaded(self) -> None:
        """Check the fitted state after ``load`` (shapes agree with ``image_shape_``, ...).
        Families with learned tensors extend it; raise GenlabError naming the attribute."""

    # ------------------------------------------------------------------ helpers
    def _expect_tensor(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """The fitted floating-point tensor ``name``, checked to have ``shape`` (for ``_check_loaded``)."""
        value = getattr(self, name, None)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise GenlabError(
                f"fitted.{name}: expected a floating-point tensor, got {type(value).__name__ if value is not None else 'nothing'}"
            )
        if tuple(value.shape) != tuple(shape):
            raise GenlabError(
                f"fitted.{name}: shape {tuple(value.shape)}, but a model of images {self.image_shape_} needs {tuple(shape)}"
            )
        return value

    @property
    def device_(self) -> torch.device:
        return resolve_device(getattr(self, "device", "auto"))

    def _reset_fitted(self) -> None:
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, key)

    def _check_fitted(self) -> None:
        if not hasattr(self, "image_shape_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X) first (or load a saved model)"
            )

    def _check_has_likelihood(self) -> None:
        if self.likelihood == "none":
            raise GenlabError(
                f"{self.name or type(self).__name__} has no likelihood (neither exact nor a bound); compare it with sample metrics (genlab evaluate) instead"
            )

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


_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__list__", "__dict__", "__float__")
_MAX_DEPTH = 32  # nesting genlab itself never exceeds; deeper JSON is refused, not recursed into
_MAX_IMAGE_VALUES = 1 << 26  # C*H*W of a loadable model: 64M values (a 4096x4096 RGB image is 50M)
CONFIG_KEYS = ("genlab_version", "model", "likelihood", "params", "fitted")


def _decode(
    value: Any, tensors: dict[str, torch.Tensor], key: str = "value", used: set[str] | None = None, depth: int = 0
) -> Any:
    """Inverse of :func:`_encode`. Raises GenlabError naming ``key`` for anything that
    ``_encode`` cannot have written (unknown markers, missing tensors, excessive nesting).
    The names of the tensors it uses are added to ``used``."""
    if depth > _MAX_DEPTH:
        raise GenlabError(f"{key}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, list):
        return [_decode(v, tensors, f"{key}.{i}", used, depth + 1) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        if isinstance(value, float) and not np.isfinite(value):
            raise GenlabError(f'{key}: bare {value!r} (genlab writes non-finite numbers as {{"__float__": ...}})')
        return value
    markers = [m for m in _MARKERS if m in value]
    if not markers:
        if any(not isinstance(k, str) or k.startswith("__") for k in value):
            raise GenlabError(f"{key}: unknown entry {next(k for k in value if k.startswith('__'))!r}")
        return {k: _decode(v, tensors, f"{key}.{k}", used, depth + 1) for k, v in value.items()}
    if len(value) != 1:
        raise GenlabError(
            f"{key}: a {markers[0]!r} entry must have no other keys (found {', '.join(sorted(map(str, value)))})"
        )
    marker, inner = markers[0], value[markers[0]]
    if marker in ("__tensor__", "__ndarray__"):
        if not isinstance(inner, str):
            raise GenlabError(f"{key}: tensor reference {inner!r} is not a name")
        if inner not in tensors:
            raise GenlabError(f"{key}: refers to tensor {inner!r}, which is not in {WEIGHTS_FILE}")
        if used is not None:
            used.add(inner)
        return tensors[inner] if marker == "__tensor__" else tensors[inner].numpy()
    if marker == "__float__":
        if inner not in ("nan", "inf", "-inf"):
            raise GenlabError(f"{key}: {{\"__float__\": {inner!r}}} is not one of 'nan', 'inf', '-inf'")
        return float(inner)
    if marker == "__dict__":
        if not isinstance(inner, dict):
            raise GenlabError(f"{key}: '__dict__' must hold an object, got {type(inner).__name__}")
        return {k: _decode(v, tensors, f"{key}.{k}", used, depth + 1) for k, v in inner.items()}
    if not isinstance(inner, list):
        raise GenlabError(f"{key}: {marker!r} must hold a list, got {type(inner).__name__}")
    items = [_decode(v, tensors, f"{key}.{i}", used, depth + 1) for i, v in enumerate(inner)]
    if marker == "__tuple__":
        return tuple(items)
    out = np.empty(len(items), dtype=object)  # "__list__": an object array, element by element
    for i, item in enumerate(items):
        out[i] = item
    return out


def _check_config(config: Any, config_file: Path) -> None:
    """The top level of a config.json: known keys, and each of the right JSON type."""
    if not isinstance(config, dict) or "model" not in config or "params" not in config:
        raise GenlabError(f"{config_file}: not a genlab model config (expected an object with 'model' and 'params')")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise GenlabError(
            f"{config_file}: unknown key(s) {', '.join(map(repr, unknown))}; a model config holds {', '.join(CONFIG_KEYS)}"
        )
    if not isinstance(config["model"], str):
        raise GenlabError(
            f"{config_file}: 'model' must be a model name (a string), got {type(config['model']).__name__}"
        )
    for name in ("genlab_version", "likelihood"):
        if name in config and not isinstance(config[name], str):
            raise GenlabError(f"{config_file}: {name!r} must be a string, got {type(config[name]).__name__}")
    for name in ("params", "fitted"):
        if not isinstance(config.get(name, {}), dict):
            raise GenlabError(
                f"{config_file}: {name!r} must be an object (name -> value), got {type(config[name]).__name__}"
            )
    config.setdefault("fitted", {})


def _check_fitted_name(model_cls: type, key: str, config_file: Path) -> None:
    """Fitted state is public attributes ending in ``_`` that the class does not define
    itself, so a config can neither replace a method or property nor set private state."""
    if not (isinstance(key, str) and key.isidentifier() and key.endswith("_") and not key.startswith("_")):
        raise GenlabError(
            f"{config_file}: fitted.{key}: not a fitted attribute name (those are public names ending in '_', like 'means_')"
        )
    if hasattr(model_cls, key):
        raise GenlabError(
            f"{config_file}: fitted.{key}: names an attribute of {model_cls.__name__} itself, not fitted state"
        )


def _check_image_shape(shape: Any, config_file: Path) -> None:
    ok = (
        isinstance(shape, (tuple, list))
        and len(shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
        and int(np.prod(shape, dtype=np.float64)) <= _MAX_IMAGE_VALUES
    )
    if not ok:
        raise GenlabError(
            f"{config_file}: fitted.image_shape_ = {shape!r} is not an image shape (C, H, W) of positive integers with C*H*W <= {_MAX_IMAGE_VALUES}"
        )


def _load_modules(
    model: GenerativeModel, keys: list[str], tensors: dict[str, torch.Tensor], config_file: Path, weights_file: Path
) -> set[str]:
    """Build the networks named in ``keys`` and load their weights; returns the tensor names used.

    The networks are first built on the meta device (no memory), so a config whose state
    asks for a huge network, or weights of another shape, dtype or family, are refused
    before anything is allocated."""

    def build() -> None:
        try:
            model._build_modules()
        except GenlabError as exc:
            raise GenlabError(f"{config_file}: {exc}") from None
        except Exception as exc:
            raise GenlabError(
                f"{config_file}: cannot rebuild the {model.name} network from this state ({exc.__class__.__name__}: {exc})"
            ) from None

    with torch.device("meta"):
        build()
    expected: dict[str, torch.Tensor] = {}
    for key in keys:
        module = getattr(model, key, None)
        if not isinstance(module, torch.nn.Module):
            raise GenlabError(
                f"{config_file}: fitted.{key} is marked as a network, but {model.name} builds no network of that name"
            )
        expected.update({f"{key}.{name}": t for name, t in module.state_dict().items()})
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise GenlabError(
            f"{weights_file}: {len(missing)} weight(s) of the {model.name} network missing (first: {missing[0]}); the file is from another model or family"
        )
    for name, want in expected.items():
        have = tensors[name]
        if tuple(have.shape) != tuple(want.shape) or have.dtype != want.dtype:
            raise GenlabError(
                f"{weights_file}: weight {name} is {_describe(have)} but the network declares {_describe(want)}; "
                "the file is from another model, family or configuration"
            )
    prefixes = tuple(f"{key}." for key in keys)
    extra = sorted(k for k in tensors if k.startswith(prefixes) and k not in expected)
    if extra:
        raise GenlabError(
            f"{weights_file}: {len(extra)} weight(s) the {model.name} network does not have (first: {extra[0]}); the file is from another model or family"
        )
    build()
    for key in keys:
        prefix = f"{key}."
        getattr(model, key).load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    return set(expected)


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).replace('torch.', '')} {tuple(t.shape)}"


def describe(model: GenerativeModel) -> str:
    """One line: name, likelihood kind and hyper-parameters."""
    params = ", ".join(
        f"{k}={v!r}" for k, v in model.get_params(deep=False).items() if not isinstance(v, (np.ndarray, torch.Tensor))
    )
    return f"{model.name}({params}) [likelihood: {model.likelihood}]"
