"""Network blocks: shapes for every image size, widths, embeddings against NumPy, and a
conv autoencoder built from the blocks that overfits 16 digits."""

import math

import numpy as np
import pytest
import torch

from genlab import GenlabError
from genlab.likelihood import dequantize
from genlab.nn import (
    MLP,
    ConvDecoder,
    ConvEncoder,
    LabelEmbedding,
    SinusoidalEmbedding,
    TimestepEmbedding,
    conv_plan,
    count_parameters,
    group_count,
    sinusoidal_embedding,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster than two on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SHAPES = [(c, s, s) for c in (1, 3) for s in (8, 28, 32, 64, 7)] + [(1, 15, 15), (3, 9, 13), (1, 8, 64), (1, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_encoder_decoder_shapes_round_trip(shape):
    enc = ConvEncoder(shape, 10, width=4)
    dec = ConvDecoder(shape, 10, width=4, out_channels=2 * shape[0])
    x = torch.randn(3, *shape)
    z = enc(x)
    assert z.shape == (3, 10)
    assert dec(z).shape == (3, 2 * shape[0], shape[1], shape[2])
    h, w = enc.plan.sizes[-1]
    assert max(h, w) <= 7 or min(h, w) < 2  # downsampled until small enough
    features = ConvEncoder(shape, None, width=4)(x)
    assert features.shape == (3, *enc.feature_shape)
    assert ConvDecoder(shape, None, width=4)(features).shape == (3, *shape)


@pytest.mark.parametrize(
    "size, ladder",
    [
        (8, [8, 4]),
        (28, [28, 14, 7]),
        (32, [32, 16, 8, 4]),
        (64, [64, 32, 16, 8, 4]),
        (7, [7]),
        (15, [15, 7]),
        (9, [9, 4]),
    ],
)
def test_plan_halves_until_at_most_seven(size, ladder):
    plan = conv_plan((1, size, size), width=8)
    assert [h for h, _ in plan.sizes] == ladder
    assert plan.channels == tuple(8 * min(2**i, 8) for i in range(len(ladder)))
    assert plan.feature_dim == plan.channels[-1] * ladder[-1] ** 2


def test_parameter_count_grows_with_width():
    counts = [count_parameters(ConvEncoder((1, 28, 28), 16, width=w)) for w in (4, 8, 16)]
    assert counts[0] < counts[1] < counts[2]
    dec = [count_parameters(ConvDecoder((3, 32, 32), 16, width=w)) for w in (4, 8, 16)]
    assert dec[0] < dec[1] < dec[2]
    assert count_parameters(ConvEncoder((1, 28, 28), 16, width=8, n_blocks=2)) > counts[1]


@pytest.mark.parametrize("norm", ["group", "batch", "layer", "none"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "silu"])
def test_norm_and_activation_options(norm, activation):
    enc = ConvEncoder((1, 8, 8), 4, width=4, norm=norm, activation=activation)
    dec = ConvDecoder((1, 8, 8), 4, width=4, norm=norm, activation=activation)
    out = dec(enc(torch.randn(4, 1, 8, 8)))
    assert out.shape == (4, 1, 8, 8) and torch.isfinite(out).all()


def test_bad_block_arguments_name_the_argument():
    with pytest.raises(GenlabError, match="norm='weird'"):
        ConvEncoder((1, 8, 8), 4, norm="weird")
    with pytest.raises(GenlabError, match="activation='nope'"):
        ConvDecoder((1, 8, 8), 4, activation="nope")
    with pytest.raises(GenlabError, match="width=0"):
        conv_plan((1, 8, 8), width=0)
    with pytest.raises(GenlabError, match="image_shape"):
        conv_plan((8, 8), width=4)


def test_group_count_divides_channels():
    for c in (1, 3, 8, 12, 48, 64, 96, 100):
        g = group_count(c)
        assert c % g == 0 and g <= 32
    assert group_count(64) == 32 and group_count(48) == 24


def test_mlp_shapes_and_depth():
    mlp = MLP(5, 3, hidden_dims=(7, 11), activation="silu", norm="layer", dropout=0.1)
    assert mlp(torch.randn(4, 5)).shape == (4, 3)
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 11), (11, 3)]
    assert MLP(5, 3, hidden_dims=())(torch.randn(2, 5)).shape == (2, 3)


@pytest.mark.parametrize("dim", [8, 9, 64])
def test_sinusoidal_embedding_matches_numpy(dim):
    t = np.array([0, 1, 5, 999, 12.5])
    half = dim // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)
    ref = np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1)
    if dim % 2:
        ref = np.concatenate([ref, np.zeros((len(t), 1))], axis=1)
    got = sinusoidal_embedding(torch.tensor(t, dtype=torch.float32), dim)
    assert got.shape == (5, dim) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)
    np.testing.assert_array_equal(SinusoidalEmbedding(dim)(torch.tensor(t, dtype=torch.float32)).numpy(), got.numpy())
    with pytest.raises(GenlabError, match=r"shape \(B,\)"):
        sinusoidal_embedding(torch.zeros(2, 2), dim)


def test_timestep_embedding_distinguishes_steps():
    torch.manual_seed(0)
    emb = TimestepEmbedding(32, frequency_dim=16)
    out = emb(torch.arange(10))
    assert out.shape == (10, 32)
    assert torch.cdist(out, out).fill_diagonal_(1.0).min() > 0  # every step gets its own vector


def test_label_embedding_null_class_and_dropout():
    torch.manual_seed(0)
    emb = LabelEmbedding(10, 6, drop_prob=0.5)
    assert emb.null_index == 10 and emb.table.num_embeddings == 11
    labels = torch.arange(10)
    emb.eval()
    out = emb(labels)
    assert torch.equal(out, emb.table.weight[:10])  # eval: never dropped
    assert torch.equal(emb(None, batch_size=3), emb.table.weight[10].expand(3, 6))
    forced = emb(labels, drop=torch.tensor([True] + [False] * 9))
    assert torch.equal(forced[0], emb.table.weight[10]) and torch.equal(forced[1:], out[1:])
    emb.train()
    many = emb(torch.zeros(4000, dtype=torch.int64))
    dropped = (many == emb.table.weight[10]).all(1).float().mean().item()
    assert abs(dropped - 0.5) < 0.05
    with pytest.raises(GenlabError, match="drop_prob"):
        LabelEmbedding(3, 4, drop_prob=1.0)


def test_conv_autoencoder_overfits_sixteen_digits(digits):
    torch.manual_seed(0)
    x = dequantize(digits.images[:16], noise=False)
    shape = tuple(x.shape[1:])
    enc = ConvEncoder(shape, 16, width=8, n_blocks=1)
    dec = ConvDecoder(shape, 16, width=8, n_blocks=1)
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    baseline = ((x - x.mean(0)) ** 2).mean().item()  # the best a constant image can do
    for _ in range(200):
        loss = ((torch.sigmoid(dec(enc(x))) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * baseline
