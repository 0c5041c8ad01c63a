"""A corpus of bad inputs walked through every command (issue #13 §3 and §4).

Each case must end with exit code 2, exactly one line on stderr that names the argument or
file at fault, and every file already on disk byte-identical (and no new ones).
"""

import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genlab.cli import main, parse_params, parse_value
from genlab.errors import GenlabError


def _forged_npz(path: Path, n_claimed: int) -> None:
    """An npz whose x.npy header claims ``n_claimed`` 8x8 images but holds 4."""
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 8, 8), np.uint8))
    raw = buf.getvalue()
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + header_len].decode("latin1").replace("(4, 8, 8)", f"({n_claimed}, 8, 8)").rstrip()
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "x.npy", raw[:8] + len(header).to_bytes(2, "little") + header.encode("latin1") + raw[10 + header_len :]
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    assert main(["fit", "gmm", "--out", str(root / "run"), "-p", "n_components=2", "-q"]) == 0
    np.savez(root / "two_channels.npz", x=np.zeros((30, 2, 8, 8), np.uint8))
    np.save(root / "array.npy", np.zeros((30, 8, 8), np.uint8))
    _forged_npz(root / "huge.npz", 10**11)
    (root / "bomb").mkdir()
    Image.new("L", (14_000, 13_000)).save(
        root / "bomb" / "big.png"
    )  # 182 Mpixel: above PIL's bomb limit, 30 kB on disk
    for i in range(3):
        Image.new("L", (8, 8)).save(root / "bomb" / f"ok{i}.png")
    (root / "listmodel").mkdir()
    (root / "listmodel" / "config.json").write_text('{"model": ["gmm"], "params": {}}')
    (root / "listmodel" / "model.safetensors").write_bytes((root / "run" / "model.safetensors").read_bytes())
    (root / "a_file").write_text("not a folder")
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


CASES = [
    # (arguments with {root} for the corpus folder, text the one error line must contain)
    (["fit", "gmm", "--data", "npz:{root}/two_channels.npz", "--out", "{root}/new"], "2 channels"),
    (["cv", "gmm", "--data", "npz:{root}/two_channels.npz", "--folds", "2"], "2 channels"),
    (["score", "{root}/run", "--data", "npz:{root}/two_channels.npz"], "2 channels"),
    (["fit", "gmm", "--data", "npz:{root}/array.npy", "--out", "{root}/new"], "array.npy"),
    (["fit", "gmm", "--data", "npz:{root}/huge.npz", "--out", "{root}/new"], "huge.npz"),
    (["cv", "gmm", "--data", "npz:{root}/huge.npz"], "claims shape"),
    (
        ["compare", "--models", "gmm", "--data", "npz:{root}/huge.npz", "--folds", "2", "--out", "{root}/cmp"],
        "huge.npz",
    ),
    (["fit", "gmm", "--data", "folder:{root}/bomb", "--out", "{root}/new"], "big.png"),
    (["fit", "gmm", "--seed", "1e23", "--out", "{root}/new"], "--seed"),
    (["sample", "{root}/run", "--seed", str(10**23), "-o", "{root}/s.png"], "--seed"),
    (["fit", "gmm", "--split-seed", "-1", "--out", "{root}/new"], "--split-seed"),
    (["sample", "{root}/listmodel", "-o", "{root}/s.png"], "model name"),
    (["evaluate", "{root}/run", "-n", "10"], "-n 10"),
    (["compare", "--models", "gmm", "-n", "10", "--folds", "2", "--out", "{root}/cmp"], "-n 10"),
    (["compare", "--models", "gmm", "--folds", "2", "--out", "{root}/run"], "run folder"),
    (["fit", "gmm", "--out", "{root}/a_file/run"], "a_file is a file"),
    (["fit", "gmm", "--out", "{root}/a_file"], "is a file"),
    (["sample", "{root}/run", "-o", "{root}/a_file/s.png"], "a_file is a file"),
    (["sample", "{root}/run", "-o", "{root}/run/config.json"], "a file of the run folder"),
    (["sample", "{root}/run", "--npy", "{root}/run/model.safetensors"], "a file of the run folder"),
    (["sample", "{root}/run", "-o", "{root}/a_file"], "--overwrite"),
    (["sample", "{root}/run", "-n", "5000", "-o", "{root}/s.png"], "at most 1,024"),
    (["sample", "{root}/run", "-n", str(10**13), "--npy", "{root}/s.npy"], "GB"),
    (["fit", "gaussian", "--out", "{root}/run"], "holds a finished gmm run"),
    (["fit", "gmm", "--out", "{root}/run", "--resume"], "--resume"),
    (["fit", "gmm", "--out", "{root}/new", "--score-images", "-1"], "--score-images"),
    (["edit", "{root}/run", "--index", "-1", "-o", "{root}/e.png"], "--index -1"),
    (["inpaint", "{root}/run", "--index", "-3", "-o", "{root}/e.png"], "--index -3"),
    (["interpolate", "{root}/run", "--from-index", "-1", "--to-index", "0", "-o", "{root}/i.png"], "--from-index -1"),
    (["cv", "gmm", "--folds", "2", "--json", "{root}/run/metrics.json"], "a file of the run folder"),
    (["evaluate", "{root}/run", "-n", "50", "--json", "{root}/a_file"], "--overwrite"),
    # a network far too wide to train: refused from its parameter count, before anything is allocated
    (["fit", "vae", "--out", "{root}/new", "-p", "width=1000000", "--max-steps", "1"], "parameters"),
    (["sample", "{root}/run", "--steps", str(10**9), "-o", "{root}/s.png"], "steps"),
]


@pytest.mark.parametrize("args, message", CASES, ids=[" ".join(a[:1] + [m]) for a, m in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(corpus, capsys, args, message):
    before = snapshot(corpus)
    capsys.readouterr()
    code = main([a.format(root=corpus) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.startswith("genlab: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert snapshot(corpus) == before
    assert not any(p.name.startswith(".") for p in corpus.iterdir())  # no staging folder left


def test_an_unwritable_out_is_found_before_training(tmp_path, capsys):
    target = Path("/sys/genlab-test/run")  # read-only even for root
    if os.access("/sys", os.W_OK) and target.parent.exists():
        pytest.skip("/sys is writable here")
    code = main(["fit", "vae", "--out", str(target), "--max-steps", "100000", "-p", "width=8", "-q"])
    out, err = capsys.readouterr()
    assert code == 2 and "cannot" in err and str(target) in err and err.count("\n") == 1
    assert "fitting" not in out  # refused before the first training step


# ------------------------------------------------------------------ property-based
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_any_bytes_as_npz_load_or_fail_with_one_clear_error(tmp_path, data):
    from genlab.data import load_dataset

    path = tmp_path / "x.npz"
    path.write_bytes(data)
    with pytest.raises(GenlabError, match="x.npz"):
        load_dataset(f"npz:{path}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header_count=st.integers(min_value=5, max_value=10**15))
def test_forged_npz_headers_are_refused_before_allocating(tmp_path, header_count):
    from genlab.data import load_dataset

    path = tmp_path / "forged.npz"
    _forged_npz(path, header_count)
    with pytest.raises(GenlabError, match="claims shape"):
        load_dataset(f"npz:{path}")


@given(st.text(max_size=40))
def test_parameter_parsing_never_raises_anything_but_genlab_error(text):
    parse_value(text)  # any text is a value
    try:
        params = parse_params((text,))
    except GenlabError:
        return
    assert len(params) == 1 and "=" in text
