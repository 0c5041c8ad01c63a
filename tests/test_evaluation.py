"""The evaluator network, the evaluation of a model, and `genlab evaluate` / `genlab compare`."""

import json

import numpy as np
import pytest
import torch

import genlab
from genlab.cli import main
from genlab.metrics.evaluate import evaluate_model, real_data_metrics
from genlab.metrics.evaluator import ConvClassifier, PCAFeatures, get_evaluator


@pytest.fixture(scope="session")
def digits_evaluator(digits_split):
    train, test = digits_split
    return get_evaluator(train, test, seed=0, cache=False)


def test_evaluator_accuracy_is_above_the_bar_on_digits(digits_evaluator, digits_split):
    assert digits_evaluator.test_accuracy >= 0.97
    feats = digits_evaluator.features(digits_split[1].images)
    assert feats.shape == (360, 128) and feats.dtype == torch.float32


def test_classifier_is_sized_from_the_image_shape():
    for shape in [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64)]:
        net = ConvClassifier(shape, 11)
        assert net(torch.rand(2, *shape)).shape == (2, 11) and net.features(torch.rand(2, *shape)).shape == (2, 128)


def test_unlabelled_data_falls_back_to_pca_features(digits):
    unlabelled = genlab.Dataset(digits.images[:300])
    ev = get_evaluator(unlabelled, seed=0)
    assert ev.kind == "pca" and "no labels" in ev.describe()
    assert ev.features(digits.images[:10]).shape == (10, 64)
    with pytest.raises(genlab.GenlabError, match="no labels"):
        ev.predict(digits.images[:3])
    pca = PCAFeatures.fit(digits.images[:300], n_components=5)
    z = pca.transform(digits.images[:300])
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-4) and torch.allclose(z.std(0), torch.ones(5), atol=1e-2)


def test_evaluator_is_cached(digits, tmp_path):
    small = digits.subset(np.arange(200))
    a = get_evaluator(small, seed=0, epochs=1)
    b = get_evaluator(small, seed=0, epochs=1)
    assert torch.equal(a.features(digits.images[:5]), b.features(digits.images[:5]))
    assert any((tmp_path / "cache" / "evaluators").iterdir())


def test_real_models_beat_uniform_noise_and_a_copier_is_caught(digits_evaluator, digits_split, no_warnings):
    train, test = digits_split
    results = {}
    for name, params in [
        ("uniform", {}),
        ("gmm", {"n_components": 10, "reg_covar": 1e-3}),
        ("kde", {"bandwidth": 0.01}),
    ]:
        model = genlab.make_model(name, **params).fit(train.images)
        results[name] = evaluate_model(model, train, test, digits_evaluator, n_samples=400, seed=0).metrics
    u, g, k = results["uniform"], results["gmm"], results["kde"]
    assert u["fd"] > 20 * g["fd"]
    assert u["precision"] < 0.05 < 0.9 < g["precision"] and u["recall"] < 0.05 < 0.8 < g["recall"]
    assert u["test_bits_per_dim"] == 8.0 and g["test_bits_per_dim"] < 8.0
    assert u["id_mle"] > 3 * g["id_mle"]  # noise fills pixel space, digits do not
    # the narrow KDE hands back its training images: memorisation says so, likelihood gap too
    assert k["copies"] == 1.0 and g["copies"] < 0.1
    assert k["likelihood_gap_nats"] > 10 * abs(g["likelihood_gap_nats"])
    assert abs(g["copies_reference"] - 0.05) < 0.02
    real = real_data_metrics(train, test, digits_evaluator, n_samples=360, seed=0)
    assert real["fd"] < g["fd"] and "copies" not in real


def test_compare_cli_writes_table_and_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--models",
        "uniform,gaussian,narrow:kde,broken:gmm",
        "--data",
        "digits",
        "--folds",
        "2",
        "--out",
        str(out),
        "-n",
        "150",
        "-p",
        "gaussian.covariance_type=diag",
        "-p",
        "narrow.bandwidth=0.01",
        "-p",
        "broken.n_components=5000",
        "--evaluator-epochs",
        "2",
        "-q",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    table = (out / "results.md").read_text()
    assert "| uniform |" in table and "| narrow |" in table and "real data (train subset" in table
    assert "Real-vs-real spread" in table and "broken: fold 0: GenlabError: n_components=5000" in table
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8 and "Intrinsic dimension" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"]["narrow"]["metrics"]["copies"][0] == 1.0
    assert summary["rows"]["uniform"]["metrics"]["fd"][0] > summary["rows"]["gaussian"]["metrics"]["fd"][0]
    assert "FAILED" in printed
    assert main(args) == 0  # rerun: every finished cell is skipped
    assert capsys.readouterr().out.count("done before, skipped") == 6


def test_evaluate_cli(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", "gaussian", "--data", "digits", "--out", str(run), "-q"]) == 0
    assert main(["evaluate", str(run), "-n", "200", "--json", str(tmp_path / "e.json"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "fd" in out and "precision" in out and "real data" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluation"]["metrics"]["fd"] > 0 and "test_bits_per_dim" in metrics  # fit's metrics kept
    assert json.loads((tmp_path / "e.json").read_text())["n_samples"] == 200


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--models", ",", "--out", "X"], "give at least one model"),
        (["compare", "--models", "gmm,gmm", "--out", "X"], "listed twice"),
        (["compare", "--models", "gmm", "--out", "X", "-p", "n_components=3"], "expected MODEL.NAME=VALUE"),
        (["compare", "--models", "gmm", "--out", "X", "-p", "kde.bandwidth=3"], "'kde' is not among --models"),
        (["compare", "--models", "gmm,vae9", "--out", "X"], "unknown model 'vae9'"),
        (["evaluate", "/no/such/run"], "not a genlab run directory"),
    ],
)
def test_evaluation_bad_input(tmp_path, capsys, args, message):
    args = [a.replace("X", str(tmp_path / "x")) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_evaluator_cache_key_covers_the_recipe_and_a_weak_evaluator_is_never_cached(digits, tmp_path):
    from genlab.metrics.evaluator import accuracy_floor, evaluator_key, training_recipe

    small = digits.subset(np.arange(300))
    base = evaluator_key(small, 0)
    other_data = digits.subset(np.arange(1, 301))
    variants = [
        evaluator_key(small, 0, epochs=1),
        evaluator_key(small, 1),
        evaluator_key(small, 0, space="mlp"),
        evaluator_key(other_data, 0),
    ]
    assert base == evaluator_key(small, 0) and len({base, *variants}) == 5
    assert training_recipe(small)["epochs"] == 60 and training_recipe(small)["code"]
    assert accuracy_floor(10) == pytest.approx(0.82) and accuracy_floor(2) == pytest.approx(0.9)
    # one epoch on 300 images: far below the floor -> loud warning, not cached (issue #13: a
    # chance-level evaluator was reused by every later comparison)
    test = digits.subset(np.arange(1000, 1300))
    with pytest.warns(RuntimeWarning, match="below|only"):
        weak = get_evaluator(small, test, seed=0, epochs=1)
    assert weak.below_floor and "BELOW THE ACCURACY FLOOR" in weak.describe()
    assert not (tmp_path / "cache" / "evaluators").exists() or not any((tmp_path / "cache" / "evaluators").iterdir())
