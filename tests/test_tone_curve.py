"""The tone curve (:mod:`genlab.tone_curve`): histogram matching checked against its
definition (the matched calibration batch has the target histogram; uniform targets give
plain rounding back), monotonicity, per-channel rows and errors; then the neural models:
fitted after training, saved and loaded, switched off per call, and refused when damaged."""

import json

import numpy as np
import pytest
import torch

import genlab
from genlab import GenlabError
from genlab.likelihood import quantize
from genlab.metrics import pixel_metrics
from genlab.models.gan import GAN
from genlab.models.gmm import GaussianMixture
from genlab.models.vae import VAE
from genlab.tone_curve import apply_tone_curve, check_tone_thresholds, fit_tone_thresholds


def _histogram(images: torch.Tensor) -> np.ndarray:
    counts = np.bincount(images.reshape(-1).numpy().astype(np.int64), minlength=256).astype(np.float64)
    return counts / counts.sum()


def _target_images(seed: int = 0) -> torch.Tensor:
    """uint8 (200, 1, 8, 8): 70% background, the rest spread over a few ink levels."""
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([0, 40, 128, 200, 253, 255], dtype=torch.uint8)
    probs = torch.tensor([0.70, 0.05, 0.05, 0.05, 0.10, 0.05])
    idx = torch.multinomial(probs, 200 * 64, replacement=True, generator=g)
    return levels[idx].reshape(200, 1, 8, 8)


def test_matched_calibration_batch_has_the_target_histogram():
    g = torch.Generator().manual_seed(1)
    unit = torch.rand(300, 1, 8, 8, generator=g) ** 3  # a skewed continuous output distribution
    target = _target_images()
    thresholds = fit_tone_thresholds(unit, target)
    matched = apply_tone_curve(unit, thresholds)
    assert matched.dtype == torch.uint8 and matched.shape == unit.shape
    # continuous outputs have no ties: each level gets its share up to one value in 19,200
    tv = 0.5 * np.abs(_histogram(matched) - _histogram(target)).sum()
    assert tv < 256 / unit.numel()
    assert 0.5 * np.abs(_histogram(quantize(unit)) - _histogram(target)).sum() > 0.3  # rounding alone is far off


def test_fresh_outputs_of_the_same_distribution_land_near_the_target():
    g = torch.Generator().manual_seed(2)
    target = _target_images()
    thresholds = fit_tone_thresholds(torch.rand(300, 1, 8, 8, generator=g) ** 3, target)
    fresh = apply_tone_curve(torch.rand(300, 1, 8, 8, generator=g) ** 3, thresholds)
    assert 0.5 * np.abs(_histogram(fresh) - _histogram(target)).sum() < 0.02


def test_uniform_target_and_uniform_outputs_give_plain_rounding_back():
    unit = ((torch.arange(256 * 64, dtype=torch.float64) + 0.5) / (256 * 64)).reshape(256, 1, 8, 8)
    target = torch.arange(256, dtype=torch.uint8).repeat(64).reshape(256, 1, 8, 8)
    thresholds = fit_tone_thresholds(unit, target)
    np.testing.assert_allclose(thresholds[0].numpy(), np.arange(1, 256) / 256.0, atol=1e-4)
    assert torch.equal(apply_tone_curve(unit, thresholds), quantize(unit))


def test_a_tied_block_of_outputs_is_split_over_the_levels_it_covers():
    # 3% of the outputs clipped to exactly 1.0; the target's top 3% are 2% level 254, 1% level 255
    g = torch.Generator().manual_seed(5)
    unit = torch.rand(100, 1, 10, 10, generator=g) * 0.9
    unit.view(-1)[:300] = 1.0
    target = torch.zeros(100, 1, 10, 10, dtype=torch.uint8)
    target.view(-1)[:200] = 254
    target.view(-1)[200:300] = 255
    out = apply_tone_curve(unit, fit_tone_thresholds(unit, target, g), g)
    tops = out.view(-1)[:300].to(torch.int64)
    assert bool((tops >= 254).all())
    assert (
        0.55 < float((tops == 254).float().mean()) < 0.78
    )  # 2/3 expected; without the jitter all 300 land on one level


def test_the_map_is_monotone():
    g = torch.Generator().manual_seed(3)
    thresholds = fit_tone_thresholds(torch.rand(100, 1, 8, 8, generator=g), _target_images())
    u = torch.linspace(0, 1, 5001).reshape(1, 1, 1, -1)
    levels = apply_tone_curve(u, thresholds).reshape(-1).to(torch.int64)
    assert bool((levels[1:] >= levels[:-1]).all())
    assert int(levels[0]) == 0 and int(levels[-1]) == 255


def test_one_row_per_channel():
    g = torch.Generator().manual_seed(4)
    unit = torch.rand(100, 3, 4, 4, generator=g)
    target = torch.zeros(100, 3, 4, 4, dtype=torch.uint8)
    target[:, 1] = 255  # channel 0 all black, channel 1 all white, channel 2 uniform levels
    target[:, 2] = torch.randint(0, 256, (100, 4, 4), generator=g).to(torch.uint8)
    thresholds = fit_tone_thresholds(unit, target)
    assert thresholds.shape == (3, 255) and thresholds.dtype == torch.float64
    out = apply_tone_curve(unit, thresholds)
    assert int(out[:, 0].max()) == 0
    assert int(out[:, 1].min()) == 255
    assert 0.5 * np.abs(_histogram(out[:, 2]) - _histogram(target[:, 2])).sum() < 0.02


def test_errors_name_the_problem():
    unit, target = torch.rand(4, 1, 8, 8), _target_images()[:4]
    with pytest.raises(GenlabError, match="same channels"):
        fit_tone_thresholds(torch.rand(4, 3, 8, 8), target)
    with pytest.raises(GenlabError, match="uint8"):
        fit_tone_thresholds(unit, target.float())
    bad = unit.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(GenlabError, match="NaN"):
        fit_tone_thresholds(bad, target)
    thresholds = fit_tone_thresholds(unit, target)
    with pytest.raises(GenlabError, match="NaN"):
        apply_tone_curve(bad, thresholds)
    with pytest.raises(GenlabError, match="3-channel"):
        apply_tone_curve(torch.rand(2, 3, 8, 8), thresholds)
    with pytest.raises(GenlabError, match="non-decreasing"):
        check_tone_thresholds(thresholds.flip(1), 1)
    with pytest.raises(GenlabError, match="shape"):
        check_tone_thresholds(thresholds, 3)


# ---------------------------------------------------------------------- in the models
@pytest.fixture(scope="module")
def gan(digits):
    torch.set_num_threads(1)
    return GAN(g_width=8, d_width=8, latent_dim=8, max_steps=30, batch_size=32, selection="last", device="cpu").fit(
        digits.images[:300]
    )


def test_a_fitted_neural_model_has_a_tone_curve_that_matches_the_training_histogram(gan, digits):
    assert gan.tone_thresholds_.shape == (1, 255)
    tone = gan.sample(400, seed=1)
    plain = gan.sample(400, seed=1, tone_curve=False)
    # a GAN after 30 steps is far from the data's pixel values; the tone curve puts them back
    tv_tone = pixel_metrics(tone, digits.images[300:])["pixel_tv"]
    tv_plain = pixel_metrics(plain, digits.images[300:])["pixel_tv"]
    assert tv_tone < 0.05 < tv_plain
    # the same draw through a monotone map: a brighter plain level never gets a darker tone level
    t, p = tone.reshape(-1).to(torch.int64), plain.reshape(-1).to(torch.int64)
    t_sorted = t[torch.argsort(256 * p + t)]
    assert bool((t_sorted[1:] >= t_sorted[:-1]).all())


def test_tone_curve_false_is_plain_rounding_of_the_same_draw(gan):
    g = genlab.device.make_generator(5)
    raw = gan._sample(10, None, g)
    assert torch.equal(gan.sample(10, seed=5, tone_curve=False), quantize(raw))
    g = genlab.device.make_generator(5)
    raw = gan._sample(10, None, g)
    assert torch.equal(gan.sample(10, seed=5), apply_tone_curve(raw, gan.tone_thresholds_, g))


def test_the_tone_curve_is_saved_and_loaded(gan, tmp_path):
    gan.save(tmp_path / "m")
    loaded = genlab.load_model(tmp_path / "m")
    assert torch.equal(loaded.tone_thresholds_, gan.tone_thresholds_)
    assert torch.equal(loaded.sample(20, seed=2), gan.sample(20, seed=2))


def test_a_damaged_tone_curve_is_refused_and_an_old_model_without_one_rounds(gan, tmp_path):
    gan.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    ref = config["fitted"].pop("tone_thresholds_")
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    # the weights file still holds the tensor the config no longer names
    with pytest.raises(GenlabError, match="does not refer to"):
        genlab.load_model(tmp_path / "m")
    gan.save(tmp_path / "old")
    old = genlab.load_model(tmp_path / "old")
    del old.tone_thresholds_  # a model saved before the tone curve existed
    assert torch.equal(old.sample(15, seed=3), gan.sample(15, seed=3, tone_curve=False))
    assert isinstance(ref, (dict, str))


def test_decreasing_thresholds_in_a_saved_model_are_refused(gan, tmp_path):
    from safetensors.torch import load_file, save_file

    gan.save(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    key = next(k for k in weights if "tone_thresholds_" in k)
    weights[key] = weights[key].flip(1).contiguous()
    save_file(weights, tmp_path / "m" / "model.safetensors", metadata={"model": "gan"})
    with pytest.raises(GenlabError, match="tone_thresholds_.*non-decreasing"):
        genlab.load_model(tmp_path / "m")


def test_conditional_models_fit_the_curve_on_their_default_draw(digits):
    torch.set_num_threads(1)
    model = VAE(condition="label", latent_dim=2, width=8, n_blocks=0, max_steps=20, device="cpu")
    model.fit(digits.images[:200], digits.labels[:200])
    assert model.tone_thresholds_.shape == (1, 255)
    assert model.sample(10, y=3, seed=0).shape == (10, 1, 8, 8)


def test_classical_models_have_no_tone_curve_option(digits):
    gmm = GaussianMixture(n_components=2).fit(digits.images[:100])
    with pytest.raises(GenlabError, match="tone_curve"):
        gmm.sample(5, tone_curve=False)


def test_cli_sample_and_evaluate_say_and_switch_the_pixel_levels(tmp_path, capsys):
    import numpy as np

    from genlab.cli import main

    run = tmp_path / "run"
    params = ["-p", "g_width=8", "-p", "d_width=8", "-p", "latent_dim=8", "-p", "selection=last"]
    assert main(["fit", "gan", "--data", "digits", "--out", str(run), "--max-steps", "10", "-q", *params]) == 0
    model = genlab.load_model(run)
    for flag, expected in (
        ([], model.sample(30, seed=4)),
        (["--no-tone-curve"], model.sample(30, seed=4, tone_curve=False)),
    ):
        out = tmp_path / f"s{len(flag)}.npy"
        assert main(["sample", str(run), "-n", "30", "--seed", "4", "--npy", str(out), *flag]) == 0
        assert np.array_equal(np.load(out), expected.numpy())
    assert not torch.equal(model.sample(30, seed=4), model.sample(30, seed=4, tone_curve=False))
    for flag, levels in (([], "tone curve"), (["--no-tone-curve"], "rounded")):
        capsys.readouterr()
        assert main(["evaluate", str(run), "-n", "100", "-q", *flag]) == 0
        assert f"pixel levels: {levels}" in capsys.readouterr().out
        assert json.loads((run / "metrics.json").read_text())["evaluation"]["pixel_levels"] == levels


def test_mapping_in_chunks_gives_what_one_pass_gives(monkeypatch):
    import genlab.tone_curve as tone

    g = torch.Generator().manual_seed(6)
    unit = torch.rand(50, 2, 5, 5, generator=g)
    unit[:, :, 0, 0] = 1.0  # ties, so the jitter matters
    target = torch.randint(0, 256, (50, 2, 5, 5), generator=g).to(torch.uint8)
    thresholds = fit_tone_thresholds(unit, target)
    whole = apply_tone_curve(unit, thresholds, torch.Generator().manual_seed(9))
    monkeypatch.setattr(tone, "APPLY_CHUNK_VALUES", 120)  # 2 images (50 values each) per chunk
    assert torch.equal(apply_tone_curve(unit, thresholds, torch.Generator().manual_seed(9)), whole)
