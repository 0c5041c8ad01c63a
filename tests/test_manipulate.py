"""Latent manipulation: interpolation (known answers for linear and slerp paths),
attribute vectors on synthetic codes, and the functions on real tiny models."""

import numpy as np
import pytest
import torch

from genlab import GenlabError
from genlab.manipulate import apply_attribute, attribute_vector, interpolate, interpolate_codes, pick_image, slerp
from genlab.models.vae import VAE


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CodeModel:
    """A stand-in autoencoder whose code is the first d pixels / 255 (so codes are known
    exactly) and whose decoder writes the code back into those pixels."""

    conditional = False
    name = "code-model"

    def __init__(self, d=3):
        self.d = d
        self.decoded = []

    def encode(self, X, y=None):
        X = torch.as_tensor(np.asarray(X))
        return X.reshape(len(X), -1)[:, : self.d].float() / 255.0

    def decode(self, Z, y=None):
        Z = torch.as_tensor(np.asarray(Z), dtype=torch.float32)
        self.decoded.append(Z.clone())
        out = torch.zeros(len(Z), 1, 2, 2)
        out.reshape(len(Z), -1)[:, : self.d] = Z
        return torch.clamp(torch.round(out * 255), 0, 255).to(torch.uint8)


def test_linear_interpolation_endpoints_and_midpoint():
    a, b = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([3.0, 2.0, -0.5])
    path = interpolate_codes(a, b, 5, "linear")
    assert path.shape == (5, 3)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path[2], (a + b) / 2)
    torch.testing.assert_close(path[1], 0.75 * a + 0.25 * b)


def test_slerp_endpoints_unit_circle_and_degenerate_cases():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    path = interpolate_codes(a, b, 3, "slerp")
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path[1], torch.tensor([2**-0.5, 2**-0.5]))  # the arc's midpoint, norm 1
    # equal norms stay on the sphere all along; angles grow evenly
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    b = b / b.norm() * a.norm()
    path = slerp(a, b, torch.linspace(0, 1, 9))
    torch.testing.assert_close(path.norm(dim=1), torch.full((9,), float(a.norm())), rtol=1e-5, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(path[:-1], path[1:])
    torch.testing.assert_close(cos, torch.full((8,), float(cos[0])), rtol=1e-5, atol=1e-5)
    # parallel codes fall back to the straight line
    torch.testing.assert_close(interpolate_codes(a, 2 * a, 3, "slerp")[1], 1.5 * a)


def test_interpolate_decodes_the_path_between_the_two_codes():
    model = CodeModel()
    a = np.array([[[10, 20], [30, 0]]], np.uint8)
    b = np.array([[[110, 220], [130, 0]]], np.uint8)
    strip = interpolate(model, a, b, steps=3)
    assert strip.dtype == torch.uint8 and strip.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(strip[0, 0].numpy(), a[0])
    np.testing.assert_array_equal(strip[-1, 0].numpy(), b[0])
    np.testing.assert_array_equal(strip[1, 0].numpy(), [[60, 120], [80, 0]])
    with pytest.raises(GenlabError, match="mode='cubic'"):
        interpolate(model, a, b, mode="cubic")
    with pytest.raises(GenlabError, match="steps=1 must be >= 2"):
        interpolate(model, a, b, steps=1)
    with pytest.raises(GenlabError, match="not class-conditional"):
        interpolate(model, a, b, y_a=1, y_b=2)


def test_attribute_vector_is_the_difference_of_group_means():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 1, 2, 2), dtype=np.uint8)
    labels = np.repeat([0, 1, 2, 3], 10)
    codes = images.reshape(40, -1)[:, :3] / 255.0
    expected = codes[labels == 2].mean(0) - codes[labels == 0].mean(0)
    model = CodeModel()
    v = attribute_vector(model, images, labels, label_a=2, label_b=0)
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6)
    out = apply_attribute(model, images[:4], v, strength=0.5)
    np.testing.assert_allclose(model.decoded[-1].numpy(), codes[:4] + 0.5 * expected, rtol=1e-5, atol=1e-6)
    assert out.shape == (4, 1, 2, 2)
    np.testing.assert_array_equal(
        apply_attribute(model, images[:4], v, strength=0.0).numpy()[:, 0, 0, :], images[:4, 0, 0, :]
    )
    with pytest.raises(GenlabError, match="label_a=7: no image has this label"):
        attribute_vector(model, images, labels, 7, 0)
    with pytest.raises(GenlabError, match="one label per image"):
        attribute_vector(model, images, labels[:5], 1, 0)
    with pytest.raises(GenlabError, match="vector: 2 entries"):
        apply_attribute(model, images, np.zeros(2))


def test_pick_image_by_index_or_label(digits):
    img, label = pick_image(digits, index=5)
    assert img.shape == (1, 1, 8, 8) and label == int(digits.labels[5])
    img, label = pick_image(digits, label=3)
    first = int(np.flatnonzero(digits.labels.numpy() == 3)[0])
    assert torch.equal(img[0], digits.images[first]) and label == 3
    with pytest.raises(GenlabError, match="label=42: no image has this label"):
        pick_image(digits, label=42)
    with pytest.raises(GenlabError, match="exactly one of index or label"):
        pick_image(digits)
    with pytest.raises(GenlabError, match="out of range"):
        pick_image(digits.images, index=10**6)


def test_on_a_real_conditional_vae(digits):
    train = digits.subset(np.arange(200))
    model = VAE(
        condition="label",
        latent_dim=3,
        width=8,
        n_blocks=0,
        latent_components=2,
        preset="quick",
        max_steps=20,
        device="cpu",
    ).fit(train)
    a, ya = pick_image(train, label=3)
    b, yb = pick_image(train, label=8)
    strip = interpolate(model, a, b, steps=4, mode="slerp", y_a=ya, y_b=yb)
    assert strip.shape == (4, 1, 8, 8)
    assert torch.equal(strip[0], model.reconstruct(a, y=[ya])[0])
    assert torch.equal(strip[-1], model.reconstruct(b, y=[yb])[0])
    with pytest.raises(GenlabError, match="give the labels of both images"):
        interpolate(model, a, b)
    v = attribute_vector(model, train.images, train.labels, 1, 7)
    assert v.shape == (3,)
    assert apply_attribute(model, train.images[:5], v, 1.0, y=train.labels[:5]).shape == (5, 1, 8, 8)
