"""The in-memory image dataset and its fixed-seed splits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from ..errors import GenlabError


@dataclass
class Dataset:
    """Images with optional labels.

    Attributes
    ----------
    images : torch.Tensor
        uint8, shape (N, C, H, W), values 0..255 (0 = background/black).
    labels : torch.Tensor or None
        int64, shape (N,), values ``0..len(class_names)-1``.
    class_names : list of str or None
        Name of each label value.
    name : str
        Where the data came from (the spec it was loaded with).
    captions : list of str or None
        One caption per image, for text-conditional models.
    indices : numpy.ndarray
        Index of each image in the dataset it was cut from (identity for a loaded set).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    class_names: list[str] | None = None
    name: str = "dataset"
    captions: list[str] | None = None
    indices: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise GenlabError(f"{self.name}: images must be a uint8 tensor of shape (N, C, H, W)")
        n = self.images.shape[0]
        if n == 0:
            raise GenlabError(f"{self.name}: the dataset is empty")
        if self.labels is not None:
            self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
            if self.labels.shape != (n,):
                raise GenlabError(f"{self.name}: {self.labels.shape[0]} labels for {n} images")
            if self.class_names is None:
                self.class_names = [str(i) for i in range(int(self.labels.max()) + 1)]
        if self.captions is not None and len(self.captions) != n:
            raise GenlabError(f"{self.name}: {len(self.captions)} captions for {n} images")
        if self.indices is None:
            self.indices = np.arange(n)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        lab = f", {len(self.class_names)} classes" if self.labels is not None else ", unlabelled"
        return f"Dataset({self.name!r}, {len(self)} images of shape {tuple(self.image_shape)}{lab})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def n_dims(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def subset(self, index: Sequence[int] | np.ndarray) -> "Dataset":
        """The images at ``index`` (positions in this dataset), as a new Dataset."""
        idx = np.asarray(index, dtype=np.int64)
        t = torch.from_numpy(idx)
        return Dataset(
            images=self.images[t],
            labels=None if self.labels is None else self.labels[t],
            class_names=self.class_names,
            name=self.name,
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            indices=self.indices[idx],
        )

    def _stratify(self) -> np.ndarray | None:
        if self.labels is None:
            return None
        y = self.labels.numpy()
        counts = np.bincount(y)
        return y if counts[counts > 0].min() >= 2 else None

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """(train, test) with a fixed seed, stratified by label when labels exist.

        Uses ``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``,
        so ``split(0.2, 0)`` reproduces the fixed splits shipped with the shared data files.
        """
        if not 0.0 < test_fraction < 1.0:
            raise GenlabError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
        n_test = int(np.ceil(test_fraction * len(self)))
        if n_test < 1 or n_test >= len(self):
            raise GenlabError(f"{self.name}: {len(self)} images are too few for test_fraction={test_fraction}")
        idx = np.arange(len(self))
        strat = self._stratify()
        if strat is not None and n_test < len(np.unique(strat)):
            strat = None
        train, test = train_test_split(idx, test_size=test_fraction, stratify=strat, random_state=seed)
        return self.subset(np.sort(train)), self.subset(np.sort(test))

    def kfold(self, k: int = 5, seed: int = 0) -> list[tuple["Dataset", "Dataset"]]:
        """``k`` (train, held-out) pairs; stratified by label when labels exist."""
        return list(self.iter_folds(k, seed))

    def iter_folds(self, k: int = 5, seed: int = 0) -> Iterator[tuple["Dataset", "Dataset"]]:
        if int(k) != k or k < 2:
            raise GenlabError(f"k={k}: the number of folds must be an integer >= 2")
        if k > len(self):
            raise GenlabError(f"{self.name}: {len(self)} images are too few for {k} folds")
        strat = self._stratify()
        if (
            strat is not None
            and np.bincount(strat).max(initial=0)
            and np.bincount(strat)[np.bincount(strat) > 0].min() >= k
        ):
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            parts = splitter.split(np.zeros(len(self)), strat)
        else:
            parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(self)))
        for train, test in parts:
            yield self.subset(train), self.subset(test)
