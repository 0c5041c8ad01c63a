"""Per-call sampling options: declared per family, validated with errors that name the
option and its range, never stored on the model — so one fitted model can be sampled from
several threads at once and gives exactly what sequential calls with the same seeds give."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from genlab import GenlabError
from genlab.models.diffusion import Diffusion
from genlab.models.vae import VAE


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(digits):
    return digits.images[:200].numpy(), digits.labels[:200].numpy()


@pytest.fixture(scope="module")
def diffusion(data):
    torch.set_num_threads(1)
    X, y = data
    return Diffusion(
        condition="label", width=8, max_steps=20, steps=3, device="cpu", warmup_steps=0, val_fraction=0.0
    ).fit(X, y)


@pytest.fixture(scope="module")
def vae(data):
    torch.set_num_threads(1)
    X, y = data
    return VAE(
        condition="label",
        latent_dim=2,
        width=8,
        n_blocks=0,
        latent_components=2,
        preset="quick",
        max_steps=20,
        batch_size=32,
        device="cpu",
    ).fit(X, y)


def _state(model):
    """Everything stored on the instance except the fitted network (whose tensors are compared elsewhere)."""
    return {k: v for k, v in vars(model).items() if k != "network_"}


# different options per call, so a leak of one call's options into another shows
DIFFUSION_CALLS = [
    dict(n=5, y=3, seed=1, sampler="ddim", steps=2),
    dict(n=4, y=[0, 1, 2, 3], seed=2, sampler="ddpm", steps=4, guidance=3.0),
    dict(n=3, y=7, seed=3),
    dict(n=6, y=2, seed=4, sampler="ddim", steps=3, eta=1.0, guidance=0.0),
    dict(n=2, y=[5, 6], seed=5, sampler="dpm++", steps=2, guidance=1.0),
    dict(n=5, y=1, seed=6, steps=5),
]
VAE_CALLS = [
    dict(n=6, y=1, seed=1, sampler="prior", temperature=2.0),
    dict(n=4, y=[0, 1, 2, 3], seed=2, temperature=0.3),
    dict(n=5, y=7, seed=3),
    dict(n=3, y=4, seed=4, sampler="gmm", temperature=1.0),
    dict(n=7, y=9, seed=5, sampler="prior"),
]


@pytest.mark.parametrize("which", ["diffusion", "vae"])
def test_concurrent_sampling_equals_sequential(which, diffusion, vae):
    model, calls = (diffusion, DIFFUSION_CALLS) if which == "diffusion" else (vae, VAE_CALLS)
    before = _state(model)
    sequential = [model.sample(**c) for c in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        # each call several times over, all in flight together
        futures = [pool.submit(model.sample, **c) for c in calls * 3]
        concurrent = [f.result() for f in futures]
    for i, out in enumerate(concurrent):
        assert torch.equal(out, sequential[i % len(calls)]), (
            f"call {calls[i % len(calls)]} differs when run concurrently"
        )
    # the calls differ from each other (so the comparison above can fail)
    assert not torch.equal(sequential[0][:3], sequential[2][:3])
    assert _state(model).keys() == before.keys()  # no option left on the instance


def test_unknown_options_name_the_valid_ones(diffusion, vae):
    with pytest.raises(
        GenlabError,
        match=r"unknown option\(s\) temperature; valid: eta, guidance, prompt, sampler, steps, tone_curve, unconditional",
    ):
        diffusion.sample(2, y=1, temperature=0.5)
    with pytest.raises(
        GenlabError, match=r"unknown option\(s\) guidance; valid: sampler, temperature, tone_curve, unconditional"
    ):
        vae.sample(2, y=1, guidance=2.0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"guidance": float("nan")}, "guidance=nan must be a finite number"),
        ({"guidance": float("inf")}, "guidance=inf must be a finite number"),
        ({"guidance": 51.0}, r"guidance=51.0 must be <= 50"),
        ({"guidance": -0.5}, r"guidance=-0.5 must be >= 0"),
        ({"steps": 10_001}, r"steps=10001 must be <= 10000"),
        ({"steps": 2.5}, "steps=2.5 must be an integer"),
        ({"steps": True}, "steps=True must be an integer"),
        ({"sampler": "euler"}, "sampler='euler' is not valid"),
        ({"eta": 1.5, "sampler": "ddim"}, r"eta=1.5 must be <= 1"),
    ],
)
def test_diffusion_options_are_bounded(diffusion, options, message):
    with pytest.raises(GenlabError, match=message):
        diffusion.sample(2, y=1, **options)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0.0}, r"temperature=0.0 must be > 0"),
        ({"temperature": -1.0}, r"temperature=-1.0 must be > 0"),
        ({"temperature": float("inf")}, "temperature=inf must be a finite number"),
        ({"temperature": 11.0}, r"temperature=11.0 must be <= 10"),
        ({"sampler": "flow"}, "sampler='flow' is not valid"),
    ],
)
def test_autoencoder_options_are_bounded(vae, options, message):
    with pytest.raises(GenlabError, match=message):
        vae.sample(2, y=1, **options)
    with pytest.raises(GenlabError, match=message):
        vae.sample_codes(2, y=1, **options)


def test_editing_methods_take_bounded_options_as_arguments(diffusion, data):
    X, _ = data
    before = _state(diffusion)
    a = diffusion.edit(X[:2], 0.5, y=1, steps=2, seed=0, guidance=2.0)
    assert torch.equal(a, diffusion.edit(X[:2], 0.5, y=1, steps=2, seed=0, guidance=2.0))
    with pytest.raises(GenlabError, match=r"steps=20000 must be <= 10000"):
        diffusion.invert(X[:1], y=1, steps=20_000)
    with pytest.raises(GenlabError, match=r"guidance=60.0 must be <= 50"):
        diffusion.inpaint(X[:1], torch.ones(8, 8, dtype=torch.bool), y=1, guidance=60.0)
    assert _state(diffusion).keys() == before.keys()


# ---------------------------------------------------------------------- conditional defaults
def test_class_counts_are_fitted_saved_and_drive_default_labels(diffusion, data, tmp_path):
    from genlab.device import make_generator
    from genlab.likelihood import quantize
    from genlab.models import GenerativeModel
    from genlab.tone_curve import apply_tone_curve

    _, y = data
    counts = diffusion.class_counts_
    assert counts.dtype == torch.int64 and torch.equal(counts, torch.bincount(torch.as_tensor(y)))
    # sample(n) = the labels drawn from the class frequencies with the call's generator, then sampled as given
    g = make_generator(11)
    labels = torch.multinomial(counts.double() / counts.sum(), 6, replacement=True, generator=g)
    raw = diffusion._sample(6, labels, g)
    expected = apply_tone_curve(raw, diffusion.tone_thresholds_, g)  # the same call's generator breaks ties
    assert torch.equal(diffusion.sample(6, seed=11), expected)
    assert torch.equal(diffusion.sample(6, seed=11, tone_curve=False), quantize(raw))
    assert torch.equal(diffusion.sample(6, seed=11), diffusion.sample(6, seed=11))
    assert not torch.equal(diffusion.sample(6, seed=11), diffusion.sample(6, seed=11, unconditional=True))
    diffusion.save(tmp_path / "m")
    loaded = GenerativeModel.load(tmp_path / "m")
    assert loaded.class_counts_.dtype == torch.int64 and torch.equal(loaded.class_counts_, counts)
    assert torch.equal(loaded.sample(6, seed=11), expected)


def test_default_labels_follow_the_training_frequencies_or_uniform_for_older_runs(diffusion):
    import copy

    model = copy.copy(diffusion)  # shallow: shares the network, own attribute dict
    model.class_counts_ = torch.tensor([900, 100, 0, 0, 0, 0, 0, 0, 0, 0])
    drawn = model._default_labels(20_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(drawn, minlength=10).double() / 20_000
    assert abs(freq[0] - 0.9) < 0.01 and abs(freq[1] - 0.1) < 0.01 and freq[2:].sum() == 0
    del model.class_counts_  # a model saved before class_counts_ existed
    freq = (
        torch.bincount(model._default_labels(20_000, torch.Generator().manual_seed(0)), minlength=10).double() / 20_000
    )
    assert torch.all((freq - 0.1).abs() < 0.01)


def test_unconditional_needs_a_null_branch(vae, diffusion):
    with pytest.raises(GenlabError, match="no unconditional branch"):
        vae.sample(2, unconditional=True)
    with pytest.raises(GenlabError, match="not both"):
        diffusion.sample(2, y=1, unconditional=True)
    assert vae.sample(3, seed=0).shape == (3, 1, 8, 8)  # labels drawn from the frequencies


def test_cli_sample_unconditional(diffusion, vae, tmp_path, capsys):
    import numpy as np

    from genlab.cli import main

    for name, model in (("d", diffusion), ("v", vae)):
        model.save(tmp_path / name)
    assert (
        main(
            [
                "sample",
                str(tmp_path / "d"),
                "-n",
                "4",
                "--seed",
                "1",
                "--unconditional",
                "--npy",
                str(tmp_path / "u.npy"),
                "-o",
                str(tmp_path / "u.png"),
            ]
        )
        == 0
    )
    assert np.array_equal(np.load(tmp_path / "u.npy"), diffusion.sample(4, seed=1, unconditional=True).numpy())
    assert main(["sample", str(tmp_path / "v"), "-n", "4", "--unconditional", "-o", str(tmp_path / "v.png")]) == 2
    assert "no unconditional branch" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "v"), "-n", "4", "--steps", "3", "-o", str(tmp_path / "v.png")]) == 2
    assert "unknown option(s) steps; valid: sampler, temperature, tone_curve, unconditional" in capsys.readouterr().err
