"""Generator and discriminator networks of the GAN family.

Two pairs, both sized from the image shape by :func:`genlab.nn.conv.conv_plan` (so
8x8, 16x16, 28x28, 32x32, 64x64 and odd or non-square sizes work, any channel count):

* **DCGAN** (Radford et al. 2016): the generator projects the latent to the smallest
  feature map, then stride-2 transposed convolutions with BatchNorm + ReLU up to the image
  size and a tanh; the discriminator mirrors it with stride-2 convolutions and LeakyReLU
  (slope 0.2), no normalisation (BatchNorm in D breaks the gradient penalty and spectral
  norm does its job).
* **ResNet** (SNGAN, Miyato et al. 2018 / BigGAN, Brock et al. 2019): pre-activation
  residual blocks, nearest-neighbour upsampling in G and average-pool downsampling in D,
  1x1 learned shortcuts where the channel count changes.

Conditioning on class labels (``n_classes > 0``): the one-hot label is appended to z, every
BatchNorm of G is a :class:`ConditionalBatchNorm2d` (per-class gain and bias, de Vries et
al. 2017) and D is a
projection discriminator (Miyato & Koyama 2018): ``D(x, y) = ψ(φ(x)) + <e_y, φ(x)>``.
Labels are ints (B,) or soft one-hot rows (B, K), so class mixtures interpolate.

``spectral_norm=True`` wraps every conv/linear weight with
:func:`torch.nn.utils.parametrizations.spectral_norm` (one power iteration per training
forward), keeping each layer's largest singular value near 1.

Pixels: G outputs (B, C, H, W) in [-1, 1]; D takes the same scale and returns logits (B,).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import GenlabError
from .conv import ConvPlan, conv_plan

ARCHITECTURES = ("dcgan", "resnet")


def _onehot(labels: torch.Tensor | None, n_classes: int, like: torch.Tensor) -> torch.Tensor:
    """(B, K) float class weights from int labels (B,) or soft labels (B, K)."""
    if labels is None:
        raise GenlabError("this GAN is class-conditional: pass labels")
    if labels.ndim == 2:
        return labels.to(device=like.device, dtype=like.dtype)
    # a comparison, not F.one_hot: one_hot validates the labels with a host read every call
    classes = torch.arange(n_classes, device=like.device)
    return (labels.to(like.device).long()[:, None] == classes).to(like.dtype)


def _with_labels(z: torch.Tensor, labels: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    """z with the class weights appended (B, d + K): the class reaches G's first layer
    directly as well as through every conditional BatchNorm."""
    return torch.cat([z, _onehot(labels, n_classes, z)], dim=1) if n_classes else z


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Wrap the weight of every Conv/Linear inside ``module`` with spectral normalisation."""
    for child in list(module.modules()):
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and not nn.utils.parametrize.is_parametrized(
            child, "weight"
        ):
            nn.utils.parametrizations.spectral_norm(child)
    return module


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then a per-class gain ``1 + Γ y`` and bias ``B y``
    (Γ, B start at 0, so training starts from plain BatchNorm). ``n_classes = 0`` is an
    ordinary affine BatchNorm2d."""

    def __init__(self, channels: int, n_classes: int = 0) -> None:
        super().__init__()
        self.n_classes = int(n_classes)
        self.bn = nn.BatchNorm2d(channels, affine=self.n_classes == 0)
        if self.n_classes:
            self.gain = nn.Linear(self.n_classes, channels, bias=False)
            self.bias = nn.Linear(self.n_classes, channels, bias=False)
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.bn(x)
        if not self.n_classes:
            return h
        y = _onehot(labels, self.n_classes, h)
        return h * (1.0 + self.gain(y))[:, :, None, None] + self.bias(y)[:, :, None, None]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="nearest")


def _plan(image_shape: Sequence[int], width: int) -> ConvPlan:
    if len(image_shape) != 3:
        raise GenlabError(f"image_shape={tuple(image_shape)} must be (C, H, W)")
    c, h, w = (int(s) for s in image_shape)
    if min(h, w) < 4:
        raise GenlabError(f"image_shape={tuple(image_shape)}: GAN networks need images of at least 4x4 pixels")
    return conv_plan((c, h, w), int(width), max_final_size=7, max_multiplier=8)


# ---------------------------------------------------------------------- DCGAN
class _UpBlock(nn.Module):
    """Transposed conv (kernel 4, stride 2; odd targets via output_padding) -> (C)BN -> ReLU."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: tuple[int, int],
        target: tuple[int, int],
        source: tuple[int, int],
        n_classes: int,
    ) -> None:
        super().__init__()
        kernel = tuple(4 if s == 2 else 3 for s in stride)
        output_padding = tuple(t - 2 * n if s == 2 else 0 for t, n, s in zip(target, source, stride))
        self.conv = nn.ConvTranspose2d(
            c_in, c_out, kernel, stride=stride, padding=1, output_padding=output_padding, bias=False
        )
        self.norm = ConditionalBatchNorm2d(c_out, n_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), labels))


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) [+ labels] -> images (B, C, H, W) in [-1, 1] (see the module docstring)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int,
        width: int = 64,
        n_classes: int = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.plan = _plan(image_shape, width)
        self.latent_dim, self.n_classes = int(latent_dim), int(n_classes)
        ch, sizes = self.plan.channels, self.plan.sizes
        self.project = nn.Linear(self.latent_dim + self.n_classes, self.plan.feature_dim, bias=False)
        self.project_norm = ConditionalBatchNorm2d(ch[-1], self.n_classes)
        self.ups = nn.ModuleList(
            _UpBlock(ch[i + 1], ch[i], self.plan.strides[i], sizes[i], sizes[i + 1], self.n_classes)
            for i in reversed(range(self.plan.n_downsamples))
        )
        self.head = nn.Conv2d(ch[0], self.plan.image_shape[0], 3, padding=1)
        _dcgan_init(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(_with_labels(z, labels, self.n_classes)).view(z.shape[0], *self.plan.feature_shape)
        h = F.relu(self.project_norm(h, labels))
        for up in self.ups:
            h = up(h, labels)
        return torch.tanh(self.head(h))


class DCGANDiscriminator(nn.Module):
    """Images (B, C, H, W) in [-1, 1] [+ labels] -> logits (B,)."""

    def __init__(
        self, image_shape: Sequence[int], width: int = 64, n_classes: int = 0, spectral_norm: bool = False
    ) -> None:
        super().__init__()
        self.plan = _plan(image_shape, width)
        self.n_classes = int(n_classes)
        ch = self.plan.channels
        layers: list[nn.Module] = [nn.Conv2d(self.plan.image_shape[0], ch[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for i, stride in enumerate(self.plan.strides):
            kernel = tuple(4 if s == 2 else 3 for s in stride)
            layers += [nn.Conv2d(ch[i], ch[i + 1], kernel, stride=stride, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.feature_dim = self.plan.feature_dim
        self.head = nn.Linear(self.feature_dim, 1)
        self.embed = nn.Linear(self.n_classes, self.feature_dim, bias=False) if self.n_classes else None
        _dcgan_init(self)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.body(x).flatten(1)
        return _project(self.head(phi).squeeze(1), phi, self.embed, labels, self.n_classes)


def _project(
    logit: torch.Tensor, phi: torch.Tensor, embed: nn.Module | None, labels: torch.Tensor | None, n_classes: int
) -> torch.Tensor:
    """Add the projection term <e_y, φ(x)> of a projection discriminator."""
    if embed is None:
        return logit
    return logit + (embed(_onehot(labels, n_classes, phi)) * phi).sum(1)


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation: conv/linear weights N(0, 0.02), BatchNorm gains N(1, 0.02);
    the class-conditional gain/bias tables keep their zero start."""
    keep = {
        m
        for cbn in module.modules()
        if isinstance(cbn, ConditionalBatchNorm2d) and cbn.n_classes
        for m in (cbn.gain, cbn.bias)
    }
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m not in keep:
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------- ResNet (SNGAN / BigGAN)
class _ResUp(nn.Module):
    """(C)BN-ReLU-upsample-conv3-(C)BN-ReLU-conv3, plus an upsampled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, target: tuple[int, int], n_classes: int) -> None:
        super().__init__()
        self.target = tuple(int(t) for t in target)
        self.norm1 = ConditionalBatchNorm2d(c_in, n_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = ConditionalBatchNorm2d(c_out, n_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        h = _resize(F.relu(self.norm1(x, labels)), self.target)
        h = self.conv2(F.relu(self.norm2(self.conv1(h), labels)))
        return h + self.skip(_resize(x, self.target))


class _ResDown(nn.Module):
    """[ReLU]-conv3-ReLU-conv3-avgpool, plus a 1x1 conv + avgpool shortcut. The first block
    of D (``preactivate=False``) takes the image itself, so it has no leading ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int], preactivate: bool) -> None:
        super().__init__()
        self.stride = tuple(stride)
        self.preactivate = preactivate
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or self.stride != (1, 1)) else nn.Identity()

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.stride) if self.stride != (1, 1) else x  # floors odd sizes like the plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivate else x
        h = self._pool(self.conv2(F.relu(self.conv1(h))))
        if self.preactivate:
            return h + self._pool(self.skip(x))
        return h + self.skip(self._pool(x))


class ResNetGenerator(nn.Module):
    """SNGAN/BigGAN-style generator: z (B, latent_dim) [+ labels] -> (B, C, H, W) in [-1, 1]."""

    def __init__(
        self,
        image_shape: Sequence[int],
        latent_dim: int,
        width: int = 64,
        n_classes: int = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.plan = _plan(image_shape, width)
        self.latent_dim, self.n_classes = int(latent_dim), int(n_classes)
        ch, sizes = self.plan.channels, self.plan.sizes
        self.project = nn.Linear(self.latent_dim + self.n_classes, self.plan.feature_dim)
        self.blocks = nn.ModuleList(
            _ResUp(ch[i + 1], ch[i], sizes[i], self.n_classes) for i in reversed(range(self.plan.n_downsamples))
        )
        self.out_norm = ConditionalBatchNorm2d(ch[0], self.n_classes)
        self.head = nn.Conv2d(ch[0], self.plan.image_shape[0], 3, padding=1)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(_with_labels(z, labels, self.n_classes)).view(z.shape[0], *self.plan.feature_shape)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.head(F.relu(self.out_norm(h, labels))))


class ResNetDiscriminator(nn.Module):
    """SNGAN-style discriminator: images [+ labels] -> logits (B,); features are the
    ReLU'd last map summed over space."""

    def __init__(
        self, image_shape: Sequence[int], width: int = 64, n_classes: int = 0, spectral_norm: bool = True
    ) -> None:
        super().__init__()
        self.plan = _plan(image_shape, width)
        self.n_classes = int(n_classes)
        ch = self.plan.channels
        blocks = [_ResDown(self.plan.image_shape[0], ch[0], (1, 1), preactivate=False)]
        blocks += [_ResDown(ch[i], ch[i + 1], stride, preactivate=True) for i, stride in enumerate(self.plan.strides)]
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = ch[-1]
        self.head = nn.Linear(self.feature_dim, 1)
        self.embed = nn.Linear(self.n_classes, self.feature_dim, bias=False) if self.n_classes else None
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        phi = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return _project(self.head(phi).squeeze(1), phi, self.embed, labels, self.n_classes)


def make_gan_networks(
    architecture: str,
    image_shape: Sequence[int],
    latent_dim: int,
    *,
    g_width: int,
    d_width: int,
    n_classes: int = 0,
    d_spectral_norm: bool = True,
    g_spectral_norm: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of ``architecture`` ("dcgan" or "resnet")."""
    if architecture == "dcgan":
        return (
            DCGANGenerator(image_shape, latent_dim, g_width, n_classes, g_spectral_norm),
            DCGANDiscriminator(image_shape, d_width, n_classes, d_spectral_norm),
        )
    if architecture == "resnet":
        return (
            ResNetGenerator(image_shape, latent_dim, g_width, n_classes, g_spectral_norm),
            ResNetDiscriminator(image_shape, d_width, n_classes, d_spectral_norm),
        )
    raise GenlabError(f"architecture={architecture!r} is not valid; use one of {', '.join(map(repr, ARCHITECTURES))}")
