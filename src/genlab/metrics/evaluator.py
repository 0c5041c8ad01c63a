"""The evaluator: genlab's own feature space for sample metrics, trained per dataset.

No Inception weights can be downloaded offline, and Inception features suit small
grayscale images poorly anyway. So genlab trains a classic convolutional classifier
(conv + ReLU blocks, max-pooling, one hidden layer — the lecture's "typical
convolutional network for classification") on the training images with mini-batch Adam
(batch 64). Its penultimate layer (128 ReLU units) is the feature space for the Fréchet
distance, precision/recall and density/coverage, and its predictions give class
histograms and conditional accuracy. Its test accuracy is reported beside every
evaluation, so a weak feature space is visible.

Trained evaluators are cached in ``$GENLAB_DATA/evaluators/<key>/`` (safetensors + JSON),
keyed by a hash of the training images and labels, the architecture version and the seed.

Unlabelled data has no classifier to train; the fallback is :class:`PCAFeatures`: the
projection onto the top principal components of the training images (whitened). It is
deterministic and unsupervised, and for small grayscale images a few dozen components
carry most of the variance, so Fréchet distance and precision/recall in that space compare
the main modes of variation — it cannot judge fine detail, and the report says which
feature space was used.
"""

from __future__ import annotations

import hashlib
import math
import time
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

ARCHITECTURE_VERSION = 3
FEATURE_DIM = 128


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


def _to_unit(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device=device, dtype=torch.float32) / 255.0


def _random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Translate the batch by up to ``max_shift`` pixels (zero fill): cheap augmentation."""
    if max_shift <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return out


@dataclass
class Evaluator:
    """A trained feature extractor + classifier for one dataset (see module docstring)."""

    network: ConvClassifier | None
    image_shape: tuple[int, int, int]
    class_names: list[str] | None
    test_accuracy: float | None
    kind: str  # "classifier" or "pca"
    key: str
    pca: "PCAFeatures | None" = None
    device: torch.device = torch.device("cpu")
    train_seconds: float = 0.0

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """(N, C, H, W) uint8 -> (N, F) float32 features on the CPU."""
        self._check(images)
        if self.pca is not None:
            return self.pca.transform(images)
        self.network.eval()
        out = [self.network.features(_to_unit(images[i : i + batch_size], self.device)).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Predicted class of each image, int64 (N,); raises for the unlabelled fallback."""
        self._check(images)
        if self.network is None:
            raise GenlabError("this dataset has no labels, so the evaluator cannot classify images")
        self.network.eval()
        n_classes = len(self.class_names) if self.class_names else None
        out = [self.network(_to_unit(images[i : i + batch_size], self.device))[:, :n_classes].argmax(1).cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out)

    def _check(self, images: torch.Tensor) -> None:
        if tuple(images.shape[1:]) != tuple(self.image_shape):
            raise GenlabError(f"evaluator was trained on images of shape {self.image_shape}, got {tuple(images.shape[1:])}")

    def describe(self) -> str:
        if self.kind == "pca":
            return f"PCA features ({self.pca.n_components} whitened components; the data has no labels)"
        return f"conv classifier features ({FEATURE_DIM}-d), test accuracy {100 * self.test_accuracy:.2f}%"


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


def evaluator_key(train: Dataset, seed: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{ARCHITECTURE_VERSION}|seed{seed}|{tuple(train.images.shape)}".encode())
    h.update(train.images.numpy().tobytes())
    if train.labels is not None:
        h.update(train.labels.numpy().tobytes())
    return h.hexdigest()[:20]


def get_evaluator(
    train: Dataset,
    test: Dataset | None = None,
    *,
    seed: int = 0,
    epochs: int | None = None,
    device: str = "auto",
    cache: bool = True,
    echo=None,
) -> Evaluator:
    """The evaluator for ``train`` (trained once, then loaded from the cache).

    ``test`` (held-out images of the same dataset) measures its accuracy when it is trained.
    """
    key = evaluator_key(train, seed)
    dev = resolve_device(device)
    if train.labels is None or len(torch.unique(train.labels)) < 2:
        return Evaluator(None, train.image_shape, None, None, "pca", key, pca=PCAFeatures.fit(train.images), device=dev)
    folder = cache_dir() / "evaluators" / key
    n_classes = len(train.class_names or []) or int(train.labels.max()) + 1
    if cache and (folder / "meta.json").is_file():
        meta = read_json(folder / "meta.json")
        net = ConvClassifier(train.image_shape, n_classes + 1)
        net.load_state_dict(load_tensors(folder / "model.safetensors"))
        return Evaluator(net.to(dev).eval(), train.image_shape, train.class_names, meta["test_accuracy"], "classifier", key, device=dev, train_seconds=meta.get("train_seconds", 0.0))
    start = time.perf_counter()
    net = train_classifier(train, n_classes, seed=seed, epochs=epochs, device=dev)
    seconds = time.perf_counter() - start
    evaluator = Evaluator(net, train.image_shape, train.class_names, None, "classifier", key, device=dev, train_seconds=seconds)
    if test is not None and test.labels is not None:
        evaluator.test_accuracy = float((evaluator.predict(test.images) == test.labels).float().mean())
    if echo is not None:
        acc = "n/a" if evaluator.test_accuracy is None else f"{100 * evaluator.test_accuracy:.2f}%"
        echo(f"trained the evaluator classifier on {len(train)} images in {seconds:.0f} s (held-out accuracy {acc})")
    if cache:
        save_tensors(folder / "model.safetensors", net.state_dict())
        write_json(folder / "meta.json", {"test_accuracy": evaluator.test_accuracy, "n_train": len(train), "image_shape": list(train.image_shape), "class_names": train.class_names, "train_seconds": seconds, "architecture_version": ARCHITECTURE_VERSION})
    return evaluator


def train_classifier(train: Dataset, n_classes: int, *, seed: int = 0, epochs: int | None = None, batch_size: int = 64, lr: float = 2e-3, device: torch.device | None = None) -> ConvClassifier:
    """Mini-batch Adam with a cosine learning-rate decay and small random shifts."""
    device = device or torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # one extra output class: uniform-noise images. Without it the features map noise into
    # some digit's region (precision of noise ~0.85 on digits); with it noise is recognisably off-manifold.
    net = ConvClassifier(train.image_shape, n_classes + 1).to(device)
    n = len(train)
    if epochs is None:  # about 2,000 steps: 60 epochs of 8x8 digits, 16 of 8,000 MNIST images
        epochs = max(4, min(60, math.ceil(2000 * batch_size / n)))
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
