"""The evaluator: genlab's own feature space for sample metrics, trained per dataset.

No Inception weights can be downloaded offline, and Inception features suit small
grayscale images poorly anyway. So genlab trains a classic convolutional classifier
(conv + ReLU blocks, max-pooling, one hidden layer — the lecture's "typical
convolutional network for classification") on the training images with mini-batch Adam
(batch 64). Its penultimate layer (128 ReLU units) is the feature space for the Fréchet
distance, precision/recall and density/coverage, and its predictions give class
histograms and conditional accuracy. Its test accuracy is reported beside every
evaluation, so a weak feature space is visible.

A second, independent feature space (``space="mlp"``) checks the first: a multi-layer
perceptron on flattened pixels (no convolutions), another seed, trained on a different
random 80% of the training images. A model ranking that holds in only one of the two
spaces is a property of that network, not of the samples.

Trained evaluators are cached in ``$GENLAB_DATA/evaluators/<key>/`` (safetensors + JSON,
written into a temporary folder and renamed into place), keyed by a hash of everything
that shapes them (:func:`training_recipe`): feature space and architecture version, a hash
of this file's code, epochs, batch size, learning rate, seed, training subset and a
SHA-256 of the training images and labels. An evaluator whose held-out accuracy is below
:func:`accuracy_floor` is reported loudly and never cached.

Unlabelled data has no classifier to train; the fallback is :class:`PCAFeatures`: the
projection onto the top principal components of the training images (whitened). It is
deterministic and unsupervised, and for small grayscale images a few dozen components
carry most of the variance, so Fréchet distance and precision/recall in that space compare
the main modes of variation — it cannot judge fine detail, and the report says which
feature space was used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.dataset import Dataset
from ..data.download import cache_dir
from ..device import resolve_device
from ..errors import GenlabError
from ..io import load_tensors, read_json, save_tensors, write_json
from ..progress import progress

ARCHITECTURE_VERSION = 4
FEATURE_DIM = 128
BATCH_SIZE = 64
LR = 2e-3


class ConvClassifier(nn.Module):
    """Conv(3x3)+ReLU then 2x2 max-pool, repeated while the image is >= 8 px (channels
    16, 32, 64, ...), then a 128-unit ReLU layer (the features) and a linear classifier.

    Input: float images (B, C, H, W) in [0, 1]. Output: logits (B, n_classes).
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, width: int = 16) -> None:
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        channels, out = c, width
        while True:
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True)]
            channels = out
            if min(h, w) < 8:
                break
            layers.append(nn.MaxPool2d(2))
            h, w, out = h // 2, w // 2, min(out * 2, 128)
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * h * w, FEATURE_DIM), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


class MLPClassifier(nn.Module):
    """The second, independent feature space: flattened pixels -> 256 ReLU -> 128 ReLU (the
    features) -> linear classifier. No convolutions, so no shared inductive bias with
    :class:`ConvClassifier`. Input: float images (B, C, H, W) in [0, 1]."""

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, hidden: int = 256) -> None:
        super().__init__()
        d = int(np.prod(image_shape))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(d, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, FEATURE_DIM),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.3)
        self.classifier = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def make_classifier(space: str, image_shape: tuple[int, int, int], n_outputs: int) -> nn.Module:
    """The network of feature space ``space`` ("conv" or "mlp")."""
    return MLPClassifier(image_shape, n_outputs) if space == "mlp" else ConvClassifier(image_shape, n_outputs)


def _to_unit(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device=device, dtype=torch.float32) / 255.0


def _random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate the batch by up to ``max_shift`` pixels (zero fill): cheap augmentation."""
    if max_shift <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@dataclass
class Evaluator:
    """A trained feature extractor + classifier for one dataset (see module docstring)."""

    network: nn.Module | None
    image_shape: tuple[int, int, int]
    class_names: list[str] | None
    test_accuracy: float | None
    kind: str  # "classifier" or "pca"
    key: str
    pca: "PCAFeatures | None" = None
    device: torch.device = torch.device("cpu")
    train_seconds: float = 0.0
    space: str = "conv"  # "conv", "mlp" or "pca"
    accuracy_floor: float | None = None

    @property
    def below_floor(self) -> bool:
        """True when the held-out accuracy is known and below :func:`accuracy_floor`."""
        return (
            self.test_accuracy is not None
            and self.accuracy_floor is not None
            and self.test_accuracy < self.accuracy_floor
        )

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """(N, C, H, W) uint8 -> (N, F) float32 features on the CPU."""
        self._check(images)
        if self.pca is not None:
            return self.pca.transform(images)
        self.network.eval()
        out = [
            self.network.features(_to_unit(images[i : i + batch_size], self.device)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Predicted class of each image, int64 (N,); raises for the unlabelled fallback."""
        self._check(images)
        if self.network is None:
            raise GenlabError("this dataset has no labels, so the evaluator cannot classify images")
        self.network.eval()
        n_classes = len(self.class_names) if self.class_names else None
        out = [
            self.network(_to_unit(images[i : i + batch_size], self.device))[:, :n_classes].argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out)

    def _check(self, images: torch.Tensor) -> None:
        if tuple(images.shape[1:]) != tuple(self.image_shape):
            raise GenlabError(
                f"evaluator was trained on images of shape {self.image_shape}, got {tuple(images.shape[1:])}"
            )

    def describe(self) -> str:
        if self.kind == "pca":
            return f"PCA features ({self.pca.n_components} whitened components; the data has no labels)"
        acc = "n/a" if self.test_accuracy is None else f"{100 * self.test_accuracy:.2f}%"
        warning = " — BELOW THE ACCURACY FLOOR, not trustworthy" if self.below_floor else ""
        return f"{self.space} classifier features ({FEATURE_DIM}-d), test accuracy {acc}{warning}"


class PCAFeatures:
    """Whitened projection onto the top principal components (the unlabelled fallback)."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, scale: torch.Tensor) -> None:
        self.mean, self.components, self.scale = mean, components, scale

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, images: torch.Tensor, n_components: int = 64) -> "PCAFeatures":
        X = images.reshape(len(images), -1).to(torch.float64) / 255.0
        mean = X.mean(0)
        _, s, vt = torch.linalg.svd(X - mean, full_matrices=False)
        k = min(n_components, vt.shape[0])
        scale = (s[:k] / math.sqrt(max(len(X) - 1, 1))).clamp(min=1e-8)
        return cls(mean.float(), vt[:k].float(), scale.float())

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        X = images.reshape(len(images), -1).float() / 255.0
        return ((X - self.mean) @ self.components.T) / self.scale


#: the feature spaces genlab trains, by name: the primary conv net and an independent second opinion
SPACES = ("conv", "mlp")
#: the second space's training subset: this share of the training images, drawn with its own seed
MLP_SUBSET_FRACTION = 0.8
MLP_SEED_OFFSET = 1_000_003
#: the evaluator code itself is part of the cache key: any change to this file retrains
CODE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def accuracy_floor(n_classes: int) -> float:
    """The lowest held-out accuracy an evaluator may have: chance + 80% of the way to 1
    (0.82 for 10 classes, 0.9 for 2). Below it the feature space is not a judge."""
    chance = 1.0 / max(int(n_classes), 1)
    return chance + 0.8 * (1.0 - chance)


def data_fingerprint(train: Dataset) -> str:
    """SHA-256 of the images (with their shape) and labels."""
    h = hashlib.sha256(f"{tuple(train.images.shape)}".encode())
    h.update(train.images.numpy().tobytes())
    if train.labels is not None:
        h.update(train.labels.numpy().tobytes())
    return h.hexdigest()


def training_recipe(train: Dataset, *, space: str = "conv", seed: int = 0, epochs: int | None = None) -> dict:
    """Everything that shapes a trained evaluator (the cache key is its hash)."""
    if space not in SPACES:
        raise GenlabError(f"evaluator space {space!r}: expected one of {', '.join(SPACES)}")
    n_train = len(train) if space == "conv" else max(2, int(round(MLP_SUBSET_FRACTION * len(train))))
    return {
        "space": space,
        "architecture_version": ARCHITECTURE_VERSION,
        "code": CODE_HASH,
        "seed": int(seed) + (MLP_SEED_OFFSET if space == "mlp" else 0),
        "epochs": int(default_epochs(n_train, BATCH_SIZE) if epochs is None else epochs),
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "subset": None if space == "conv" else {"fraction": MLP_SUBSET_FRACTION, "n": n_train},
        "data": data_fingerprint(train),
        "image_shape": list(train.image_shape),
    }


def evaluator_key(train: Dataset, seed: int, *, space: str = "conv", epochs: int | None = None) -> str:
    recipe = training_recipe(train, space=space, seed=seed, epochs=epochs)
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


def _training_subset(train: Dataset, recipe: dict) -> Dataset:
    """The images a recipe trains on: all of ``train``, or its own random subset (second space)."""
    if recipe["subset"] is None:
        return train
    g = torch.Generator().manual_seed(recipe["seed"])
    idx = torch.randperm(len(train), generator=g)[: recipe["subset"]["n"]]
    return Dataset(train.images[idx], train.labels[idx], train.class_names, name=train.name)


def _write_cache(folder: Path, net: nn.Module, meta: dict) -> None:
    """Write the evaluator into a temporary sibling folder, then rename it into place:
    a crash leaves either no cache entry or a whole one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_tensors(tmp / "model.safetensors", net.state_dict())
        write_json(tmp / "meta.json", meta)
        if folder.exists():  # written meanwhile by another process: keep that one
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def get_evaluator(
    train: Dataset,
    test: Dataset | None = None,
    *,
    seed: int = 0,
    epochs: int | None = None,
    device: str = "auto",
    cache: bool = True,
    echo=None,
    space: str = "conv",
    min_accuracy: float | None = None,
) -> Evaluator:
    """The evaluator for ``train`` in feature space ``space`` (trained once, then loaded from the cache).

    ``space``: "conv" (:class:`ConvClassifier` on all of ``train``) or "mlp" (the independent
    second opinion: :class:`MLPClassifier`, another seed, a different random 80% of ``train``).
    ``test`` (held-out images of the same dataset) measures its accuracy when it is trained.
    The cache key covers the recipe (:func:`training_recipe`: space, architecture, evaluator
    code, epochs, batch size, learning rate, seed, subset and a hash of the data). An
    evaluator whose held-out accuracy is below ``min_accuracy`` (default
    :func:`accuracy_floor`) is reported with a loud warning and never cached; a cached one
    below the floor is retrained.
    """
    recipe = training_recipe(train, space=space, seed=seed, epochs=epochs)
    key = evaluator_key(train, seed, space=space, epochs=epochs)
    dev = resolve_device(device)
    if train.labels is None or len(torch.unique(train.labels)) < 2:
        return Evaluator(
            None, train.image_shape, None, None, "pca", key, pca=PCAFeatures.fit(train.images), device=dev, space="pca"
        )
    folder = cache_dir() / "evaluators" / key
    n_classes = len(train.class_names or []) or int(train.labels.max()) + 1
    floor = accuracy_floor(n_classes) if min_accuracy is None else float(min_accuracy)
    if cache and (folder / "meta.json").is_file():
        meta = read_json(folder / "meta.json")
        acc = meta.get("test_accuracy")
        if meta.get("recipe") == recipe and (acc is None or acc >= floor):
            net = make_classifier(space, train.image_shape, n_classes + 1)
            net.load_state_dict(load_tensors(folder / "model.safetensors"))
            return Evaluator(
                net.to(dev).eval(),
                train.image_shape,
                train.class_names,
                acc,
                "classifier",
                key,
                device=dev,
                train_seconds=meta.get("train_seconds", 0.0),
                space=space,
                accuracy_floor=floor,
            )
        _warn(
            echo,
            f"the cached {space} evaluator in {folder} does not match its recipe or its held-out accuracy {acc} is below {floor:.2f}: retraining it",
        )
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    net = train_classifier(
        _training_subset(train, recipe),
        n_classes,
        seed=recipe["seed"],
        epochs=recipe["epochs"],
        device=dev,
        space=space,
    )
    seconds = time.perf_counter() - start
    evaluator = Evaluator(
        net,
        train.image_shape,
        train.class_names,
        None,
        "classifier",
        key,
        device=dev,
        train_seconds=seconds,
        space=space,
        accuracy_floor=floor,
    )
    if test is not None and test.labels is not None:
        evaluator.test_accuracy = float((evaluator.predict(test.images) == test.labels).float().mean())
    if echo is not None:
        acc = "n/a" if evaluator.test_accuracy is None else f"{100 * evaluator.test_accuracy:.2f}%"
        echo(
            f"trained the {space} evaluator classifier on {len(train) if recipe['subset'] is None else recipe['subset']['n']} images in {seconds:.0f} s (held-out accuracy {acc})"
        )
    if evaluator.below_floor:
        _warn(
            echo,
            f"the {space} evaluator reached only {100 * evaluator.test_accuracy:.1f}% held-out accuracy (floor {100 * floor:.0f}% for {n_classes} classes): "
            "its FD, precision/recall, density/coverage and class metrics are not trustworthy; it is not cached (train it longer: more --evaluator-epochs)",
        )
    elif cache:
        _write_cache(
            folder,
            net,
            {
                "recipe": recipe,
                "test_accuracy": evaluator.test_accuracy,
                "n_train": len(train),
                "image_shape": list(train.image_shape),
                "class_names": train.class_names,
                "train_seconds": seconds,
                "architecture_version": ARCHITECTURE_VERSION,
            },
        )
    return evaluator


def get_evaluators(
    train: Dataset, test: Dataset | None = None, *, spaces: tuple[str, ...] = SPACES, **kwargs
) -> list[Evaluator]:
    """One evaluator per feature space (the first is the primary one); unlabelled data: only PCA."""
    first = get_evaluator(train, test, space=spaces[0], **kwargs)
    if first.kind == "pca":
        return [first]
    return [first] + [get_evaluator(train, test, space=s, **kwargs) for s in spaces[1:]]


def _warn(echo, message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    if echo is not None:
        echo("WARNING: " + message)


def default_epochs(n: int, batch_size: int) -> int:
    """About 2,000 steps: 60 epochs of 8x8 digits, 16 of 8,000 MNIST images."""
    return max(4, min(60, math.ceil(2000 * batch_size / max(n, 1))))


def train_classifier(
    train: Dataset,
    n_classes: int,
    *,
    seed: int = 0,
    epochs: int | None = None,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    device: torch.device | None = None,
    space: str = "conv",
) -> nn.Module:
    """Mini-batch Adam with a cosine learning-rate decay and small random shifts."""
    device = device or torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # one extra output class: uniform-noise images. Without it the features map noise into
    # some digit's region (precision of noise ~0.85 on digits); with it noise is recognisably off-manifold.
    net = make_classifier(space, train.image_shape, n_classes + 1).to(device)
    n = len(train)
    if epochs is None:
        epochs = default_epochs(n, batch_size)
    steps = epochs * math.ceil(n / batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    images, labels = train.images, train.labels
    max_shift = 1 if min(train.image_shape[1:]) <= 16 else 2
    net.train()
    bar = progress(total=steps, desc="training evaluator", unit="step")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            x = _random_shift(_to_unit(images[idx], device), g, max_shift)
            noise = torch.rand((max(1, len(idx) // 8), *x.shape[1:]), generator=g).to(device)
            target = torch.cat([labels[idx], torch.full((len(noise),), n_classes)]).to(device)
            loss = nn.functional.cross_entropy(net(torch.cat([x, noise])), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    return net.eval()
