"""fit's held-out scoring is bounded (issue #11): neural models score at most
DEFAULT_SCORE_IMAGES held-out images (a fixed-seed subset) under a progress bar, the bound is
recorded in metrics.json, and --score-images N changes it (0 skips the scoring)."""

import json

import pytest

from genlab.cli import main
from genlab.service import fitting

VAE = ["-p", "width=8", "-p", "latent_dim=2", "-p", "latent_components=2", "-p", "iwae_samples=2", "--device", "cpu"]


@pytest.fixture
def bars(monkeypatch):
    """The totals and advances of every progress bar opened while scoring."""
    import genlab.progress

    seen = []
    real = genlab.progress.progress

    def spy(*args, **kwargs):
        bar = real(*args, **kwargs)
        entry = {"desc": kwargs.get("desc"), "total": kwargs.get("total"), "done": 0}
        seen.append(entry)
        update = bar.update

        def counted(n=1):
            entry["done"] += n
            return update(n)

        bar.update = counted
        return bar

    monkeypatch.setattr(genlab.progress, "progress", spy)
    return seen


def fit(tmp_path, capsys, *extra):
    out = tmp_path / "run"
    code = main(["fit", "vae", "--out", str(out), "--max-steps", "2", "-n", "4", *VAE, *extra])
    said, err = capsys.readouterr()
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text()), said


def test_neural_fit_scores_at_most_the_default_bound_under_a_progress_bar(tmp_path, capsys, monkeypatch, bars):
    monkeypatch.setattr(fitting, "DEFAULT_SCORE_IMAGES", 7)
    monkeypatch.setattr(fitting, "SCORE_CHUNK", 3)
    metrics, said = fit(tmp_path, capsys)
    assert metrics["n_test"] == 360 and metrics["n_scored"] == 7 and metrics["score_images"] == 7
    assert "scoring 7 of the 360 held-out images" in said and "--score-images" in said
    (bar,) = [b for b in bars if b["desc"] == "held-out log-likelihood"]
    assert bar["total"] == 7 and bar["done"] == 7  # three chunks: 3 + 3 + 1
    assert metrics["test_bits_per_dim"] > 0


def test_score_images_sets_the_bound_and_zero_skips(tmp_path, capsys, bars):
    metrics, _ = fit(tmp_path, capsys, "--score-images", "5", "--overwrite")
    assert metrics["n_scored"] == 5 and metrics["score_images"] == 5 and "test_bits_per_dim" in metrics
    bars.clear()
    metrics, _ = fit(tmp_path, capsys, "--score-images", "0", "--overwrite")
    assert metrics["n_scored"] == 0 and metrics["score_images"] == 0
    assert "test_bits_per_dim" not in metrics and "test_log_likelihood_nats" not in metrics
    assert not [b for b in bars if b["desc"] == "held-out log-likelihood"]


def test_the_default_bound_is_stated_in_the_help(capsys):
    assert main(["fit", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"{fitting.DEFAULT_SCORE_IMAGES:,} for neural ones" in text and "0 skips the scoring" in text
