import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab import GenlabError, load_dataset

from .conftest import shared_file


def test_digits_is_offline_uint8_nchw_with_labels(digits):
    assert digits.images.dtype == torch.uint8 and digits.images.shape == (1797, 1, 8, 8)
    assert digits.labels.shape == (1797,) and digits.class_names == [str(i) for i in range(10)]
    assert int(digits.images.max()) == 255 and len(torch.unique(digits.images)) == 17


def test_digits_matches_the_shared_file_and_its_fixed_split(digits):
    ref = np.load(shared_file("digits.npz"))
    assert np.array_equal(digits.images[:, 0].numpy(), ref["x"])
    train, test = digits.split(0.2, 0)
    assert np.array_equal(train.indices, ref["train_idx"]) and np.array_equal(test.indices, ref["test_idx"])


def test_split_is_stratified_disjoint_and_reproducible(digits):
    a_train, a_test = digits.split(0.25, seed=7)
    b_train, b_test = digits.split(0.25, seed=7)
    assert np.array_equal(a_test.indices, b_test.indices)
    assert set(a_train.indices).isdisjoint(a_test.indices)
    assert len(a_train) + len(a_test) == len(digits)
    share = np.bincount(a_test.labels.numpy()) / np.bincount(digits.labels.numpy())
    assert np.all(np.abs(share - 0.25) < 0.03)
    c_train, c_test = digits.split(0.25, seed=8)
    assert not np.array_equal(a_test.indices, c_test.indices)


def test_kfold_partitions_the_data(digits):
    folds = digits.kfold(5, seed=0)
    assert len(folds) == 5
    held = np.concatenate([test.indices for _, test in folds])
    assert np.array_equal(np.sort(held), np.arange(len(digits)))
    for train, test in folds:
        assert set(train.indices).isdisjoint(test.indices)
        assert np.abs(np.bincount(test.labels.numpy(), minlength=10) - len(test) / 10).max() <= 2  # stratified


def test_kfold_without_labels():
    ds = genlab.Dataset(torch.zeros((10, 1, 2, 2), dtype=torch.uint8))
    assert [len(t) for _, t in ds.kfold(5)] == [2] * 5
    with pytest.raises(GenlabError, match="folds"):
        ds.kfold(1)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(GenlabError, match=r"unknown dataset 'cifar'.*digits.*mnist.*npz:PATH.*folder:PATH"):
        load_dataset("cifar")


# ---------------------------------------------------------------------- npz
def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_nhw_and_nchw_and_labels(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (20, 5, 6), dtype=np.uint8)
    ds = load_dataset(_npz(tmp_path, x=x, y=np.repeat([3, 7], 10)))
    assert (
        ds.images.shape == (20, 1, 5, 6) and ds.class_names == ["3", "7"] and ds.labels.tolist() == [0] * 10 + [1] * 10
    )
    ds = load_dataset(_npz(tmp_path, x=np.stack([x, x, x], 1)))
    assert ds.images.shape == (20, 3, 5, 6) and ds.labels is None


def test_npz_float_in_unit_range_is_scaled(tmp_path):
    x = np.full((3, 4, 4), 0.5, dtype=np.float32)
    assert int(load_dataset(_npz(tmp_path, x=x)).images[0, 0, 0, 0]) == 128


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((2, 4, 4), np.uint8)}, "missing array 'x'"),
        ({"x": np.zeros((4, 4), np.uint8)}, r"shape \(4, 4\).*expected \(N,H,W\)"),
        ({"x": np.zeros((2, 1, 2, 4, 4), np.uint8)}, "expected"),
        ({"x": np.array([[["a"]]])}, "dtype"),
        ({"x": np.full((2, 4, 4), np.nan)}, "NaN/inf"),
        ({"x": np.full((2, 4, 4), 300, np.int32)}, r"0\.\.255"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(3)}, "'y' has shape"),
        ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.array([0.5, 1.0])}, "integers"),
        ({"x": np.zeros((0, 4, 4), np.uint8)}, "no images"),
    ],
)
def test_npz_bad_input_names_file_and_problem(tmp_path, arrays, message):
    spec = _npz(tmp_path, **arrays)
    with pytest.raises(GenlabError, match=message) as err:
        load_dataset(spec)
    assert "d.npz" in str(err.value)


def test_npz_missing_and_corrupt_file(tmp_path):
    with pytest.raises(GenlabError, match="file not found"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"definitely not a zip")
    with pytest.raises(GenlabError, match="bad.npz: not a readable .npz"):
        load_dataset(f"npz:{bad}")


# ---------------------------------------------------------------------- folders
def _png(path, array, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for i in range(3):
            _png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (6, 5), dtype=np.uint8))
    ds = load_dataset(f"folder:{tmp_path}")
    assert (
        ds.images.shape == (6, 1, 6, 5)
        and ds.class_names == ["cat", "dog"]
        and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    )


def test_flat_rgb_folder_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    _png(tmp_path / "a.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), "RGB")
    Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8), "RGB").save(tmp_path / "b.jpg")
    with pytest.raises(GenlabError, match=r"different sizes.*--size"):
        load_dataset(f"folder:{tmp_path}")
    ds = load_dataset(f"folder:{tmp_path}", size=8)
    assert ds.images.shape == (2, 3, 8, 8) and ds.labels is None
    assert load_dataset(f"folder:{tmp_path}", size=8, channels="gray").images.shape == (2, 1, 8, 8)


def test_folder_errors(tmp_path):
    with pytest.raises(GenlabError, match="folder not found"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="no PNG/JPEG images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(GenlabError, match=r"x\.png: unreadable or corrupt image"):
        load_dataset(f"folder:{tmp_path / 'broken'}")


def test_dataset_subset_keeps_captions_and_indices(digits):
    ds = genlab.Dataset(digits.images[:4], digits.labels[:4], captions=["a", "b", "c", "d"])
    sub = ds.subset([3, 1])
    assert sub.captions == ["d", "b"] and sub.indices.tolist() == [3, 1]
