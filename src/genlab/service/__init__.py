"""The workflows behind every ``genlab`` command, as library functions.

The command line (:mod:`genlab.cli`) and any other front end (a web UI, a notebook) call
the same functions: each takes plain arguments and an ``echo`` callback for progress
lines, returns a small result dataclass and raises :class:`genlab.errors.GenlabError` for
bad input. Nothing here prints or exits.

========================  ==========================================================
:func:`fit_run`           train a model and write a run folder (``genlab fit``)
:func:`cross_validate`    k-fold held-out log-likelihood over a grid (``genlab cv``)
:func:`sample_run`        draw images from a run into a PNG grid / .npy (``genlab sample``)
:func:`score_run`         held-out log-likelihood of a run (``genlab score``)
:func:`evaluate_run`      sample-quality metrics of a run (``genlab evaluate``)
:func:`interpolate_run`   latent walk between two real images (``genlab interpolate``)
:func:`reconstruct_run`   autoencoder reconstructions (``genlab reconstruct``)
:func:`edit_run`          SDEdit image-to-image with a diffusion run (``genlab edit``)
:func:`inpaint_run`       regenerate part of images with a diffusion run (``genlab inpaint``)
========================  ==========================================================
"""

from __future__ import annotations

from .common import Echo
from .fitting import CVResult, FitResult, cross_validate, fit_run
from .manipulation import (
    EditResult,
    InpaintResult,
    InterpolateResult,
    ReconstructResult,
    edit_run,
    inpaint_run,
    interpolate_run,
    reconstruct_run,
)
from .sampling import SampleResult, sample_run
from .scoring import EvaluateResult, ScoreResult, evaluate_run, score_run

__all__ = [
    "Echo",
    "fit_run",
    "FitResult",
    "cross_validate",
    "CVResult",
    "sample_run",
    "SampleResult",
    "score_run",
    "ScoreResult",
    "evaluate_run",
    "EvaluateResult",
    "interpolate_run",
    "InterpolateResult",
    "reconstruct_run",
    "ReconstructResult",
    "edit_run",
    "EditResult",
    "inpaint_run",
    "InpaintResult",
]
