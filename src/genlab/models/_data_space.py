"""The ``data_space`` option shared by the families that map pixels to a continuous space
(diffusion, flow-matching, flow, gan): see :mod:`genlab.diffusion.pixel_space`."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..diffusion.pixel_space import DATA_SPACES, HISTOGRAM_MIX, PixelSpace, histogram_edges
from ..errors import GenlabError
from .schema import Param

#: the hyper-parameter (default: the histogram space since issue #14)
DATA_SPACE_PARAM = Param(
    "choice",
    "histogram",
    choices=DATA_SPACES,
    help="pixel levels -> [-1, 1]: cells sized by the training histogram, or linear x = 2u - 1",
)

HISTOGRAM_MIX_PARAM = Param(
    "float",
    HISTOGRAM_MIX,
    low=0.0,
    high=1.0,
    high_inclusive=False,
    help="data_space='histogram': weight of the training histogram in the cell widths (0 = linear)",
)


class DataSpaceMixin:
    """``data_space`` hyper-parameter -> fitted cell edges ``pixel_edges_`` (257,) float64
    (None for "linear") -> :class:`PixelSpace`. Models saved before the option existed were
    trained on ``x = 2u - 1`` and load with ``data_space="linear"``."""

    data_space: str
    histogram_mix: float
    loaded_defaults: ClassVar[dict[str, Any]] = {"data_space": "linear"}

    def _fit_pixel_space(self, images: torch.Tensor) -> None:
        """Fix the cell edges from the training images (before the network is built)."""
        self.pixel_edges_ = (
            histogram_edges(images, float(self.histogram_mix)) if self.data_space == "histogram" else None
        )

    def _pixel_space(self) -> PixelSpace:
        return PixelSpace(getattr(self, "pixel_edges_", None))

    def _check_loaded(self) -> None:
        super()._check_loaded()  # type: ignore[misc]
        if self.data_space == "histogram":
            self._expect_tensor("pixel_edges_", (257,))  # type: ignore[attr-defined]
        elif getattr(self, "pixel_edges_", None) is not None:
            raise GenlabError("fitted.pixel_edges_: a data_space='linear' model has no cell edges")
