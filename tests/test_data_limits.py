"""Dataset loaders refuse hostile or malformed files at load time, with bounded memory:
sizes are checked from headers (npz array headers, image headers) before any data is read."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from genlab.data import load_dataset
from genlab.errors import GenlabError

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _npz_with_header(path: Path, shape: tuple[int, ...], descr: str = "|u1", data: bytes = b"\0" * 64) -> Path:
    """An .npz whose x.npy header claims ``shape`` but which holds only ``data``."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + data)
    return path


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims width x height, with one tiny (invalid) IDAT: a bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )
    return path


def _error(spec: str, pattern: str, **kwargs) -> str:
    with pytest.raises(GenlabError, match=pattern) as info:
        load_dataset(spec, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_npz_header_claiming_1e11_images_is_refused_before_reading(tmp_path):
    path = _npz_with_header(tmp_path / "huge.npz", (10**11, 8, 8))
    message = _error(f"npz:{path}", r"claims shape \(100000000000, 8, 8\) \(6\.4e\+03 GB\) but holds")
    assert "huge.npz" in message


def test_npz_larger_than_the_memory_limit(tmp_path, monkeypatch):
    x = np.zeros((100, 8, 8), np.uint8)
    np.savez(tmp_path / "d.npz", x=x)
    monkeypatch.setenv("GENLAB_MAX_DATA_BYTES", "1000")
    _error(f"npz:{tmp_path / 'd.npz'}", r"array 'x' of shape \(100, 8, 8\) needs 6\.4e-06 GB, more than the 1e-06 GB")
    monkeypatch.setenv("GENLAB_MAX_DATA_BYTES", "7000")
    assert len(load_dataset(f"npz:{tmp_path / 'd.npz'}")) == 100


def test_npz_spec_pointing_at_a_npy_file(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    _error(f"npz:{tmp_path / 'x.npy'}", r"x\.npy: is a \.npy file \(one array\); npz: needs an \.npz archive")


@pytest.mark.parametrize("shape", [(5, 2, 8, 8), (5, 8, 8, 2), (5, 4, 8, 8), (5, 8, 8, 4)])
def test_npz_with_2_or_4_channels(tmp_path, shape):
    np.savez(tmp_path / "d.npz", x=np.zeros(shape, np.uint8))
    _error(f"npz:{tmp_path / 'd.npz'}", r"channels; genlab images have 1 \(grayscale\) or 3 \(RGB\) channels")


def test_npz_object_array_header_is_refused_without_unpickling(tmp_path):
    path = _npz_with_header(tmp_path / "obj.npz", (2,), descr="|O")
    _error(f"npz:{path}", r"holds Python objects \(dtype object\), which would need pickle")


def test_npz_label_header_must_match(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 8, 8), np.uint8), y=np.zeros((4,), np.int64))
    _error(f"npz:{tmp_path / 'd.npz'}", r"array 'y' has shape \(4,\); expected \(5,\)")


def test_decompression_bomb_png_in_a_folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    _png_header_only(folder / "b.png", 100_000, 100_000)
    _error(f"folder:{folder}", r"b\.png: refused as a decompression bomb|b\.png: 100000x100000")


def test_image_between_pil_limit_and_twice_it_is_refused_too(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "a.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 256 pixels: PIL alone would only warn
    _error(f"folder:{folder}", r"a\.png: refused as a decompression bomb")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's check off: genlab's own cap still holds
    _png_header_only(folder / "a.png", 10_000, 10_000)
    _error(f"folder:{folder}", r"a\.png: 10000x10000 = 100,000,000 pixels, more than the 67,108,864 allowed")


def test_folder_total_memory_and_resize_target_are_bounded(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"{i}.png")
    _error(f"folder:{folder}", r"3 images resized to 100000x100000 need 90 GB of memory", size=100_000)
    monkeypatch.setenv("GENLAB_MAX_DATA_BYTES", "600")
    _error(f"folder:{folder}", r"the images up to 2\.png need 7\.68e-07 GB")


@pytest.mark.parametrize("size", ["abc", (1, 2, 3), (4.5, 4), -1])
def test_bad_sizes(tmp_path, size):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    _error(f"folder:{folder}", "size=", size=size)


# ---------------------------------------------------------------------- fuzzing
def _only_genlab_errors(spec: str) -> None:
    try:
        ds = load_dataset(spec)
    except GenlabError as exc:
        assert "\n" not in str(exc)
        return
    assert ds.images.ndim == 4 and ds.images.shape[1] in (1, 3) and len(ds) >= 1


ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int16, np.int64, np.float32, np.float64, np.bool_, np.complex64, "U2", "S2"]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4),
)


@FUZZ
@given(arrays=st.dictionaries(st.sampled_from(["x", "y", "z"]), ARRAYS, max_size=3))
def test_fuzzed_npz_contents(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("npz") / "d.npz"
    np.savez(path, **arrays)
    _only_genlab_errors(f"npz:{path}")


@FUZZ
@given(
    blob=st.binary(max_size=512),
    claim=st.lists(st.integers(0, 2**40), min_size=0, max_size=5),
    descr=st.sampled_from(["|u1", "<f8", "|O", "<i8", "|b1"]),
)
def test_fuzzed_npz_bytes_and_headers(tmp_path_factory, blob, claim, descr):
    folder = tmp_path_factory.mktemp("npz")
    (folder / "raw.npz").write_bytes(blob)
    _only_genlab_errors(f"npz:{folder / 'raw.npz'}")
    _npz_with_header(folder / "claim.npz", tuple(claim), descr=descr, data=blob)
    _only_genlab_errors(f"npz:{folder / 'claim.npz'}")


@FUZZ
@given(blob=st.binary(max_size=256), width=st.integers(1, 2**31 - 1), height=st.integers(1, 2**31 - 1))
def test_fuzzed_image_files_in_a_folder(tmp_path_factory, blob, width, height):
    folder = tmp_path_factory.mktemp("imgs")
    (folder / "a.png").write_bytes(blob)
    _only_genlab_errors(f"folder:{folder}")
    _png_header_only(folder / "a.png", width, height)
    _only_genlab_errors(f"folder:{folder}")
