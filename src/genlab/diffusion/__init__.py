"""Gaussian diffusion, separate from any one model: noise schedules, the training loss
and likelihood bound around a denoising network, and samplers.

* :mod:`.schedules` — :class:`NoiseSchedule` ("cosine", "linear"): log-SNR, alphas_cumprod
* :mod:`.gaussian` — :class:`GaussianDiffusion` (loss, denoisers with classifier-free
  guidance, the variational bound), :func:`q_sample`, parametrisations
* :mod:`.samplers` — :class:`DDPMSampler`, :class:`DDIMSampler`, :class:`DPMSolverPP2M`,
  :func:`make_sampler`, :func:`ddim_invert`, :func:`classifier_free_guidance`
* :mod:`.pixel_space` — :class:`PixelSpace` (dequantised pixels <-> [-1, 1], one linear
  cell per level), :func:`histogram_edges` (cells sized by the training histogram)
* :mod:`.editing` — :func:`sdedit` (image-to-image), :func:`inpaint`,
  :func:`interpolate_via_inversion` (DDIM inversion + slerp)

The registered model ``diffusion`` (:mod:`genlab.models.diffusion`) puts them together
with :class:`genlab.nn.UNet`.
"""

from .editing import inpaint, interpolate_via_inversion, sdedit
from .gaussian import (
    LOSS_WEIGHTINGS,
    PREDICTIONS,
    GaussianDiffusion,
    loss_weight,
    q_sample,
    to_prediction,
    training_target,
)
from .pixel_space import DATA_SPACES, PixelSpace, histogram_edges
from .samplers import (
    SAMPLERS,
    DDIMSampler,
    DDPMSampler,
    Denoiser,
    DPMSolverPP2M,
    Prediction,
    Sampler,
    check_guidance,
    classifier_free_guidance,
    ddim_invert,
    make_sampler,
)
from .schedules import SCHEDULES, CosineSchedule, LinearSchedule, NoiseSchedule, RectifiedFlowSchedule, make_schedule

__all__ = [
    "DATA_SPACES",
    "PixelSpace",
    "histogram_edges",
    "LOSS_WEIGHTINGS",
    "PREDICTIONS",
    "SAMPLERS",
    "SCHEDULES",
    "CosineSchedule",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPP2M",
    "Denoiser",
    "GaussianDiffusion",
    "LinearSchedule",
    "NoiseSchedule",
    "Prediction",
    "RectifiedFlowSchedule",
    "Sampler",
    "check_guidance",
    "classifier_free_guidance",
    "ddim_invert",
    "inpaint",
    "interpolate_via_inversion",
    "sdedit",
    "loss_weight",
    "make_sampler",
    "make_schedule",
    "q_sample",
    "to_prediction",
    "training_target",
]
