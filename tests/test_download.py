"""The download path, for real, against a local HTTP server on 127.0.0.1."""

import gzip
import hashlib
import http.server
import struct
import threading
from functools import partial

import numpy as np
import pytest

from genlab import GenlabError, load_dataset
from genlab.data import download
from genlab.errors import DownloadError


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_server(tmp_path):
    """Serve small train/test IDX files from tmp_path/www on a free port of 127.0.0.1."""
    www = tmp_path / "www"
    www.mkdir()
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(12) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(5),
    }
    md5 = {}
    for name, arr in arrays.items():
        data = _idx_bytes(arr)
        (www / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    handler = partial(_QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", md5, arrays
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _use_source(monkeypatch, mirrors, md5):
    source = download.IdxSource(mirrors=mirrors, files=md5, class_names=[str(i) for i in range(10)])
    monkeypatch.setitem(download.IDX_SOURCES, "mnist", source)


def test_download_verify_cache_and_load(idx_server, monkeypatch, tmp_path):
    url, md5, arrays = idx_server
    _use_source(monkeypatch, ["http://127.0.0.1:9/dead-mirror/", url], md5)  # first mirror refuses
    ds = load_dataset("mnist")
    assert ds.images.shape == (12, 1, 28, 28) and np.array_equal(
        ds.images[:, 0].numpy(), arrays["train-images-idx3-ubyte.gz"]
    )
    assert ds.labels.tolist() == list(np.arange(12) % 10)
    cached = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    test = load_dataset("mnist:test")
    assert len(test) == 5
    # the cache is used from now on: no server needed
    _use_source(monkeypatch, ["http://127.0.0.1:9/"], md5)
    assert len(load_dataset("mnist")) == 12


def test_wrong_checksum_is_rejected_and_nothing_is_left_behind(idx_server, monkeypatch, tmp_path):
    url, md5, _ = idx_server
    bad = dict(md5, **{"train-images-idx3-ubyte.gz": "0" * 32})
    _use_source(monkeypatch, [url], bad)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_dataset("mnist")
    folder = tmp_path / "cache" / "mnist"
    assert not (folder / "train-images-idx3-ubyte.gz").exists()
    assert not list(folder.glob(".*"))  # no partial temp files


def test_corrupt_cached_file_is_fetched_again(idx_server, monkeypatch, tmp_path):
    url, md5, _ = idx_server
    _use_source(monkeypatch, [url], md5)
    folder = tmp_path / "cache" / "mnist"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"truncated")
    assert len(load_dataset("mnist")) == 12


def test_offline_gives_one_clear_message(monkeypatch, tmp_path):
    _use_source(
        monkeypatch, ["http://127.0.0.1:9/"], {n: "0" * 32 for n in download.IDX_SOURCES["fashion-mnist"].files}
    )
    with pytest.raises(DownloadError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "could not download mnist" in msg and "offline?" in msg
    assert "train-images-idx3-ubyte.gz" in msg and str(tmp_path / "cache" / "mnist") in msg
    assert "\n" not in msg


def test_canonical_sources_are_declared():
    for name in ("mnist", "fashion-mnist"):
        src = download.IDX_SOURCES[name]
        assert len(src.files) == 4 and all(len(h) == 32 for h in src.files.values())
        assert all(m.startswith("http") and m.endswith("/") for m in src.mirrors)


def test_read_idx_rejects_garbage(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(GenlabError, match="bad magic"):
        download.read_idx(p)
    p.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc"))
    with pytest.raises(GenlabError, match="holds 3 values"):
        download.read_idx(p)
