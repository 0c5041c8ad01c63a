"""The web app of ``genlab serve`` through Starlette's test client: every endpoint, bad
inputs, path traversal, oversized uploads, concurrent generation, a training job through
the worker (progress, cancel, resume) and the PNG metadata round trip."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.service import fit_run

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from genlab.ui import create_app  # noqa: E402
from genlab.ui import limits as L  # noqa: E402
from genlab.ui.media import PNG_PARAMS_KEY  # noqa: E402
from genlab.ui.runs_index import RunIndex  # noqa: E402
from genlab.ui.server import is_loopback  # noqa: E402

TINY_UNET = dict(width=8, channel_mults=[1], n_res_blocks=1, steps=2, batch_size=32, val_fraction=0.0)
TINY = dict(n_samples=16, score_images=8, device="cpu")


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """A RUNS_DIR with tiny runs: gmm, label-conditional diffusion, text diffusion, vae."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    fit_run("gmm", "digits", root / "gmm", params=dict(n_components=3), n_samples=16)
    fit_run("diffusion", "digits", root / "diff", params=TINY_UNET, condition="label", max_steps=3, **TINY)
    fit_run("diffusion", "digits", root / "text", params=TINY_UNET, condition="text", max_steps=2, **TINY)
    fit_run(
        "vae",
        "digits",
        root / "vae",
        params=dict(latent_dim=2, width=8, n_blocks=0, batch_size=32),
        max_steps=3,
        **TINY,
    )
    torch.set_num_threads(before)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    np.savez(root / "tiny.npz", x=rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8))
    return root


@pytest.fixture(scope="session")
def app(runs, data_root):
    return create_app(runs, data_root=data_root)


@pytest.fixture(scope="session")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def generate(client, run: str, **body) -> tuple[list[dict], dict]:
    """POST a generate request; returns (chunk messages, final message)."""
    r = client.post(f"/api/runs/{run}/generate", json=body)
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert "error" not in lines[-1], lines[-1]
    return lines[:-1], lines[-1]


def download_npy(client, key: str) -> np.ndarray:
    r = client.get(f"/api/generations/{key}.npy")
    assert r.status_code == 200
    return np.load(io.BytesIO(r.content))


# ---------------------------------------------------------------------- pages
def test_pages_load_with_the_contract_ids(client):
    page = client.get("/").text
    for marker in (
        'id="runs-table"',
        'class="run-row" data-run="gmm"',
        'class="run-link"',
        'class="run-thumb"',
        'data-sort="model"',
        'class="run-select" value="diff"',
        'id="compare-button"',
        'id="nav-runs"',
        'id="nav-train"',
    ):
        assert marker in page, marker
    run = client.get("/runs/diff").text
    for marker in (
        'id="run-params"',
        'id="training-curves"',
        "<svg",
        'id="sample-grid"',
        'id="sample-history"',
        'id="evaluation"',
        'id="evaluate-button"',
        'id="generate-link"',
        'id="edit-link"',
    ):
        assert marker in run, marker
    assert "<polyline" in run  # the curve drawn from checkpoints/metrics.csv
    compare = client.get("/compare?runs=gmm&runs=diff").text
    assert 'id="compare-table"' in compare and "gmm" in compare and "diff" in compare
    train = client.get("/train").text
    for marker in (
        'id="train-form"',
        'id="data"',
        'value="fashion-mnist"',
        'id="data-path"',
        'id="data-upload"',
        'id="model"',
        'id="preset"',
        'id="condition"',
        'id="params"',
        'id="run-name"',
        'id="max-steps"',
        'id="train-submit"',
        'id="job-panel"',
        'id="job-status"',
        'id="job-step"',
        'id="job-loss"',
        'id="job-preview"',
        'id="cancel-button"',
        'id="resume-button"',
        'id="job-queue"',
    ):
        assert marker in train, marker
    gen = client.get("/runs/diff/generate").text
    for marker in (
        'id="n"',
        'id="seed"',
        'id="label"',
        'value="7"',
        'id="guidance"',
        'id="guidance-value"',
        'id="sampler"',
        'id="steps"',
        'id="generate-button"',
        'id="generated"',
        'id="download-png"',
        'id="download-npy"',
        'id="load-png"',
    ):
        assert marker in gen, marker
    assert 'id="prompt"' not in gen
    text_gen = client.get("/runs/text/generate").text
    assert 'id="prompt"' in text_gen and 'id="label"' not in text_gen
    vae_gen = client.get("/runs/vae/generate").text
    assert 'id="temperature"' in vae_gen and 'id="guidance"' not in vae_gen
    edit = client.get("/runs/diff/edit").text
    for marker in (
        'id="interpolate"',
        'id="inpaint"',
        'id="sdedit"',
        'id="mask-canvas"',
        'id="mask-clear"',
        'id="brush-size"',
        'id="inpaint-button"',
        'id="strength"',
        'id="edit-button"',
        'id="index-a"',
        'id="upload-b"',
        'id="frames"',
        'id="interpolate-button"',
    ):
        assert marker in edit, marker
    assert 'id="attributes"' not in edit
    vae_edit = client.get("/runs/vae/edit").text
    assert 'id="attributes"' in vae_edit and 'id="attribute-button"' in vae_edit and 'id="inpaint"' not in vae_edit
    assert 'id="interpolate"' not in client.get("/runs/gmm/edit").text


def test_no_external_resources_in_pages(client):
    for url in ("/", "/runs/diff", "/train", "/runs/diff/generate", "/runs/diff/edit", "/compare?runs=gmm"):
        html = client.get(url).text
        assert not re.search(r'(src|href)="(https?:)?//', html), url
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text


def test_api_runs_models_limits(client):
    runs = client.get("/api/runs").json()["runs"]
    assert {r["name"] for r in runs} == {"gmm", "diff", "text", "vae"}
    gmm = next(r for r in runs if r["name"] == "gmm")
    assert gmm["model"] == "gmm" and gmm["bits_per_dim"] > 0
    models = client.get("/api/models").json()["models"]
    assert "diffusion" in models and "parameters" in models["diffusion"]
    assert client.get("/api/limits").json()["MAX_GENERATE_IMAGES"] == L.MAX_GENERATE_IMAGES
    info = client.get("/api/runs/diff/info").json()
    assert info["labels"] == list(range(10)) and "guidance" in info["sample_options"]
    run = client.get("/api/runs/gmm").json()
    assert run["config"]["model"] == "gmm" and "metrics" in run
    curves = client.get("/api/runs/diff/curves").json()
    assert curves["train_loss"] and curves["train_loss"][0][0] == 1
    assert client.get("/api/runs/gmm/files/samples.png").headers["content-type"] == "image/png"


# ---------------------------------------------------------------------- the runs index
def test_summaries_are_read_once_and_cached_by_mtime(runs, tmp_path):
    for k in range(100):
        folder = tmp_path / f"run-{k:03d}"
        folder.mkdir()
        for name in ("config.json", "run.json", "metrics.json", "samples.png"):
            shutil.copy(runs / "gmm" / name, folder / name)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "config.json").write_text("{}")
    (tmp_path / "not-a-run").mkdir()
    index = RunIndex(tmp_path)
    assert len(index.list()) == 100 and index.reads == 100
    assert len(index.list()) == 100 and index.reads == 100  # all from the cache
    metrics = tmp_path / "run-042" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["test_bits_per_dim"] = 1.25
    metrics.write_text(json.dumps(data))
    os.utime(metrics, ns=(time.time_ns(), time.time_ns() + 10**9))
    rows = index.list()
    assert index.reads == 101
    assert next(r for r in rows if r["name"] == "run-042")["bits_per_dim"] == 1.25
    shutil.rmtree(tmp_path / "run-007")
    assert len(index.list()) == 99 and index.reads == 101
    with TestClient(create_app(tmp_path)) as c:
        page = c.get("/").text
    assert page.count('class="run-row"') == 99


# ---------------------------------------------------------------------- path traversal
@pytest.mark.parametrize(
    "url",
    [
        "/api/runs/..",
        "/api/runs/.hidden",
        "/api/runs/..%2F..%2Fetc",
        "/api/runs/%2Fetc%2Fpasswd",
        "/api/runs/a%5Cb",
        "/api/runs/gmm/files/..%2Fconfig.json",
        "/api/runs/gmm/files/config.json",
        "/api/runs/gmm/files/model.safetensors",
        "/api/runs/gmm/files/history-..%2F..%2Fconfig.json",
        "/runs/..%2F..%2Fetc",
        "/api/runs/" + "a" * 101,
        "/api/runs/%00",
    ],
)
def test_traversal_is_refused(client, url):
    r = client.get(url)
    assert r.status_code in (400, 404), (url, r.status_code)
    assert "Traceback" not in r.text
    if url.startswith("/api/"):
        assert "error" in r.json()


def test_symlink_out_of_runs_dir_is_neither_listed_nor_served(runs, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(runs / "gmm", outside)
    link = runs / "escape"
    link.symlink_to(outside)
    try:
        with TestClient(create_app(runs)) as c:
            assert "escape" not in {r["name"] for r in c.get("/api/runs").json()["runs"]}
            assert c.get("/api/runs/escape").status_code == 400
            assert c.get("/api/runs/escape/files/samples.png").status_code == 400
            assert c.post("/api/runs/escape/generate", json={"n": 1}).status_code == 400
    finally:
        link.unlink()


def test_server_paths_only_under_allowed_roots(client, data_root, tmp_path):
    for path in (
        "/etc/passwd",
        "npz:/etc/passwd",
        f"npz:{data_root}/../../etc/passwd",
        "../x.npz",
        f"folder:{tmp_path}",
    ):
        r = client.post("/api/jobs", data={"model": "gmm", "run_name": "never", "data": "path", "data_path": path})
        assert r.status_code == 400, (path, r.text)
        assert "outside the allowed data folders" in r.json()["error"]
    link = data_root / "link-out.npz"
    link.symlink_to("/etc/hostname")
    try:
        r = client.post(
            "/api/jobs", data={"model": "gmm", "run_name": "never", "data": "path", "data_path": "npz:link-out.npz"}
        )
        assert r.status_code == 400
    finally:
        link.unlink()
    # with no --data-root, no server path at all
    with TestClient(create_app(tmp_path / "r")) as c:
        r = c.post("/api/jobs", data={"model": "gmm", "run_name": "x", "data": "path", "data_path": "npz:/tmp/x.npz"})
        assert r.status_code == 400 and "not allowed" in r.json()["error"]


def test_foreign_hosts_and_cross_site_posts_are_refused(client):
    r = client.get("/api/runs", headers={"host": "evil.example:8765"})
    assert r.status_code == 400 and "host" in r.json()["error"]
    r = client.post("/api/runs/gmm/generate", json={"n": 1}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    r = client.post("/api/jobs", data={"model": "gmm", "run_name": "x"}, headers={"origin": "null"})
    assert r.status_code == 403
    r = client.post("/api/runs/gmm/generate", json={"n": 1, "seed": 0}, headers={"origin": "http://testserver"})
    assert r.status_code == 200
    with TestClient(create_app(client.app.state.runs_dir, allowed_hosts=["*"])) as c:
        assert c.get("/api/runs", headers={"host": "192.168.0.7:8765"}).status_code == 200


# ---------------------------------------------------------------------- generate
def test_generate_streams_chunks_and_matches_seeded_sampling(client, runs):
    from genlab.models import GenerativeModel

    chunks, final = generate(client, "diff", n=20, seed=5, label=3, steps=2, sampler="ddim", chunk=8)
    assert [c["first"] for c in chunks] == [0, 8, 16] and all(
        c["tile"].startswith("data:image/png;base64,") for c in chunks
    )
    assert final["n"] == 20 and final["params"]["label"] == 3
    images = download_npy(client, final["id"])
    assert images.shape == (20, 1, 8, 8) and images.dtype == np.uint8
    model = GenerativeModel.load(runs / "diff")
    first = model.sample(8, y=3, seed=5, steps=2, sampler="ddim").numpy()
    assert np.array_equal(images[:8], first)  # chunk 0 is the plain seeded call (sample_run's chunk seeds)


def test_concurrent_generate_calls_give_the_sequential_bytes(client):
    calls = [
        dict(n=6, seed=1, label=2, steps=2, sampler="ddim"),
        dict(n=5, seed=2, label=7, steps=3, sampler="ddpm", guidance=2.0),
        dict(n=4, seed=3, steps=2, sampler="dpm++", guidance=0.0),
        dict(n=6, seed=4, label=1, steps=2, sampler="ddim", eta=1.0),
    ]
    sequential = [download_npy(client, generate(client, "diff", **c)[1]["id"]) for c in calls]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = download_npy(client, generate(client, "diff", **calls[i])[1]["id"])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, expected in enumerate(sequential):
        assert results[i].tobytes() == expected.tobytes(), f"call {i}"


def test_png_carries_its_parameters_and_refills_the_form(client):
    _, final = generate(client, "diff", n=4, seed=11, label=6, steps=2, sampler="ddim", guidance=1.5)
    r = client.get(f"/api/generations/{final['id']}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "attachment" in r.headers["content-disposition"]
    img = Image.open(io.BytesIO(r.content))
    stored = json.loads(img.text[PNG_PARAMS_KEY])
    assert stored == {
        "run": "diff",
        "model": "diffusion",
        "n": 4,
        "seed": 11,
        "label": 6,
        "steps": 2,
        "sampler": "ddim",
        "guidance": 1.5,
    }
    assert img.text["seed"] == "11" and img.text["sampler"] == "ddim"
    back = client.post("/api/png-params", files={"png": ("g.png", r.content, "image/png")})
    assert back.status_code == 200 and back.json() == stored
    # the same parameters generate the same images again
    again = dict(stored)
    again.pop("run"), again.pop("model")
    _, final2 = generate(client, "diff", **again)
    assert download_npy(client, final2["id"]).tobytes() == download_npy(client, final["id"]).tobytes()


def test_generate_with_a_prompt_and_temperature(client):
    _, final = generate(client, "text", n=3, seed=0, prompt="a thick seven", steps=2)
    assert final["params"]["prompt"] == "a thick seven" and download_npy(client, final["id"]).shape[0] == 3
    _, final = generate(client, "vae", n=3, seed=0, temperature=0.5)
    assert final["params"]["temperature"] == 0.5
    _, final = generate(client, "gmm", n=2)  # no seed: one is chosen and recorded
    assert isinstance(final["params"]["seed"], int)


@pytest.mark.parametrize(
    "run, body, fragment",
    [
        ("diff", {"n": 0}, "n: 0 is out of range"),
        ("diff", {"n": L.MAX_GENERATE_IMAGES + 1}, "n: "),
        ("diff", {"n": "many"}, "not a whole number"),
        ("diff", {"n": 2, "steps": L.MAX_SAMPLING_STEPS + 1}, "steps"),
        ("diff", {"n": 2, "guidance": 1e9}, "guidance"),
        ("diff", {"n": 2, "guidance": "nan"}, "guidance"),
        ("diff", {"n": 2, "sampler": "magic"}, "sampler"),
        ("diff", {"n": 2, "label": 12}, "label"),
        ("diff", {"n": 2, "prompt": "a seven"}, "not text-conditional"),
        ("gmm", {"n": 2, "label": 1}, "not class-conditional"),
        ("text", {"n": 2, "prompt": "x" * (L.MAX_PROMPT_CHARS + 1)}, "prompt"),
        ("diff", {"n": 2, "bogus": 1}, "bogus"),
        ("diff", {"n": 2, "seed": -1}, "seed"),
    ],
)
def test_generate_bad_inputs(client, run, body, fragment):
    r = client.post(f"/api/runs/{run}/generate", json=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_bad_bodies_and_unknown_downloads(client):
    r = client.post("/api/runs/diff/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = client.post("/api/runs/diff/generate", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = client.post(
        "/api/runs/diff/generate",
        content=b"{" + b" " * (L.MAX_JSON_BYTES + 1) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert client.get("/api/generations/deadbeef.png").status_code == 404
    _, final = generate(client, "gmm", n=1, seed=0)
    assert client.get(f"/api/generations/{final['id']}.exe").status_code == 404
    assert client.get("/api/nothing").json()["error"]
    assert client.get("/api/runs/nope/info").status_code == 404
    assert client.delete("/api/runs").status_code == 405


def test_png_params_bad_uploads(client):
    big = b"\x89PNG" + b"0" * (L.MAX_IMAGE_UPLOAD_BYTES + 10)
    r = client.post("/api/png-params", files={"png": ("big.png", big, "image/png")})
    assert r.status_code == 413
    r = client.post("/api/png-params", files={"png": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and "not a readable image" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    r = client.post("/api/png-params", files={"png": ("plain.png", buf.getvalue(), "image/png")})
    assert r.status_code == 400 and "no genlab" in r.json()["error"]
    buf = io.BytesIO()
    Image.new("L", (L.MAX_IMAGE_SIDE + 1, 2)).save(buf, format="PNG")
    r = client.post("/api/png-params", files={"png": ("wide.png", buf.getvalue(), "image/png")})
    assert r.status_code == 400 and "per side" in r.json()["error"]
    assert client.post("/api/png-params", data={"x": "1"}).status_code == 400


def test_model_cache_is_bounded_and_reused(app, client):
    cache = app.state.cache
    generate(client, "gmm", n=1, seed=0)
    loads = cache.loads
    generate(client, "gmm", n=1, seed=1)
    assert cache.loads == loads
    assert len(cache._models) <= L.MODEL_CACHE_SIZE


# ---------------------------------------------------------------------- edit
def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_interpolation_starts_on_two_images_of_one_class(client):
    # a class-conditional model refuses two classes: the page must not start on such a pair
    page = client.get("/runs/diff/edit").text
    start = re.search(r'id="index-b" type="number" min="0" value="(\d+)"', page)
    assert start is not None, "image B's index field is missing"
    b = int(start.group(1))
    label = lambda i: client.get(f"/api/runs/diff/dataset-image?index={i}").headers["x-genlab-label"]  # noqa: E731
    assert b > 0 and label(b) == label(0)


def test_edit_endpoints(client):
    r = client.get("/api/runs/diff/dataset-image?index=3")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-genlab-label"] == "3"  # the bundled digits are labelled 0, 1, ..., 9, 0, ...
    assert client.get("/api/runs/diff/dataset-image?index=99999").status_code == 400
    assert client.get("/api/runs/diff/dataset-image?index=-1").status_code == 400
    r = client.post("/api/runs/vae/edit/interpolate", data={"index_a": "0", "index_b": "5", "frames": "6"})
    assert r.status_code == 200, r.text
    strip = np.asarray(Image.open(io.BytesIO(r.content)))
    assert strip.shape[1] > strip.shape[0] * 4  # one row of 6 images
    up = _png(np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (20, 1)))
    r = client.post(
        "/api/runs/vae/edit/interpolate",
        data={"index_a": "0", "frames": "4"},
        files={"upload_b": ("b.png", up, "image/png")},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/runs/diff/edit/interpolate", data={"index_a": "0", "index_b": "10", "frames": "4", "inversion_steps": "2"}
    )
    assert r.status_code == 200, r.text
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    r = client.post(
        "/api/runs/diff/edit/inpaint",
        data={"index": "2", "steps": "2", "variants": "2"},
        files={"mask": ("m.png", _png(mask), "image/png")},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/runs/diff/edit/inpaint",
        data={"index": "2"},
        files={"mask": ("m.png", _png(np.zeros((8, 8), np.uint8)), "image/png")},
    )
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/api/runs/diff/edit/sdedit", data={"index": "1", "strength": "0.5", "steps": "2"})
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/runs/text/edit/sdedit", data={"index": "1", "strength": "0.4", "steps": "2", "prompt": "a thin one"}
    )
    assert r.status_code == 200, r.text
    r = client.post("/api/runs/vae/edit/attribute", data={"attribute": "1", "scale": "1.5", "index": "0"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "run, action, data, status, fragment",
    [
        ("gmm", "inpaint", {"index": "0"}, 400, "mask"),
        ("gmm", "sdedit", {"index": "0"}, 400, "cannot do this"),
        ("gmm", "interpolate", {}, 400, "no latent space"),
        ("diff", "sdedit", {"strength": "1.5"}, 400, "strength"),
        ("diff", "sdedit", {"steps": str(L.MAX_SAMPLING_STEPS + 1)}, 400, "steps"),
        ("vae", "interpolate", {"frames": str(L.MAX_FRAMES + 1)}, 400, "frames"),
        ("vae", "interpolate", {"index_a": "100000"}, 400, "index"),
        ("vae", "interpolate", {"mode": "zigzag"}, 400, "mode"),
        ("vae", "attribute", {}, 400, "attribute"),
        ("diff", "explode", {}, 404, "not an edit"),
    ],
)
def test_edit_bad_inputs(client, run, action, data, status, fragment):
    r = client.post(f"/api/runs/{run}/edit/{action}", data=data)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_edit_oversized_upload(client):
    big = b"0" * (L.MAX_IMAGE_UPLOAD_BYTES + 1)
    r = client.post(
        "/api/runs/vae/edit/interpolate", data={"index_a": "0"}, files={"upload_b": ("b.png", big, "image/png")}
    )
    assert r.status_code == 413


# ---------------------------------------------------------------------- training jobs
def _wait(client, job_id: str, until, timeout: float = 180.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = client.get(f"/api/jobs/{job_id}").json()
        if until(state):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached the state: {state}")


def test_training_job_progress_cancel_resume(client, runs):
    form = {
        "model": "diffusion",
        "data": "digits",
        "run_name": "job-diff",
        "max_steps": "60",
        "checkpoint_every": "5",
        "condition": "label",
        "score_images": "8",
        "n_samples": "10",
        "param-width": "8",
        "param-channel_mults": "1",
        "param-n_res_blocks": "1",
        "param-steps": "2",
        "param-batch_size": "32",
        "param-val_fraction": "0",
    }
    r = client.post("/api/jobs", data=form)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] in ("queued", "running")
    state = _wait(client, job["id"], lambda s: s["status"] == "running" and s["step"] >= 5)
    assert "<polyline" in state["loss_svg"]
    assert client.post("/api/jobs", data={**form}).status_code == 409  # same run queued/running
    r = client.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    state = _wait(client, job["id"], lambda s: s["status"] in ("cancelled", "done", "failed"))
    assert state["status"] == "cancelled", state
    checkpoints = runs / "job-diff" / "checkpoints"
    assert any(checkpoints.glob("checkpoint-*.json"))  # the last checkpoint is kept
    assert not (runs / "job-diff" / "config.json").exists()
    stopped_at = state["step"]
    # the event stream of a finished job sends its state and ends
    events = client.get(f"/api/jobs/{job['id']}/events").text
    assert events.startswith("data: ") and '"cancelled"' in events
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409
    r = client.post(f"/api/jobs/{job['id']}/resume")
    assert r.status_code == 200, r.text
    resumed = r.json()
    assert resumed["resumed_from"] == job["id"]
    state = _wait(client, resumed["id"], lambda s: s["status"] in ("done", "failed", "cancelled"))
    assert state["status"] == "done", state
    assert state["step"] >= 60 > stopped_at
    assert (runs / "job-diff" / "config.json").is_file()
    metrics = json.loads((runs / "job-diff" / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 60
    assert client.get(f"/api/jobs/{resumed['id']}/preview.png").status_code == 200
    assert "job-diff" in {r["name"] for r in client.get("/api/runs").json()["runs"]}
    snapshot = client.get("/api/jobs").json()
    assert snapshot["current"] is None and not snapshot["queue"]
    assert client.post(f"/api/jobs/{resumed['id']}/resume").status_code == 409
    # a restarted server still lists the jobs (from RUNS_DIR/.jobs)
    with TestClient(create_app(runs)) as again:
        assert again.get(f"/api/jobs/{job['id']}").json()["status"] == "cancelled"
        assert again.get(f"/api/jobs/{resumed['id']}").json()["status"] == "done"


def test_a_job_interrupted_by_a_server_stop_is_resumable(runs):
    from genlab.ui.jobs import JOBS_DIR

    record = {
        "id": "0123456789ab",
        "kind": "fit",
        "run": "ghost",
        "status": "running",
        "created": 1.0,
        "spec": {"name": "ghost", "model": "gmm"},
    }
    (runs / JOBS_DIR).mkdir(exist_ok=True)
    (runs / JOBS_DIR / "0123456789ab.json").write_text(json.dumps(record))
    (runs / JOBS_DIR / "junk.json").write_text("{not json")
    with TestClient(create_app(runs)) as c:
        state = c.get("/api/jobs/0123456789ab").json()
        assert state["status"] == "cancelled" and "interrupted" in state["message"]
        r = c.post("/api/jobs/0123456789ab/resume")  # no checkpoints of 'ghost': nothing to resume
        assert r.status_code == 409 and "no checkpoint" in r.json()["error"]


def test_a_failing_job_leaves_the_server_up(client):
    r = client.post(
        "/api/jobs", data={"model": "gmm", "data": "digits", "run_name": "job-bad", "param-n_components": "100000"}
    )
    assert r.status_code == 201, r.text
    state = _wait(client, r.json()["id"], lambda s: s["status"] in ("done", "failed", "cancelled"))
    assert state["status"] == "failed" and state["message"]
    assert client.get("/api/runs").status_code == 200


@pytest.mark.parametrize(
    "form, status, fragment",
    [
        ({"model": "nope", "run_name": "a"}, 400, "unknown model"),
        ({"model": "gmm", "run_name": "../evil"}, 400, "run_name"),
        ({"model": "gmm", "run_name": ".hidden"}, 400, "run_name"),
        ({"model": "gmm", "run_name": "gmm"}, 409, "exists"),
        ({"model": "gmm", "run_name": "a", "data": "imagenet"}, 400, "data"),
        ({"model": "gmm", "run_name": "a", "param-n_components": "-3"}, 400, "n_components"),
        ({"model": "gmm", "run_name": "a", "param-nope": "1"}, 400, "no parameter"),
        ({"model": "gmm", "run_name": "a", "condition": "text"}, 400, "condition"),
        ({"model": "gmm", "run_name": "a", "preset": "quick"}, 400, "preset"),
        ({"model": "diffusion", "run_name": "a", "max_steps": str(L.MAX_TRAIN_STEPS + 1)}, 400, "max_steps"),
        ({"model": "gmm", "run_name": "a", "data": "upload"}, 400, "data_upload"),
    ],
)
def test_train_bad_inputs(client, form, status, fragment):
    r = client.post("/api/jobs", data=form)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_train_uploads(client, runs, monkeypatch):
    monkeypatch.setattr(L, "MAX_DATA_UPLOAD_BYTES", 2048)
    r = client.post(
        "/api/jobs",
        data={"model": "gmm", "run_name": "up", "data": "upload"},
        files={"data_upload": ("x.npz", b"0" * (2048 + 1024 * 1024 + 1))},
    )
    assert r.status_code == 413
    r = client.post(
        "/api/jobs",
        data={"model": "gmm", "run_name": "up", "data": "upload"},
        files={"data_upload": ("x.txt", b"hello")},
    )
    assert r.status_code == 400
    r = client.post(
        "/api/jobs",
        data={"model": "gmm", "run_name": "up", "data": "upload"},
        files={"data_upload": ("x.npz", b"PK\x03\x04garbage")},
    )
    assert r.status_code == 400


def test_uploaded_zip_is_flattened_and_npz_checked(runs, tmp_path):
    from genlab.ui.paths import HTTPError
    from genlab.ui.uploads import save_upload

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../evil.png", _png(np.zeros((8, 8), np.uint8)))
        z.writestr("/abs/also.png", _png(np.full((8, 8), 200, np.uint8)))
        z.writestr("notes.txt", "ignored")
    spec = save_upload(tmp_path, "imgs.zip", buf.getvalue())
    folder = Path(spec.split(":", 1)[1])
    assert folder.parent == tmp_path / ".uploads"
    assert sorted(p.name for p in folder.iterdir()) == ["000000-evil.png", "000001-also.png"]
    assert not (tmp_path.parent / "evil.png").exists()
    npz = io.BytesIO()
    np.savez(npz, x=np.zeros((3, 1, 8, 8), np.uint8))
    assert save_upload(tmp_path, "d.npz", npz.getvalue()).startswith("npz:")
    bad = io.BytesIO()
    np.savez(bad, pixels=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(HTTPError, match="no 'x'"):
        save_upload(tmp_path, "d.npz", bad.getvalue())
    obj = io.BytesIO()
    np.savez(obj, x=np.array([object()], dtype=object))
    with pytest.raises(HTTPError):
        save_upload(tmp_path, "o.npz", obj.getvalue())


def test_job_endpoints_unknown(client):
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.post("/api/jobs/nope/cancel").status_code == 404
    assert client.get("/api/jobs/nope/events").status_code == 404
    assert client.get("/api/jobs/nope/preview.png").status_code == 404
    r = client.post("/api/jobs", data={"model": "gmm", "run_name": "q1", "data": "digits", "param-n_components": "2"})
    assert client.post(f"/api/jobs/{r.json()['id']}/explode").status_code == 404
    _wait(client, r.json()["id"], lambda s: s["status"] in ("done", "failed", "cancelled"))


# ---------------------------------------------------------------------- evaluate
def test_evaluate_job_fills_the_run_page(client, runs):
    assert client.post("/api/runs/gmm/evaluate", json={"n": 5}).status_code == 400
    assert client.post("/api/runs/gmm/evaluate", json={"n": L.MAX_EVAL_SAMPLES + 1}).status_code == 400
    r = client.post("/api/runs/gmm/evaluate", json={"n": 30})
    assert r.status_code == 201
    state = _wait(client, r.json()["id"], lambda s: s["status"] in ("done", "failed", "cancelled"))
    assert state["status"] == "done", state
    page = client.get("/runs/gmm").text
    assert 'id="memorisation-strip"' in page and 'id="baseline-strip"' in page and 'id="evaluation-table"' in page
    assert client.get("/api/runs/gmm/files/memorisation.png").status_code == 200
    assert client.get("/api/runs/gmm/files/baseline.png").status_code == 200
    row = next(r for r in client.get("/api/runs").json()["runs"] if r["name"] == "gmm")
    assert row["evaluated"] and row["evaluation"]["fd"] is not None
    compare = client.get("/compare?runs=gmm&runs=diff").text
    assert "real data" in compare and 'class="compare-plot"' in compare


def test_compare_needs_runs(client):
    assert client.get("/compare").status_code == 400
    assert client.get("/compare?runs=nope").status_code == 404
    assert client.get("/compare?runs=..").status_code == 400


# ---------------------------------------------------------------------- the server
def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_serve_prints_the_url_and_serves(tmp_path):
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlab", "serve", str(tmp_path / "runs"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"genlab serve: (http://127\.0\.0\.1:\d+/)\n", line)
        assert m, line
        with urllib.request.urlopen(m.group(1), timeout=10) as r:
            assert r.status == 200 and b'id="runs-table"' in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.stderr.read().strip() == ""


def test_training_on_an_uploaded_npz_and_on_a_path_under_the_data_root(client, runs):
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    np.savez(buf, x=rng.integers(0, 256, (30, 1, 8, 8), dtype=np.uint8))
    r = client.post(
        "/api/jobs",
        data={"model": "gaussian", "run_name": "from-upload", "data": "upload"},
        files={"data_upload": ("mine.npz", buf.getvalue(), "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    r2 = client.post(
        "/api/jobs", data={"model": "gaussian", "run_name": "from-path", "data": "path", "data_path": "npz:tiny.npz"}
    )
    assert r2.status_code == 201, r2.text
    for job in (r.json(), r2.json()):
        state = _wait(client, job["id"], lambda s: s["status"] in ("done", "failed", "cancelled"))
        assert state["status"] == "done", state
    upload_spec = json.loads((runs / "from-upload" / "run.json").read_text())["data"]
    assert upload_spec.startswith(f"npz:{runs / '.uploads'}")
    assert json.loads((runs / "from-path" / "run.json").read_text())["data"].endswith("tiny.npz")
    names = {r["name"] for r in client.get("/api/runs").json()["runs"]}
    assert {"from-upload", "from-path"} <= names and ".uploads" not in names


def test_a_job_started_with_sigint_ignored_still_stops_on_cancel():
    """Background jobs of non-interactive shells inherit SIGINT = SIG_IGN, and Python then never
    installs its KeyboardInterrupt handler: the job queue's cancel (SIGINT) would do nothing.
    The queue runs its jobs through genlab.ui.interruptible, which restores the handler."""
    import signal
    import subprocess
    import sys

    sleeper = ["timeit", "-n", "1", "-r", "1", "import time; time.sleep(60)"]

    def start(cmd):
        return subprocess.Popen(
            cmd,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as a background job inherits it
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def catches_sigint(pid: int) -> bool:
        """The process has a SIGINT handler installed (Linux: SigCgt in /proc/PID/status)."""
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        return False

    plain = start([sys.executable, "-m", *sleeper])
    wrapped = start([sys.executable, "-m", "genlab.ui.interruptible", *sleeper])
    try:
        # wait for the handler rather than a fixed time: importing genlab takes seconds on a loaded machine
        deadline = time.monotonic() + 60
        if Path("/proc/self/status").is_file():
            while not catches_sigint(wrapped.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            time.sleep(3)
        for proc in (plain, wrapped):
            proc.send_signal(signal.SIGINT)
        assert wrapped.wait(timeout=30) != 0  # KeyboardInterrupt ended it
        time.sleep(1)
        assert plain.poll() is None  # the plain interpreter ignored the signal: the bug this guards against
    finally:
        for proc in (plain, wrapped):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
