"""The standard FID (Heusel et al. 2017) through torch-fidelity, from a local weights file.

genlab's own ``fd`` uses an evaluator trained on each dataset; papers report FID with the
2048-d pool features of the FID Inception-v3 (the TensorFlow 2015-12-05 graph). This
module computes that number with torch-fidelity's port of the network
(``FeatureExtractorInceptionV3``: uint8 RGB in, its TensorFlow-1 compatible bilinear
resize to 299 x 299, pool3 features out). The Fréchet distance of the two feature sets is
genlab's :func:`~genlab.metrics.frechet.frechet_distance` (the same mean and unbiased
covariance, float64): it equals torch-fidelity's ``fid_statistics_to_metric`` to rounding
(tested) but takes symmetric eigendecompositions instead of the eigenvalues of the
non-symmetric 2048 x 2048 product Σ₁Σ₂ — about 10x faster on a CPU, real-valued for
singular covariances, never negative.

Only a file the user passes is used: genlab never downloads the weights (torch-fidelity
would when given no path). The file is ``weights-inception-2015-12-05-6726825d.pth``
from torch-fidelity's releases, or the same state dict as ``.safetensors``. It is read
with ``torch.load(weights_only=True)`` (or safetensors) — never as an arbitrary pickle —
and checked against the network before use.

torch-fidelity (not torchmetrics) because torchmetrics' ``FrechetInceptionDistance`` is a
wrapper of this very network that needs torch-fidelity installed anyway.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..device import resolve_device
from ..errors import GenlabError
from ..models.validation import check_images
from .frechet import frechet_distance

#: the file torch-fidelity's FID Inception-v3 loads (its release v0.2.0)
WEIGHTS_FILE_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + WEIGHTS_FILE_NAME
#: the FID layer: 2048-d average-pooled features before the classifier
FEATURE_LAYER = "2048"
INSTALL_HINT = "pip install 'genlab[fid]'"


def _torchvision_hint() -> str:
    # pinning torch makes pip pick the torchvision built for it instead of replacing torch
    pinned = f"pip install torchvision torch=={torch.__version__.split('+')[0]}"
    return pinned + (
        " --index-url https://download.pytorch.org/whl/cpu"
        if "+cpu" in torch.__version__
        else " (from the index your torch came from)"
    )


def _torch_fidelity():
    """torch-fidelity's FeatureExtractorInceptionV3; every way it can be missing or broken is a GenlabError."""
    try:
        from torch_fidelity import FeatureExtractorInceptionV3
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing == "torch_fidelity":
            raise GenlabError(
                f"the standard FID needs torch-fidelity, which is not installed: {INSTALL_HINT}"
            ) from None
        hint = _torchvision_hint() if missing == "torchvision" else INSTALL_HINT
        raise GenlabError(f"torch-fidelity is installed but cannot import {missing or err}: {hint}") from None
    except Exception as err:  # noqa: BLE001 - a torchvision built for another torch raises RuntimeError on import
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise GenlabError(
            f"torch-fidelity cannot be imported ({type(err).__name__}: {first_line}); usually its torchvision was "
            f"built for another torch than {torch.__version__}: {_torchvision_hint()}"
        ) from None
    return FeatureExtractorInceptionV3


def _check_weights_file(weights_path: str | Path) -> Path:
    path = Path(weights_path).expanduser()
    if not path.exists():
        raise GenlabError(
            f"inception weights {path}: no such file (genlab never downloads it; get {WEIGHTS_FILE_NAME} from {WEIGHTS_URL})"
        )
    if not path.is_file():
        raise GenlabError(f"inception weights {path}: not a file")
    return path


def check_inception_backend(weights_path: str | Path) -> Path:
    """Fail fast, before any sampling: the weights file exists and torch-fidelity imports.

    Returns the path. (Its contents are checked when the network is built.)
    """
    path = _check_weights_file(weights_path)
    _torch_fidelity()
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, read without running any pickled code."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise GenlabError(f"inception weights {path}: cannot be read (permission denied)") from None
    except Exception as err:  # noqa: BLE001 - torch/safetensors raise many types for a bad file
        if "Unsupported global" in str(err):
            raise GenlabError(
                f"inception weights {path}: holds Python objects besides tensors; genlab only loads plain weights (torch.load with weights_only=True)"
            ) from None
        raise GenlabError(
            f"inception weights {path}: unreadable, not a PyTorch or safetensors weights file ({type(err).__name__})"
        ) from None
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise GenlabError(
            f"inception weights {path}: not Inception-v3 FID weights (expected a state dict of tensors, found {type(state).__name__})"
        )
    return dict(state)


@functools.lru_cache(maxsize=1)
def _load_network(path_key: str, mtime_ns: int, size: int, device: str) -> torch.nn.Module:
    """torch-fidelity's FID Inception-v3 with the file's weights (cached for the same file and device)."""
    path = Path(path_key)
    inception_class = _torch_fidelity()
    state = _read_state_dict(path)
    # torch-fidelity loads its weights with torch.load(weights_only=False) — from the internet when
    # given no path. Hand it an in-memory copy of the tensors read safely above: no download, no
    # unpickling of the user's file.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        network = inception_class("inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=buffer)
    except RuntimeError as err:  # load_state_dict(strict=True): missing / unexpected keys, wrong shapes
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()] or [str(err)]
        detail = "; ".join(line if len(line) <= 160 else line[:157] + "..." for line in lines[:3])
        raise GenlabError(f"inception weights {path}: not Inception-v3 FID weights ({detail})") from None
    return network.to(device).eval()


def load_fid_inception(weights_path: str | Path, device: str | torch.device = "auto") -> torch.nn.Module:
    """torch-fidelity's FID Inception-v3 with weights from ``weights_path`` only, on ``device``, in eval mode.

    Called on uint8 images (N, 3, H, W) it returns a 1-tuple with the (N, 2048) float32
    pool features. The last network is cached (same file, unchanged, same device).
    """
    path = _check_weights_file(weights_path)
    stat = path.stat()
    return _load_network(str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(resolve_device(device)))


def _as_rgb_uint8(images: Any, name: str, min_images: int = 1) -> torch.Tensor:
    x = check_images(images, name=name)
    if x.shape[1] not in (1, 3):
        raise GenlabError(f"{name}: {x.shape[1]} channels; the Inception network takes grayscale (1) or RGB (3) images")
    if len(x) < min_images:
        raise GenlabError(f"{name}: {len(x)} image; FID fits a covariance and needs at least {min_images}")
    return x


def inception_features(
    images_uint8: Any, weights_path: str | Path, *, batch_size: int = 64, device: str | torch.device = "auto"
) -> torch.Tensor:
    """FID Inception-v3 pool features of ``images_uint8`` (N, C, H, W) uint8, C = 1 or 3.

    Grayscale is replicated to RGB, as torch-fidelity's image loader does (PIL ``convert("RGB")``);
    torch-fidelity's network resizes to 299 x 299 itself. Returns (N, 2048) float32 on the CPU.
    """
    x = _as_rgb_uint8(images_uint8, "images_uint8")
    if int(batch_size) < 1:
        raise GenlabError(f"batch_size={batch_size}: must be >= 1")
    network = load_fid_inception(weights_path, device)
    dev = next(network.parameters()).device
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(x), int(batch_size)):
            batch = x[start : start + int(batch_size)].to(dev)
            if batch.shape[1] == 1:
                batch = batch.repeat(1, 3, 1, 1)
            (features,) = network(batch)
            chunks.append(features.float().cpu())
    return torch.cat(chunks)


# compare and evaluate score several sample sets against the same held-out images: keep the
# features of the last reference set (keyed by the weights file and the image bytes)
_reference_cache: dict[tuple, torch.Tensor] = {}


def _reference_features(reference: torch.Tensor, weights_path: str | Path, batch_size: int, device) -> torch.Tensor:
    path = _check_weights_file(weights_path)
    stat = path.stat()
    digest = hashlib.blake2b(reference.numpy().tobytes(), digest_size=16).hexdigest()
    key = (
        str(path.resolve()),
        stat.st_mtime_ns,
        stat.st_size,
        str(resolve_device(device)),
        tuple(reference.shape),
        digest,
    )
    if key not in _reference_cache:
        features = inception_features(reference, weights_path, batch_size=batch_size, device=device)
        _reference_cache.clear()
        _reference_cache[key] = features
    return _reference_cache[key]


def inception_fid(
    samples_uint8: Any,
    reference_uint8: Any,
    weights_path: str | Path,
    *,
    batch_size: int = 64,
    device: str | torch.device = "auto",
) -> float:
    """The standard FID between two image sets, with the FID Inception-v3 weights in ``weights_path``.

    Parameters
    ----------
    samples_uint8, reference_uint8 : uint8 images (N, C, H, W) or (N, H, W), C = 1 or 3, N >= 2
        each (any size: the network resizes to 299 x 299). The two sets may differ in N and size.
    weights_path : torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (or its tensors
        as ``.safetensors``). Nothing is downloaded.
    batch_size : images per forward pass.
    device : "auto", "cpu", "cuda", ...

    Returns
    -------
    float >= 0, FID in squared feature units: the Fréchet distance between Gaussians fitted to the
    2048-d features. Like every FID it is biased upwards for small N: compare models only at equal N.
    """
    samples = _as_rgb_uint8(samples_uint8, "samples_uint8", min_images=2)
    reference = _as_rgb_uint8(reference_uint8, "reference_uint8", min_images=2)
    _check_weights_file(weights_path)  # a missing file is named before anything else happens
    _torch_fidelity()
    fake = inception_features(samples, weights_path, batch_size=batch_size, device=device)
    real = _reference_features(reference, weights_path, batch_size, device)
    return frechet_distance(fake, real)
