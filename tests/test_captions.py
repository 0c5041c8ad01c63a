"""Digit attributes (known answers on synthetic strokes), generated captions, and caption files for folders."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab.data import Dataset, captions_for_files, load_dataset, read_caption_file
from genlab.errors import GenlabError
from genlab.text import captions as cap
from genlab.text.captions import (
    HELD_OUT_PROMPTS,
    HELD_OUT_TARGETS,
    HELD_OUT_WORDS,
    NUMBER_WORDS,
    SLANT_LEAN,
    SLANT_UPRIGHT,
    attribute_levels,
    auto_captions,
    caption_words,
    digit_captions,
    measure_digit_attributes,
    tercile_edges,
)

# --------------------------------------------------------------------------- synthetic strokes


def bar(size: int, width: int, length: int, shear: float = 0.0, value: int = 255) -> np.ndarray:
    """A vertical bar, centred; row y is shifted right by shear * (height above the centre row)."""
    img = np.zeros((size, size), dtype=np.uint8)
    top = (size - length) // 2
    for y in range(top, top + length):
        centre = size / 2 + shear * ((size - 1) / 2 - y)
        left = int(round(centre - width / 2))
        img[y, left : left + width] = value
    return img


def square(size: int, side: int) -> np.ndarray:
    img = np.zeros((size, size), dtype=np.uint8)
    top = (size - side) // 2
    img[top : top + side, top : top + side] = 255
    return img


def stack(*images: np.ndarray) -> np.ndarray:
    return np.stack(images)[:, None]


SIZES = [(8, (1, 2), 6), (28, (2, 6), 20)]  # image size, (thin, thick) bar widths, bar length


@pytest.mark.parametrize("size, widths, length", SIZES)
def test_thickness_of_bars_is_their_width(size, widths, length):
    thin, thick = widths
    a = measure_digit_attributes(stack(bar(size, thin, length), bar(size, thick, length)))
    np.testing.assert_allclose(a["thickness"], [thin, thick], rtol=0.02)
    np.testing.assert_allclose(a["thickness"][1] / a["thickness"][0], thick / thin, rtol=0.03)


@pytest.mark.parametrize("size, widths, length", SIZES)
def test_thickness_does_not_depend_on_orientation_position_or_brightness(size, widths, length):
    b = bar(size, widths[1], length)
    shifted = np.roll(b, 1, axis=1)
    dim = (b // 2).astype(np.uint8)
    a = measure_digit_attributes(stack(b, b.T, b[:, ::-1], shifted, dim))
    np.testing.assert_allclose(a["thickness"], a["thickness"][0], rtol=1e-9)
    # leaning bars (row-shifted pixels): the staircase edges are measured a little long, so the width
    # across the stroke comes out up to 15% low (measured: 0-14% at 8x8, 4-12% at 28x28)
    for shear in (0.1, 0.2, 0.3, 0.5):
        leaning = measure_digit_attributes(stack(bar(size, widths[1], length, shear)))["thickness"][0]
        true_width = widths[1] / np.hypot(1.0, shear)
        assert 0.85 * true_width < leaning <= 1.01 * true_width, shear


@pytest.mark.parametrize("size, widths, length", SIZES)
def test_slant_sign_and_size_of_sheared_bars(size, widths, length):
    shear = 0.3
    a = measure_digit_attributes(
        stack(bar(size, widths[1], length), bar(size, widths[1], length, shear), bar(size, widths[1], length, -shear))
    )
    upright, right, left = a["slant"]
    assert abs(upright) < 1e-12
    assert right > SLANT_LEAN and left < -SLANT_LEAN
    assert right == pytest.approx(-left, abs=1e-9)
    assert right == pytest.approx(shear, abs=0.05)  # rounding each row to whole pixels


@pytest.mark.parametrize("size, sides", [(8, (2, 6)), (28, (6, 20))])
def test_size_of_squares(size, sides):
    a = measure_digit_attributes(stack(square(size, sides[0]), square(size, sides[1])))
    # radius of gyration of an s x s block of pixels: each axis has variance (s^2 - 1) / 12
    expected = [np.sqrt((s * s - 1) / 6) for s in sides]
    np.testing.assert_allclose(a["size"], expected, rtol=1e-12)
    np.testing.assert_array_equal(a["height"], sides)
    np.testing.assert_array_equal(a["width"], sides)
    centre = np.array([(size - s) // 2 + (s - 1) / 2 for s in sides])
    np.testing.assert_allclose(a["center_x"], 2 * centre / (size - 1) - 1, atol=1e-12)
    np.testing.assert_allclose(a["center_y"], a["center_x"], atol=1e-12)


def test_moments_match_weighted_covariance_oracle(tiny_images):
    """slant and size against numpy's weighted covariance of pixel coordinates, per image (float64 oracle)."""
    a = measure_digit_attributes(tiny_images)
    h, w = tiny_images.shape[2:]
    ys, xs = np.mgrid[0:h, 0:w]
    for i in range(0, len(tiny_images), 7):
        weights = tiny_images[i, 0].astype(np.float64).ravel()
        cov = np.cov(np.stack([xs.ravel(), ys.ravel()]), aweights=weights, bias=True)
        assert a["slant"][i] == pytest.approx(-cov[0, 1] / cov[1, 1], rel=1e-9, abs=1e-12)
        assert a["size"][i] == pytest.approx(np.sqrt(cov[0, 0] + cov[1, 1]), rel=1e-9)
        assert a["ink"][i] == pytest.approx(weights.sum() / 255.0, rel=1e-12)
        cx = (weights * xs.ravel()).sum() / weights.sum()
        assert a["center_x"][i] == pytest.approx(2 * cx / (w - 1) - 1, rel=1e-9, abs=1e-12)


def test_chunks_colour_and_tensors_give_the_same_answer(tiny_images, monkeypatch):
    whole = measure_digit_attributes(tiny_images)
    monkeypatch.setattr(cap, "_CHUNK", 7)
    chunked = measure_digit_attributes(torch.from_numpy(tiny_images))
    rgb = measure_digit_attributes(np.repeat(tiny_images, 3, axis=1))
    for key in whole:
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-12)
        np.testing.assert_allclose(rgb[key], whole[key], rtol=1e-12)


def test_blank_image_has_no_attributes():
    a = measure_digit_attributes(stack(np.zeros((8, 8), np.uint8), bar(8, 2, 6)))
    assert a["ink"][0] == 0
    for key in ("thickness", "slant", "size", "height", "width", "center_x", "center_y"):
        assert np.isnan(a[key][0]) and np.isfinite(a[key][1])
    levels = attribute_levels(a)
    assert all(levels[k][0] == "" for k in levels)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 1, 8, 8), np.float32), "expected uint8"),
        (np.zeros((8, 8), np.uint8), "expected shape"),
        (np.zeros((0, 1, 8, 8), np.uint8), "no images"),
    ],
)
def test_bad_images(bad, message):
    with pytest.raises(GenlabError, match=message):
        measure_digit_attributes(bad)


# --------------------------------------------------------------------------- attribute words


@pytest.fixture(scope="module")
def digit_attrs():
    ds = genlab.load_dataset("digits")
    return ds, measure_digit_attributes(ds.images)


def test_levels_are_per_class_thirds(digit_attrs):
    ds, a = digit_attrs
    y = ds.labels.numpy()
    levels = attribute_levels(a, y)
    for key, words in (("thickness", ("thin", "medium", "thick")), ("size", ("small", "medium", "large"))):
        for c in range(10):
            values, lv = a[key][y == c], levels[key][y == c]
            lo, hi = np.quantile(values, [1 / 3, 2 / 3])
            assert np.all(values[lv == words[0]] <= lo) and np.all(values[lv == words[2]] >= hi)
            assert np.all((values[lv == words[1]] > lo) & (values[lv == words[1]] < hi))
            share = np.mean(lv == words[2])
            assert 0.28 < share < 0.39, (key, c, share)
    edges = tercile_edges(a["thickness"], y, per_class=False)
    assert edges.shape == (1, 2)
    flat = attribute_levels(a, y, per_class=False)["thickness"]
    assert np.all(a["thickness"][flat == "thick"] >= edges[0, 1])


def test_slant_words_follow_fixed_thresholds(digit_attrs):
    _, a = digit_attrs
    s = attribute_levels(a)["slant"]
    assert np.all(a["slant"][s == "right"] >= SLANT_LEAN) and np.all(a["slant"][s == "left"] <= -SLANT_LEAN)
    assert np.all(np.abs(a["slant"][s == "upright"]) <= SLANT_UPRIGHT)
    between = (np.abs(a["slant"]) > SLANT_UPRIGHT) & (np.abs(a["slant"]) < SLANT_LEAN)
    assert np.all(s[between] == "")


def test_small_classes_fall_back_to_dataset_thirds():
    values = np.arange(40, dtype=float)
    labels = np.array([0] * 36 + [1] * 4)
    edges = tercile_edges(values, labels)
    np.testing.assert_allclose(edges[1], np.quantile(values, [1 / 3, 2 / 3]))
    np.testing.assert_allclose(edges[0], np.quantile(values[:36], [1 / 3, 2 / 3]))


# --------------------------------------------------------------------------- captions

_LEVEL_WORDS = {key: adjs + phrases for key, (adjs, phrases) in cap._WORDS.items()}


def _has(caption: str, phrase: str) -> bool:
    return re.search(rf"(^|[\s,]){re.escape(phrase)}($|[\s,])", caption) is not None


def _levels_named(caption: str) -> dict[str, set[str]]:
    """Attribute levels a caption names; longest phrases first ("slanted to the left" is not "slanted")."""
    phrases = sorted(
        ((w, kind, level) for (kind, level), words in _LEVEL_WORDS.items() for w in words), key=lambda t: -len(t[0])
    )
    found: dict[str, set[str]] = {}
    rest = caption
    for phrase, kind, level in phrases:
        if _has(rest, phrase):
            found.setdefault(kind, set()).add(level)
            rest = re.sub(rf"(^|[\s,]){re.escape(phrase)}($|[\s,])", r"\1|\2", rest)
    return found


def test_caption_words_agree_with_measured_levels(digit_attrs):
    ds, a = digit_attrs
    y = ds.labels.numpy()
    levels = attribute_levels(a, y)
    captions = digit_captions(y, a, seed=3)
    said = {"thickness": 0, "slant": 0, "size": 0}
    for i, text in enumerate(captions):
        named = _levels_named(text)
        for kind, lv in named.items():
            assert lv == {levels[kind][i]}, (text, kind, levels[kind][i])
            said[kind] += lv != {"medium"}
        digits_named = {d for d in range(10) if _has(text, str(d)) or _has(text, NUMBER_WORDS[d])}
        assert digits_named == {y[i]}, text
    # most captions describe their image: with drop probability 0.2 about 80% of the marked attributes appear
    for kind in said:
        marked = np.sum((levels[kind] != "") & (levels[kind] != "medium"))
        assert said[kind] > 0.6 * marked, (kind, said[kind], marked)


def test_no_dropping_names_every_marked_attribute(digit_attrs):
    ds, a = digit_attrs
    y = ds.labels.numpy()
    levels = attribute_levels(a, y)
    captions = digit_captions(y, a, seed=0, drop_probability=0.0)
    for i, text in enumerate(captions):
        named = _levels_named(text)
        for kind in ("thickness", "slant", "size"):
            level = levels[kind][i]
            if level and level != "medium":
                assert named.get(kind) == {level}, (text, kind, level)


def test_captions_are_varied_and_reproducible(digit_attrs):
    ds, a = digit_attrs
    y = ds.labels.numpy()
    first = digit_captions(y, a, seed=0)
    assert first == digit_captions(y, a, seed=0)
    other = digit_captions(y, a, seed=1)
    assert np.mean([p != q for p, q in zip(first, other)]) > 0.8
    for c in range(10):
        texts = [t for t, label in zip(first, y) if label == c]
        assert len(set(texts)) > 0.6 * len(texts), c  # measured: 85-95% distinct
    both_forms = {
        any(_has(t, NUMBER_WORDS[c]) for t, label in zip(first, y) if label == c)
        and any(_has(t, str(c)) for t, label in zip(first, y) if label == c)
        for c in range(10)
    }
    assert both_forms == {True}  # every digit is written as a word and as a numeral somewhere


def test_articles_are_grammatical(digit_attrs):
    ds, a = digit_attrs
    text = " | ".join(digit_captions(ds.labels.numpy(), a, seed=0))
    assert re.search(r"\ba (eight|8\w*|(?!one\b)[aeiou]\w*)\b", text) is None
    assert re.search(r"\ban (one|[^aeiou8\s]\w*)\b", text) is None
    assert "an eight" in text and "a one" in text


def test_held_out_prompts_never_appear_in_training_captions(digit_attrs):
    ds, a = digit_attrs
    y = ds.labels.numpy()
    texts = set()
    for seed in range(5):
        texts.update(digit_captions(y, a, seed=seed))
        texts.update(digit_captions(y, a, seed=seed, drop_probability=0.0))
    prompts = {p.lower() for p in HELD_OUT_PROMPTS}
    assert not prompts & {t.lower() for t in texts}
    used = set().union(*(caption_words(t) for t in texts))
    assert not HELD_OUT_WORDS & used
    # also over everything the templates could ever say, not only what these seeds drew
    vocabulary = set()
    for words in _LEVEL_WORDS.values():
        for w in words:
            vocabulary |= caption_words(w)
    for d in range(10):
        bare, fixed, _ = cap._class_nouns(str(d))
        for w in bare + fixed:
            vocabulary |= caption_words(w)
    assert not HELD_OUT_WORDS & vocabulary
    # and every held-out prompt uses at least one held-out word, with a target digit it names
    for prompt in HELD_OUT_PROMPTS:
        assert HELD_OUT_WORDS & caption_words(prompt), prompt
        assert _has(prompt, NUMBER_WORDS[HELD_OUT_TARGETS[prompt]["digit"]])


def test_captions_without_attributes_or_with_other_class_names():
    plain = digit_captions(np.array([0, 1, 2]), seed=0)
    assert all(_levels_named(t) == {} for t in plain)
    named = digit_captions(np.array([0, 1]), class_names=["cat", "owl"], seed=0)
    assert "cat" in named[0] and "owl" in named[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": np.array([0.5, 1.0])}, "non-negative integers"),
        ({"labels": np.array([0, 12])}, "has no name in class_names"),
        ({"labels": np.array([0, 1]), "drop_probability": 1.0}, "drop_probability"),
    ],
)
def test_bad_caption_arguments(kwargs, message):
    with pytest.raises(GenlabError, match=message):
        digit_captions(**kwargs)


def test_attributes_must_match_the_labels(digit_attrs):
    _, a = digit_attrs
    with pytest.raises(GenlabError, match="labels: expected 1797"):
        digit_captions(np.array([0, 1, 2]), a)


def test_auto_captions_for_digit_datasets_only(digits):
    captions = auto_captions(digits)
    assert len(captions) == len(digits) and captions == auto_captions(digits)
    loaded = load_dataset("digits", captions="auto")
    assert loaded.captions == captions
    train, test = loaded.split(0.2, 0)
    assert train.captions == [captions[i] for i in train.indices]
    clothes = Dataset(digits.images[:20], torch.arange(20) % 2, ["T-shirt", "Trouser"], name="fashion-mnist")
    with pytest.raises(
        GenlabError, match=r"fashion-mnist: genlab writes captions only for digit datasets .*caption file"
    ):
        auto_captions(clothes)
    with pytest.raises(GenlabError, match="has no labels"):
        auto_captions(Dataset(digits.images[:20], name="unlabelled"))


def test_npz_digits_get_auto_captions(tmp_path, tiny_images, digits):
    path = tmp_path / "d.npz"
    np.savez(path, x=tiny_images[:, 0], y=digits.labels.numpy()[:120])
    ds = load_dataset(f"npz:{path}", captions="auto")
    assert len(ds.captions) == 120


def test_caption_file_for_non_folder_dataset_is_refused():
    with pytest.raises(
        GenlabError, match=r"captions='c.csv': caption files .* folder:PATH datasets; for digits use captions='auto'"
    ):
        load_dataset("digits", captions="c.csv")


# --------------------------------------------------------------------------- caption files


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8), "L").save(path)


@pytest.fixture
def flat_folder(tmp_path):
    root = tmp_path / "flat"
    for name, v in (("a.png", 10), ("b.png", 20), ("c.png", 30)):
        _png(root / name, v)
    return root


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "classes"
    _png(root / "cats" / "1.png", 10)
    _png(root / "cats" / "2.png", 20)
    _png(root / "dogs" / "3.png", 30)
    return root


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_captions_fill_the_dataset_in_file_order(flat_folder):
    _write(
        flat_folder / "captions.csv",
        'image,caption\nc.png,a bright square\na.png,"a dark, small square"\nb.png,a grey square\n',
    )
    ds = load_dataset(f"folder:{flat_folder}", captions="captions.csv")
    assert ds.captions == ["a dark, small square", "a grey square", "a bright square"]
    assert ds.images[:, 0, 0, 0].tolist() == [10, 20, 30]
    assert ds.subset([2, 0]).captions == ["a bright square", "a dark, small square"]


def test_jsonl_tsv_and_alternative_columns(class_folder, tmp_path):
    lines = [
        {"image": "cats/1.png", "caption": "one cat"},
        {"file": "dogs/3.png", "text": "a dog"},
        {"image": "2.png", "caption": "another cat"},
    ]
    _write(tmp_path / "c.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds = load_dataset(f"folder:{class_folder}", captions=str(tmp_path / "c.jsonl"))  # absolute path
    assert ds.captions == ["one cat", "another cat", "a dog"] and ds.class_names == ["cats", "dogs"]
    _write(class_folder / "c.tsv", "File\tText\ncats/1.png\tone cat\ncats/2.png\tanother cat\n./dogs/3.png\ta dog\n")
    assert load_dataset(f"folder:{class_folder}", captions="c.tsv").captions == ["one cat", "another cat", "a dog"]


def test_caption_file_relative_to_working_directory(flat_folder, tmp_path, monkeypatch):
    _write(tmp_path / "mine.csv", "file,text\na.png,x\nb.png,y\nc.png,z\n")
    monkeypatch.chdir(tmp_path)
    assert load_dataset(f"folder:{flat_folder}", captions="mine.csv").captions == ["x", "y", "z"]
    # a folder given by a relative path works the same
    assert load_dataset("folder:flat", captions="mine.csv").captions == ["x", "y", "z"]


def test_captions_survive_resizing(flat_folder):
    _write(flat_folder / "c.csv", "image,caption\na.png,x\nb.png,y\nc.png,z\n")
    ds = load_dataset(f"folder:{flat_folder}", captions="c.csv", size=8)
    assert ds.image_shape == (1, 8, 8) and ds.captions == ["x", "y", "z"]


def test_duplicate_rows_with_the_same_caption_are_fine(flat_folder):
    _write(flat_folder / "c.csv", "image,caption\na.png,x\nb.png,y\nc.png,z\na.png,x\n")
    assert load_dataset(f"folder:{flat_folder}", captions="c.csv").captions == ["x", "y", "z"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("picture,caption\na.png,x\n", r"c\.csv:1: no image column \(found columns: 'picture', 'caption'\)"),
        ("image,words\na.png,x\n", r"c\.csv:1: no caption column"),
        ("image,caption\na.png,x\nb.png,y\nc.png,z\nd.png,w\n", r"c\.csv:5: unknown image d\.png"),
        (
            "image,caption\na.png,x\nb.png,y\nc.png,z\na.png,other\n",
            r"c\.csv:5: image a\.png already has a different caption on line 2 \('x' vs 'other'\)",
        ),
        ("image,caption\na.png,x\nb.png,  \nc.png,z\n", r"c\.csv:3: empty caption for b\.png"),
        ("image,caption\na.png,x\n,y\n", r"c\.csv:3: the image name is empty"),
        ('image,caption\na.png,"two\nlines"\n\nb.png,y\nnope.png,z\n', r"c\.csv:6: unknown image nope\.png"),
        ("image,caption\na.png,x\n", r"c\.csv: 2 of 3 images have no caption: b\.png, c\.png"),
        ("", r"c\.csv: empty caption file"),
        ("image,caption\n", r"c\.csv: holds no captions"),
    ],
)
def test_caption_csv_errors_name_file_and_line(flat_folder, text, message):
    _write(flat_folder / "c.csv", text)
    with pytest.raises(GenlabError, match=message):
        load_dataset(f"folder:{flat_folder}", captions="c.csv")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"image": "a.png", "caption": "x"}\n{"image": "b.png"\n', r"c\.jsonl:2: not valid JSON"),
        ('["a.png", "x"]\n', r"c\.jsonl:1: expected a JSON object"),
        ('{"image": "a.png", "label": "x"}\n', r"c\.jsonl:1: no caption key"),
        ('{"caption": "x"}\n', r"c\.jsonl:1: no image key"),
        ('{"image": "a.png", "caption": 3}\n', r"c\.jsonl:1: image and caption must be strings"),
    ],
)
def test_caption_jsonl_errors(flat_folder, text, message):
    _write(flat_folder / "c.jsonl", text)
    with pytest.raises(GenlabError, match=message):
        load_dataset(f"folder:{flat_folder}", captions="c.jsonl")


def test_missing_caption_file_and_unknown_format(flat_folder):
    with pytest.raises(GenlabError, match=r"caption file nothing\.csv: not found \(looked for .*flat/nothing\.csv or "):
        load_dataset(f"folder:{flat_folder}", captions="nothing.csv")
    _write(flat_folder / "c.txt", "a.png x\n")
    with pytest.raises(GenlabError, match=r"unknown format \.txt; use \.csv"):
        load_dataset(f"folder:{flat_folder}", captions="c.txt")


def test_many_uncaptioned_images_are_counted(tmp_path):
    root = tmp_path / "many"
    for i in range(9):
        _png(root / f"{i}.png", i)
    _write(root / "c.csv", "image,caption\n0.png,x\n")
    with pytest.raises(
        GenlabError, match=r"8 of 9 images have no caption: 1\.png, 2\.png, 3\.png, 4\.png, 5\.png, \.\.\. \(3 more\)"
    ):
        load_dataset(f"folder:{root}", captions="c.csv")


def test_ambiguous_file_name_asks_for_the_path(tmp_path):
    root = tmp_path / "amb"
    _png(root / "cats" / "x.png", 1)
    _png(root / "dogs" / "x.png", 2)
    _write(root / "c.csv", "image,caption\nx.png,which\n")
    with pytest.raises(
        GenlabError, match=r"c\.csv:2: image name x\.png is ambiguous \(cats/x\.png, dogs/x\.png\); give its path"
    ):
        load_dataset(f"folder:{root}", captions="c.csv")
    _write(root / "c.csv", "image,caption\ncats/x.png,a cat\ndogs/x.png,a dog\n")
    assert load_dataset(f"folder:{root}", captions="c.csv").captions == ["a cat", "a dog"]


def test_same_image_by_path_and_by_name_conflict(class_folder):
    _write(class_folder / "c.csv", "image,caption\ncats/1.png,x\n1.png,y\ncats/2.png,z\ndogs/3.png,w\n")
    with pytest.raises(GenlabError, match=r"c\.csv:3: image cats/1\.png already has a different caption on line 2"):
        load_dataset(f"folder:{class_folder}", captions="c.csv")


def test_absolute_image_paths_inside_and_outside_the_folder(flat_folder, tmp_path):
    _write(flat_folder / "c.csv", f"image,caption\n{flat_folder / 'a.png'},x\nb.png,y\nc.png,z\n")
    assert load_dataset(f"folder:{flat_folder}", captions="c.csv").captions == ["x", "y", "z"]
    _write(flat_folder / "c.csv", f"image,caption\n{tmp_path / 'elsewhere.png'},x\n")
    with pytest.raises(GenlabError, match=r"c\.csv:2: image .*elsewhere\.png is not inside the dataset folder"):
        load_dataset(f"folder:{flat_folder}", captions="c.csv")


def test_library_helpers(flat_folder):
    _write(flat_folder / "c.csv", "image,caption\nb.png,y\n")
    entries = read_caption_file(flat_folder / "c.csv")
    assert [(e.image, e.caption, e.line) for e in entries] == [("b.png", "y", 2)]
    assert captions_for_files("c.csv", flat_folder, [flat_folder / "b.png"]) == ["y"]
    assert captions_for_files("c.csv", flat_folder, ["b.png"]) == ["y"]


def test_auto_captions_for_a_folder_of_digit_classes(tmp_path, tiny_images, digits):
    root = tmp_path / "digitfolder"
    y = digits.labels.numpy()[:120]
    for i in range(40):
        (root / str(y[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(tiny_images[i, 0], "L").save(root / str(y[i]) / f"{i:03d}.png")
    ds = load_dataset(f"folder:{root}", captions="auto")
    assert len(ds.captions) == 40
    for text, label in zip(ds.captions, ds.labels.numpy()):
        digit = int(ds.class_names[label])
        assert _has(text, str(digit)) or _has(text, NUMBER_WORDS[digit]), text
