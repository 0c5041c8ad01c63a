import math

import numpy as np
import torch

from genlab.likelihood import bits_per_dim, dequantize, quantize, score_generator


def test_dequantize_stays_in_the_pixel_cell_and_quantize_inverts_it():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(50, 1, 1, 1)
    u = dequantize(x, torch.Generator().manual_seed(3))
    assert u.dtype == torch.float32 and u.shape == x.shape
    assert torch.all(u >= x.float() / 256) and torch.all(u < (x.float() + 1) / 256)
    assert torch.equal(quantize(u), x)
    assert torch.equal(quantize(dequantize(x, noise=False)), x)


def test_dequantize_is_the_same_points_in_float32_and_float64():
    x = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    a = dequantize(x, score_generator(), dtype=torch.float32)
    b = dequantize(x, score_generator(), dtype=torch.float64)
    assert torch.allclose(a.double(), b, atol=1e-7)


def test_quantize_clips():
    assert quantize(torch.tensor([-0.3, 0.0, 0.999, 1.0, 7.0])).tolist() == [0, 0, 255, 255, 255]


def test_bits_per_dim_formula():
    d = 64
    # log p = 0 on the unit cube is exactly 8 bits per dimension
    assert bits_per_dim(0.0, d) == 8.0
    # a density twice as high everywhere saves 1/D bits per dimension
    assert math.isclose(bits_per_dim(d * math.log(2), d), 7.0)
    assert np.allclose(bits_per_dim(np.array([0.0, -d * math.log(2)]), d), [8.0, 9.0])
