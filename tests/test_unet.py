"""The diffusion U-Net: shapes for every image size, level plans, conditioning inputs and
their null rows, zero-initialised output, and a quick overfit."""

import pytest
import torch

from genlab import GenlabError
from genlab.nn.unet import UNet, default_level_count, unet_plan


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def wake(net):
    """Randomise the zero-initialised layers so that every input reaches the output."""
    for module in net.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            torch.nn.init.normal_(module.weight, std=0.1)
    return net


SHAPES = [(c, s, s) for c in (1, 3) for s in (8, 28, 32, 64)] + [(1, 7, 7), (3, 9, 13), (1, 15, 15), (1, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("patch_size", [1, 2])
def test_output_shape_equals_input_shape(shape, patch_size):
    net = UNet(shape, width=8, patch_size=patch_size, head_dim=8)
    x = torch.randn(2, *shape)
    out = net(x, torch.rand(2))
    assert out.shape == x.shape
    assert UNet(shape, width=8, out_channels=2 * shape[0], patch_size=patch_size)(x, torch.rand(2)).shape == (
        2,
        2 * shape[0],
        *shape[1:],
    )


@pytest.mark.parametrize(
    "size, ladder",
    [(8, [8, 4]), (14, [14, 7]), (28, [28, 14, 7]), (32, [32, 16, 8]), (64, [64, 32, 16, 8]), (7, [7]), (4, [4])],
)
def test_default_levels_halve_to_at_most_eight(size, ladder):
    assert default_level_count((size, size)) == len(ladder)
    plan = unet_plan((1, size, size), 16)
    assert [h for h, _ in plan.sizes] == ladder
    assert plan.channels == tuple(16 * m for m in (1,) + (2,) * (len(ladder) - 1))
    assert plan.attention == tuple(s <= 8 for s in ladder)


def test_patchify_plans_on_the_padded_folded_image():
    plan = unet_plan((1, 28, 28), 32, patch_size=2)
    assert plan.padded == (28, 28) and [h for h, _ in plan.sizes] == [14, 7]
    odd = unet_plan((3, 9, 13), 8, patch_size=4, channel_mults=(1, 2, 4))
    assert odd.padded == (12, 16) and odd.sizes == ((3, 4), (2, 2), (1, 1)) and odd.channels == (8, 16, 32)


def test_untrained_network_predicts_zero():
    """Zero-initialised output layer: training starts from a neutral prediction."""
    net = UNet((1, 8, 8), width=8)
    assert torch.count_nonzero(net(torch.randn(3, 1, 8, 8), torch.rand(3))) == 0


def test_labels_and_null_label_change_the_output():
    torch.manual_seed(0)
    net = wake(UNet((1, 8, 8), width=8, n_classes=3))
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    labels = torch.tensor([0, 1, 2, 0])
    out = net(x, t, labels=labels)
    null = net(x, t)  # labels=None -> the null class
    assert not torch.allclose(out, null)
    dropped = net(x, t, labels=labels, drop=torch.tensor([True, False, True, False]))
    torch.testing.assert_close(dropped[[0, 2]], null[[0, 2]])
    torch.testing.assert_close(dropped[[1, 3]], out[[1, 3]])
    torch.testing.assert_close(net(x, t, labels=torch.full((4,), 3)), null)  # index n_classes is the null class


def test_conditioning_vector_and_token_sequence():
    torch.manual_seed(0)
    net = wake(UNet((1, 8, 8), width=8, cond_dim=5, context_dim=6, head_dim=8))
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    cond, context = torch.randn(3, 5), torch.randn(3, 4, 6)
    mask = torch.tensor([[True, True, False, False]] * 3)
    full = net(x, t, cond=cond, context=context, context_mask=mask)
    assert full.shape == x.shape
    assert not torch.allclose(full, net(x, t, cond=cond))  # the sequence matters
    assert not torch.allclose(full, net(x, t, context=context, context_mask=mask))  # the vector matters
    # masked-out tokens are ignored
    changed = context.clone()
    changed[:, 2:] = 100.0
    torch.testing.assert_close(net(x, t, cond=cond, context=changed, context_mask=mask), full)
    # a dropped row sees the null vector and the null sequence
    drop = torch.tensor([True, False, False])
    torch.testing.assert_close(net(x, t, cond=cond, context=context, context_mask=mask, drop=drop)[0], net(x, t)[0])


def test_clear_errors():
    with pytest.raises(GenlabError, match="input of shape"):
        UNet((1, 8, 8), width=8)(torch.randn(2, 1, 9, 9), torch.rand(2))
    with pytest.raises(GenlabError, match="no label embedding"):
        UNet((1, 8, 8), width=8)(torch.randn(2, 1, 8, 8), torch.rand(2), labels=torch.tensor([0, 1]))
    with pytest.raises(GenlabError, match="channel_mults"):
        UNet((1, 8, 8), channel_mults=(1, 0))
    with pytest.raises(GenlabError, match="patch_size"):
        UNet((1, 8, 8), patch_size=0)


def test_overfits_a_tiny_regression():
    """A few hundred Adam steps fit a fixed noisy-target mapping (gradients flow everywhere)."""
    torch.manual_seed(0)
    net = UNet((1, 8, 8), width=8, n_classes=2)
    x, t, y = torch.randn(8, 1, 8, 8), torch.rand(8), torch.tensor([0, 1] * 4)
    target = torch.roll(x, 1, dims=-1) * (1 + y.view(-1, 1, 1, 1))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    first = None
    for _ in range(150):
        loss = (net(x, t, labels=y) - target).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
