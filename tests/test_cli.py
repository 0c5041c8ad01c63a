import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genlab.cli import main, parse_grid, parse_value

from .markers import require_extra


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_sample_score_round_trip(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, err = run(
        capsys,
        "fit",
        "gmm",
        "--data",
        "digits",
        "--out",
        str(run_dir),
        "-p",
        "n_components=5",
        "-p",
        "reg_covar=1e-3",
        "-q",
    )
    assert code == 0, err
    assert "bits/dim" in out
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "run.json",
        "metrics.json",
        "samples.png",
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_train"] == 1437 and metrics["n_test"] == 360 and 5 < metrics["test_bits_per_dim"] < 8

    code, out, err = run(
        capsys,
        "sample",
        str(run_dir),
        "-n",
        "10",
        "-o",
        str(tmp_path / "g.png"),
        "--npy",
        str(tmp_path / "g.npy"),
        "--seed",
        "3",
    )
    assert code == 0, err
    arr = np.load(tmp_path / "g.npy")
    assert arr.shape == (10, 1, 8, 8) and arr.dtype == np.uint8
    assert Image.open(tmp_path / "g.png").size[0] > 8

    code, out, err = run(capsys, "score", str(run_dir))
    assert code == 0 and "[test]: 360 images" in out
    assert f"{metrics['test_bits_per_dim']:.4f}" in out


def test_cv_with_a_grid_reports_folds_and_best(tmp_path, capsys):
    code, out, err = run(
        capsys,
        "cv",
        "gmm",
        "--data",
        "digits",
        "--folds",
        "3",
        "--grid",
        "n_components=2,4",
        "-p",
        "reg_covar=1e-2",
        "--json",
        str(tmp_path / "cv.json"),
        "-q",
    )
    assert code == 0, err
    assert "n_components=2" in out and "n_components=4" in out and "best: n_components=" in out
    result = json.loads((tmp_path / "cv.json").read_text())
    assert len(result["results"]) == 2 and all(len(r["fold_scores"]) == 3 for r in result["results"])


def test_listing_commands(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and all(name in out for name in ("uniform", "gaussian", "gmm", "kde"))
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "digits" in out and "folder:PATH" in out


def test_text_demo_writes_the_picture_prompts_and_metrics(tmp_path):
    require_extra("text")
    from genlab.demo import run_demo

    lines = []
    run_demo(
        tmp_path / "demo",
        model="text",
        max_steps=20,
        evaluator_epochs=1,
        samples_per_prompt=8,
        n_eval=40,
        echo=lines.append,
    )
    out = "\n".join(lines)
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["condition"] == "text" and metrics["training"]["steps"] == 20
    assert (
        len(metrics["held_out_prompt_accuracy"])
        == len((tmp_path / "demo" / "prompts.txt").read_text().splitlines())
        == 10
    )
    assert 0 <= metrics["held_out_captions"]["copies"] <= 1 and metrics["held_out_captions"]["fd"] > 0
    assert Image.open(tmp_path / "demo" / "demo.png").size[0] > 300
    assert (tmp_path / "demo" / "model" / "config.json").is_file() and "demo.png" in out


def test_demo_writes_the_picture_and_metrics(tmp_path, capsys):
    code, out, err = run(capsys, "demo", "--model", "gmm", "--out", str(tmp_path / "demo"), "-q")
    assert code == 0, err
    assert run(capsys, "demo", "--model", "gmm", "--max-steps", "3", "--out", str(tmp_path / "d2"))[0] == 2
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["test_bits_per_dim"] < metrics["uniform_test_bits_per_dim"] == 8.0
    assert Image.open(tmp_path / "demo" / "demo.png").size[0] > 300
    assert "demo.png" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "nosuchmodel", "--out", "X"], "unknown model 'nosuchmodel'"),
        (["fit", "gmm", "--data", "npz:/no/such.npz", "--out", "X"], "/no/such.npz: file not found"),
        (["fit", "gmm", "--data", "imagenet", "--out", "X"], "unknown dataset 'imagenet'"),
        (["fit", "gmm", "--out", "X", "-p", "n_components"], "expected NAME=VALUE"),
        (["fit", "gmm", "--out", "X", "-p", "n_components=0"], "n_components=0 must be >= 1"),
        (["fit", "gmm", "--out", "X", "-p", "colour=red"], "unknown parameter(s) colour"),
        (["fit", "gmm", "--out", "X", "--bogus"], "No such option"),
        (["sample", "/no/run"], "/no/run: not a model folder"),
        (["score", "/no/run"], "not a genlab run directory"),
        (["cv", "kde", "--grid", "bandwidth"], "expected NAME=V1,V2"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    args = [a.replace("X", str(tmp_path / "x")) for a in args]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err and err.startswith("genlab: error: ")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_npz_from_the_real_command_line(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.full((3, 4, 4), np.inf))
    proc = subprocess.run(
        [sys.executable, "-m", "genlab", "fit", "gmm", "--data", f"npz:{bad}", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("genlab: error: ") and "NaN/inf" in proc.stderr and "bad.npz" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "r").exists()


def test_value_parsing():
    assert parse_value("3") == 3 and parse_value("1e-3") == 0.001 and parse_value("true") is True
    assert parse_value("none") is None and parse_value("full") == "full" and parse_value("[1, 2]") == [1, 2]
    assert parse_grid(("n=1,2", "h=scott,0.1")) == {"n": [1, 2], "h": ["scott", 0.1]}
    assert parse_grid(("g=[0.1,0.2],[0.3]",)) == {"g": [[0.1, 0.2], [0.3]]}


def test_conditional_vae_from_the_command_line(tmp_path, capsys):
    """fit --condition label, sample --label, interpolate and reconstruct on a tiny CVAE."""
    run_dir = tmp_path / "cvae"
    code, out, err = run(
        capsys,
        "fit",
        "vae",
        "--data",
        "digits",
        "--out",
        str(run_dir),
        "--condition",
        "label",
        "--max-steps",
        "30",
        "-p",
        "width=8",
        "-p",
        "latent_dim=4",
        "-p",
        "latent_components=3",
        "-p",
        "iwae_samples=4",
        "-q",
    )
    assert code == 0, err
    assert (run_dir / "checkpoints").is_dir()

    code, out, err = run(
        capsys,
        "sample",
        str(run_dir),
        "-n",
        "6",
        "--label",
        "7",
        "--npy",
        str(tmp_path / "s.npy"),
        "-o",
        str(tmp_path / "s.png"),
    )
    assert code == 0, err
    assert np.load(tmp_path / "s.npy").shape == (6, 1, 8, 8)

    strip = tmp_path / "strip.png"
    code, out, err = run(
        capsys,
        "interpolate",
        str(run_dir),
        "--from-label",
        "3",
        "--to-label",
        "8",
        "--steps",
        "5",
        "--mode",
        "slerp",
        "-o",
        str(strip),
    )
    assert code == 0, err
    # 5 interpolated images plus the two real ends, in one row
    width, height = Image.open(strip).size
    assert width > 6 * height

    grid = tmp_path / "recon.png"
    code, out, err = run(capsys, "reconstruct", str(run_dir), "-n", "16", "-o", str(grid))
    assert code == 0, err
    assert "mean absolute error" in out and grid.exists()


def test_manipulation_commands_reject_bad_requests(tmp_path, capsys):
    run_dir = tmp_path / "gmm"
    assert run(capsys, "fit", "gmm", "--data", "digits", "--out", str(run_dir), "-p", "n_components=2", "-q")[0] == 0
    code, out, err = run(capsys, "reconstruct", str(run_dir), "-o", str(tmp_path / "r.png"))
    assert code == 2 and "encoder" in err and "Traceback" not in err
    code, out, err = run(capsys, "interpolate", str(run_dir), "--from-index", "0", "-o", str(tmp_path / "i.png"))
    assert code == 2 and "--to-index" in err
    assert not (tmp_path / "r.png").exists() and not (tmp_path / "i.png").exists()


@pytest.mark.parametrize(
    ("family", "family_params"),
    [
        ("diffusion", ["-p", "elbo_points=2"]),
        ("flow-matching", ["-p", "likelihood_steps=2", "-p", "likelihood_probes=1"]),
    ],
)
def test_text_to_image_from_the_command_line(tmp_path, capsys, family, family_params):
    require_extra("text")
    run_dir = tmp_path / "t2i"
    code, out, err = run(
        capsys,
        "fit",
        family,
        "--data",
        "digits",
        "--condition",
        "text",
        "--out",
        str(run_dir),
        "--max-steps",
        "10",
        "-p",
        "width=8",
        *family_params,
        "-n",
        "4",
        "-q",
    )
    assert code == 0, err
    assert json.loads((run_dir / "run.json").read_text())["captions"] == "auto"
    assert len((run_dir / "samples-prompts.txt").read_text().splitlines()) == 4  # one held-out caption per sample
    code, out, err = run(
        capsys,
        "sample",
        str(run_dir),
        "--prompt",
        "a thick seven",
        "-n",
        "3",
        "--steps",
        "4",
        "--guidance",
        "2",
        "--npy",
        str(tmp_path / "p.npy"),
        "-o",
        str(tmp_path / "p.png"),
    )
    assert code == 0, err
    assert np.load(tmp_path / "p.npy").shape == (3, 1, 8, 8)
    code, out, err = run(capsys, "sample", str(run_dir), "--label", "3", "-o", str(tmp_path / "l.png"))
    assert code == 2 and "text-conditional" in err and "Traceback" not in err
    code, out, err = run(capsys, "fit", "gmm", "--data", "digits", "--captions", "auto", "--out", str(tmp_path / "g"))
    assert code == 2 and "--captions" in err


def test_diffusion_editing_verbs(tmp_path, capsys):
    run_dir = tmp_path / "ddpm"
    code, out, err = run(
        capsys,
        "fit",
        "diffusion",
        "--data",
        "digits",
        "--condition",
        "label",
        "--out",
        str(run_dir),
        "--max-steps",
        "10",
        "-p",
        "width=8",
        "-p",
        "elbo_points=2",
        "-p",
        "steps=3",
        "-n",
        "4",
        "-q",
    )
    assert code == 0, err
    code, out, err = run(
        capsys, "edit", str(run_dir), "-n", "3", "--strength", "0.2,0.8", "--label", "5", "-o", str(tmp_path / "e.png")
    )
    assert code == 0, err
    width, height = Image.open(tmp_path / "e.png").size
    assert abs(width - height) <= 2  # 3 rows (images) x 3 columns (original + 2 strengths)
    code, out, err = run(
        capsys,
        "inpaint",
        str(run_dir),
        "--index",
        "0",
        "--index",
        "1",
        "--region",
        "center",
        "--variants",
        "2",
        "-o",
        str(tmp_path / "i.png"),
    )
    assert code == 0 and "16 of 64 pixels" in out, err
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(tmp_path / "mask.png")
    code, out, err = run(
        capsys,
        "inpaint",
        str(run_dir),
        "--index",
        "0",
        "--mask-file",
        str(tmp_path / "mask.png"),
        "--variants",
        "1",
        "-o",
        str(tmp_path / "i2.png"),
    )
    assert code == 0 and "64 of 64 pixels" in out, err
    code, out, err = run(
        capsys,
        "interpolate",
        str(run_dir),
        "--data",
        "digits",
        "--from-index",
        "3",
        "--to-index",
        "13",
        "--steps",
        "4",
        "--inversion-steps",
        "5",
        "-o",
        str(tmp_path / "x.png"),
    )
    assert code == 0 and "DDIM inversion" in out, err
    code, out, err = run(capsys, "edit", str(run_dir), "--strength", "2", "-o", str(tmp_path / "bad.png"))
    assert code == 2 and "strength" in err and not (tmp_path / "bad.png").exists()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "small.png")
    code, out, err = run(
        capsys, "inpaint", str(run_dir), "--mask-file", str(tmp_path / "small.png"), "-o", str(tmp_path / "bad.png")
    )
    assert code == 2 and "small.png" in err
