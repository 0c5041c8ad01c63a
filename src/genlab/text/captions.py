"""Captions for labelled digit datasets, written from the label and attributes measured on each image.

Attributes come from image moments and the total variation of the ink, vectorised over the whole
batch (see :func:`measure_digit_attributes`). Words are assigned by dataset quantiles (thickness,
size: thirds, within each class by default) and by fixed thresholds (slant), then rendered with varied
templates and synonyms so that a sentence encoder sees many wordings of the same content.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..errors import GenlabError

#: Images measured per chunk: bounds the float64 working memory (4096 * 28 * 28 * 8 B = 26 MB per array).
_CHUNK = 4096


def _as_ink(images) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, H, W) float64 ink in [0, 1] (channel mean; 0 = background)."""
    try:
        import torch

        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise GenlabError(f"images: expected shape (N, C, H, W) or (N, H, W), got {x.shape}")
    if x.dtype != np.uint8:
        raise GenlabError(f"images: expected uint8 pixels 0..255, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise GenlabError("images: no images to measure")
    if x.shape[2] < 2 or x.shape[3] < 2:
        raise GenlabError(f"images: {x.shape[2]}x{x.shape[3]} pixels are too few to measure strokes")
    return x


def measure_digit_attributes(images) -> dict[str, np.ndarray]:
    """Stroke and shape attributes of each image, from moments and total variation (vectorised).

    Parameters
    ----------
    images : uint8 array or tensor, shape (N, C, H, W) (or (N, H, W))
        Bright ink on a dark background (0 = background), as genlab datasets store digits.
        Colour images are averaged over channels.

    Returns
    -------
    dict of str -> float64 array (N,)
        ``ink``: total ink, sum of pixel values / 255 (pixel units).
        ``thickness``: stroke width in pixels. The ink is treated as a bent rectangle of length L
        and width w: its area is the ink mass A = w L and its perimeter P = 2 (L + w) is the total
        variation of the image (the sum of gradient magnitudes; by the coarea formula this is the
        perimeter of every grey level, integrated over levels); both are divided by the brightest
        pixel, i.e. averaged over grey levels. Solving for the shorter side gives
        ``w = P/4 - sqrt(max(P^2/16 - A, 0))``: exact for axis-aligned bars, up to 15% low for strokes
        leaning up to about 27 degrees and about 20% low at 45 degrees (pixel staircases). Unlike counting
        pixels left after a binary erosion, this works for 1-pixel strokes and for the graded edges of
        8x8 and 28x28 digits.
        ``slant``: horizontal shift per pixel of height (tan of the lean angle), ``-mu11 / mu02``
        with rows counted downwards, so > 0 means the top leans right (the shear that classic MNIST
        deskewing removes).
        ``size``: radius of gyration of the ink about its centre of mass, ``sqrt((mu20 + mu02) / m00)``,
        in pixels.
        ``height``, ``width``: extent in pixels of the rows / columns holding ink of at least 25%
        of the image's brightest pixel.
        ``center_x``, ``center_y``: centre of mass in [-1, 1] (0 = image centre, +x right, +y down).
        Images without ink get NaN for every attribute except ``ink`` (0).
    """
    x = _as_ink(images)
    n, _, h, w = x.shape
    names = ("ink", "thickness", "slant", "size", "height", "width", "center_x", "center_y")
    out = {k: np.empty(n, dtype=np.float64) for k in names}
    rows = np.arange(h, dtype=np.float64)[:, None]  # y, downwards
    cols = np.arange(w, dtype=np.float64)[None, :]
    for start in range(0, n, _CHUNK):
        part = slice(start, min(start + _CHUNK, n))
        u = x[part].astype(np.float64).mean(axis=1) / 255.0  # (B, H, W)
        mass = u.sum(axis=(1, 2))
        has_ink = mass > 0
        safe = np.where(has_ink, mass, 1.0)
        cy = (u * rows).sum(axis=(1, 2)) / safe
        cx = (u * cols).sum(axis=(1, 2)) / safe
        dy = rows[None] - cy[:, None, None]
        dx = cols[None] - cx[:, None, None]
        mu02 = (u * dy * dy).sum(axis=(1, 2))  # spread over rows (vertical)
        mu20 = (u * dx * dx).sum(axis=(1, 2))
        mu11 = (u * dx * dy).sum(axis=(1, 2))
        # gradient at the centre of every 2x2 cell (zero border, so ink at the edge still has an edge):
        # symmetric under flips and 90-degree turns, and it measures a 45-degree staircase edge at its
        # true length, where plain forward differences would overcount it by up to sqrt(2)
        padded = np.pad(u, ((0, 0), (1, 1), (1, 1)))
        a, b = padded[:, :-1, :-1], padded[:, :-1, 1:]
        c, d = padded[:, 1:, :-1], padded[:, 1:, 1:]
        gx = 0.5 * ((b - a) + (d - c))
        gy = 0.5 * ((c - a) + (d - b))
        peak = u.max(axis=(1, 2))
        # the cell-centred measure cuts each 90-degree corner of a pixel shape by (2 - sqrt 2)/2; add back
        # the four corners' worth (per grey level, so scaled by the peak) and rectangles measure exactly
        perimeter = np.sqrt(gx * gx + gy * gy).sum(axis=(1, 2)) + (4.0 - 2.0 * np.sqrt(2.0)) * peak
        # area and perimeter averaged over the grey levels 0..peak, so a faint stroke is as wide as a bright one
        safe_peak = np.where(peak > 0, peak, 1.0)
        quarter = perimeter / safe_peak / 4.0
        thickness = quarter - np.sqrt(np.maximum(quarter * quarter - mass / safe_peak, 0.0))
        strong = u >= 0.25 * peak[:, None, None]
        row_any, col_any = strong.any(axis=2), strong.any(axis=1)
        height = h - row_any.argmax(axis=1) - row_any[:, ::-1].argmax(axis=1)
        width = w - col_any.argmax(axis=1) - col_any[:, ::-1].argmax(axis=1)
        nan = np.nan
        out["ink"][part] = mass
        out["thickness"][part] = np.where(has_ink, thickness, nan)
        out["slant"][part] = np.where(has_ink & (mu02 > 0), -mu11 / np.where(mu02 > 0, mu02, 1.0), nan)
        out["size"][part] = np.where(has_ink, np.sqrt((mu20 + mu02) / safe), nan)
        out["height"][part] = np.where(has_ink, height, nan)
        out["width"][part] = np.where(has_ink, width, nan)
        out["center_x"][part] = np.where(has_ink, 2.0 * cx / (w - 1) - 1.0, nan)
        out["center_y"][part] = np.where(has_ink, 2.0 * cy / (h - 1) - 1.0, nan)
    return out


# --------------------------------------------------------------------------- attribute words

#: |slant| at most this (tan of the lean angle; 0.08 = 4.6 degrees) reads as upright.
SLANT_UPRIGHT = 0.08
#: |slant| at least this (0.2 = 11.3 degrees) reads as leaning left / right; values in between get no slant word.
SLANT_LEAN = 0.2
#: Classes with fewer images than this share the dataset-wide thirds instead of their own.
MIN_CLASS_SIZE = 12


def tercile_edges(values: np.ndarray, labels: np.ndarray | None = None, per_class: bool = True) -> np.ndarray:
    """The 1/3 and 2/3 quantiles of ``values`` (NaN ignored).

    Returns shape (K, 2): one row per label value ``0..K-1`` when ``per_class`` and labels are given
    (classes with fewer than :data:`MIN_CLASS_SIZE` measured images use the dataset-wide edges),
    else a single row.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.full((1, 2), np.nan)
    overall = np.quantile(values[finite], [1 / 3, 2 / 3])
    if labels is None or not per_class:
        return overall[None]
    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1 if labels.size else 1
    edges = np.tile(overall, (n_classes, 1))
    for c in range(n_classes):  # a loop over classes (10), not images
        v = values[(labels == c) & finite]
        if v.size >= MIN_CLASS_SIZE:
            edges[c] = np.quantile(v, [1 / 3, 2 / 3])
    return edges


def _thirds(values: np.ndarray, labels: np.ndarray | None, per_class: bool, words: tuple[str, str, str]) -> np.ndarray:
    edges = tercile_edges(values, labels, per_class)
    row = (
        edges[labels]
        if (labels is not None and per_class and edges.shape[0] > 1)
        else edges[np.zeros(len(values), dtype=np.int64)]
    )
    out = np.full(len(values), "", dtype=object)
    finite = np.isfinite(values)
    out[finite & (values <= row[:, 0])] = words[0]
    out[finite & (values > row[:, 0]) & (values < row[:, 1])] = words[1]
    out[finite & (values >= row[:, 1])] = words[2]
    return out


def attribute_levels(attributes: dict[str, np.ndarray], labels=None, per_class: bool = True) -> dict[str, np.ndarray]:
    """Word-level description of each image's attributes.

    ``thickness``: ``"thin"`` / ``"medium"`` / ``"thick"`` by thirds of the measured stroke width;
    ``size``: ``"small"`` / ``"medium"`` / ``"large"`` by thirds of the radius of gyration. Thirds are
    taken within each class when ``per_class`` and labels are given (a thick 1 is thick for a 1),
    else over the whole dataset. ``slant``: ``"left"`` / ``"upright"`` / ``"right"`` by the fixed
    thresholds :data:`SLANT_UPRIGHT` and :data:`SLANT_LEAN`; ``""`` between them. An image without
    ink gets ``""`` everywhere.

    Returns
    -------
    dict of str -> object array of str, shape (N,)
    """
    for key in ("thickness", "size", "slant"):
        if key not in attributes:
            raise GenlabError(f"attributes: missing {key!r}; pass the output of measure_digit_attributes")
    thickness = np.asarray(attributes["thickness"], dtype=np.float64)
    n = len(thickness)
    y = None
    if labels is not None:
        y = np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels)
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
            raise GenlabError(
                f"labels: expected {n} non-negative integers to match the attributes, got shape {y.shape}, dtype {y.dtype}"
            )
        y = y.astype(np.int64)
    slant = np.asarray(attributes["slant"], dtype=np.float64)
    slant_words = np.full(n, "", dtype=object)
    ok = np.isfinite(slant)
    slant_words[ok & (np.abs(slant) <= SLANT_UPRIGHT)] = "upright"
    slant_words[ok & (slant >= SLANT_LEAN)] = "right"
    slant_words[ok & (slant <= -SLANT_LEAN)] = "left"
    return {
        "thickness": _thirds(thickness, y, per_class, ("thin", "medium", "thick")),
        "size": _thirds(np.asarray(attributes["size"], dtype=np.float64), y, per_class, ("small", "medium", "large")),
        "slant": slant_words,
    }


# --------------------------------------------------------------------------- caption text

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# (adjectives, phrases after the noun); medium size and unmarked slant get no words
_WORDS: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("thickness", "thick"): (
        ("thick", "bold", "heavy", "thick-lined", "heavy-stroked"),
        (
            "written with a thick stroke",
            "with a bold stroke",
            "in heavy strokes",
            "with thick lines",
            "in bold lines",
            "with a heavy line",
        ),
    ),
    ("thickness", "thin"): (
        ("thin", "light", "fine", "thin-lined", "light-stroked"),
        (
            "written with a thin stroke",
            "with a fine stroke",
            "in light strokes",
            "with thin lines",
            "in fine lines",
            "with a light line",
        ),
    ),
    ("thickness", "medium"): (
        ("medium-weight", "regular-weight"),
        ("with a medium stroke", "in strokes of medium thickness", "with a regular stroke"),
    ),
    ("slant", "right"): (
        ("slanted", "right-leaning", "forward-leaning", "italic"),
        ("leaning right", "slanted to the right", "tilted to the right", "leaning forward"),
    ),
    ("slant", "left"): (
        ("left-leaning", "backward-leaning", "back-slanted"),
        ("leaning left", "slanted to the left", "tilted to the left", "leaning backward"),
    ),
    ("slant", "upright"): (
        ("upright", "straight", "vertical"),
        ("standing upright", "standing straight", "upright", "with no slant"),
    ),
    ("size", "small"): (
        ("small", "little", "compact", "narrow"),
        ("written small", "at a small size", "kept small"),
    ),
    ("size", "large"): (
        ("large", "big", "wide"),
        ("written large", "at a large size", "taking up lots of room"),
    ),
}
# English adjective order: size, then stroke, then slant ("a small thick slanted seven")
_ADJ_ORDER = ("size", "thickness", "slant")

#: Prompts written in wordings that no training caption uses (held out to test that the sentence
#: encoder, not string matching, carries the meaning), with what an image made from each should show.
HELD_OUT_TARGETS: dict[str, dict[str, object]] = {
    "the number five, drawn with a heavy pen": {"digit": 5, "thickness": "thick"},
    "a seven sketched with a fine-tipped pen": {"digit": 7, "thickness": "thin"},
    "a chunky two": {"digit": 2, "thickness": "thick"},
    "an eight made with a fat marker": {"digit": 8, "thickness": "thick"},
    "a skinny one penned in pencil": {"digit": 1, "thickness": "thin"},
    "a three that leans to the right": {"digit": 3, "slant": "right"},
    "a tiny zero": {"digit": 0, "size": "small"},
    "a four traced with a hairline pen, standing tall and straight": {
        "digit": 4,
        "thickness": "thin",
        "slant": "upright",
    },
    "a huge nine": {"digit": 9, "size": "large"},
    "the figure six, tipping over to the left": {"digit": 6, "slant": "left"},
}
#: The held-out prompts, in a fixed order.
HELD_OUT_PROMPTS: tuple[str, ...] = tuple(HELD_OUT_TARGETS)
#: Words that appear in held-out prompts and in no training caption.
HELD_OUT_WORDS: frozenset[str] = frozenset(
    {
        "pen",
        "pencil",
        "penned",
        "marker",
        "sketched",
        "drawn",
        "traced",
        "chunky",
        "skinny",
        "fat",
        "tiny",
        "huge",
        "hairline",
        "figure",
        "tipping",
        "leans",
        "tall",
    }
)


def _article(next_word: str) -> str:
    w = next_word.lower()
    if w in ("8", "eight", "11", "18") or w.startswith("8"):
        return "an"
    if w.startswith("one") or w.startswith("uni") or w.startswith("eu"):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def _with_article(words: str) -> str:
    return f"{_article(words.split()[0])} {words}"


def _join_adjectives(adjs: list[str], comma: bool) -> str:
    return (", " if comma else " ").join(adjs)


def _join_and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _class_nouns(name: str) -> tuple[list[str], list[str], bool]:
    """(bare nouns, nouns that carry their own determiner, is_digit) for one class name."""
    if name.isdigit() and len(name) == 1:
        d, w = name, NUMBER_WORDS[int(name)]
        bare = [w, d, f"handwritten {w}", f"handwritten {d}"]
        fixed = [
            f"the digit {d}",
            f"the digit {w}",
            f"the number {w}",
            f"the number {d}",
            f"digit {d}",
            f"number {w}",
            f"digit {w}",
            f"number {d}",
        ]
        return bare, fixed, True
    return [name], [f"the {name}"], False


def digit_captions(
    labels,
    attributes: dict[str, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    *,
    per_class: bool = True,
    drop_probability: float = 0.2,
) -> list[str]:
    """One varied caption per image from its label and measured attributes.

    Parameters
    ----------
    labels : int array (N,)
        Class of each image, indexing ``class_names``.
    attributes : dict, optional
        :func:`measure_digit_attributes` output for the same images. Without it captions name the
        class only.
    class_names : list of str, optional
        Name of each label value; default ``"0".."9"``. Single-digit names are written both as words
        ("seven") and numerals ("7"); other names are used as they are.
    seed : int
        Same seed, same captions.
    per_class : bool
        Thirds for thickness and size within each class (default) or over the whole dataset.
    drop_probability : float
        Chance to leave out each attribute word, so that shorter prompts ("a seven", "a thick seven")
        are trained too.

    Returns
    -------
    list of str, length N
        E.g. "a thick, slanted seven", "the digit 7 written with a bold stroke, leaning right",
        "number four, upright". Thickness words: thickest third of the class "thick/bold/heavy...",
        thinnest third "thin/light/fine...", middle third "medium-weight..." (in a third of those
        captions, otherwise omitted); size: "small/little/compact/narrow" and "large/big/wide" for
        the outer thirds; slant by fixed angle thresholds.
    """
    y = np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise GenlabError(
            f"labels: expected a non-empty 1-D array of non-negative integers, got shape {y.shape}, dtype {y.dtype}"
        )
    y = y.astype(np.int64)
    n = len(y)
    if class_names is None:
        class_names = [str(i) for i in range(10)]
    class_names = [str(c) for c in class_names]
    if int(y.max()) >= len(class_names):
        raise GenlabError(f"labels: value {int(y.max())} has no name in class_names ({len(class_names)} names)")
    if not 0.0 <= drop_probability < 1.0:
        raise GenlabError(f"drop_probability={drop_probability}: must lie in [0, 1)")
    if attributes is not None:
        levels = attribute_levels(attributes, y, per_class)
        if len(levels["thickness"]) != n:
            raise GenlabError(f"attributes: measured on {len(levels['thickness'])} images, but {n} labels were given")
    else:
        levels = {k: np.full(n, "", dtype=object) for k in _ADJ_ORDER}
    rng = np.random.default_rng(seed)
    # every random choice is drawn up front (one array per decision), then read per caption
    keep = rng.random((n, 3)) >= drop_probability
    say_medium = rng.random(n) < 1 / 3
    pick = rng.random((n, 12))
    nouns = [_class_nouns(c) for c in class_names]
    captions = []
    for i in range(n):  # string assembly only; all measuring above is vectorised
        attrs = []
        for j, kind in enumerate(_ADJ_ORDER):
            level = levels[kind][i]
            if not level or not keep[i, j] or (kind, level) not in _WORDS:
                continue
            if level == "medium" and not say_medium[i]:
                continue
            attrs.append((kind, level))
        captions.append(_render(nouns[y[i]], attrs, pick[i]))
    return captions


def _choose(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def _render(nouns: tuple[list[str], list[str], bool], attrs: list[tuple[str, str]], u: np.ndarray) -> str:
    bare, fixed, _ = nouns
    adjs = [_choose(_WORDS[a][0], u[3 + k]) for k, a in enumerate(attrs)]
    phrases = [_choose(_WORDS[a][1], u[6 + k]) for k, a in enumerate(attrs)]
    if any(p.startswith("written") for p in phrases):  # not "a handwritten 7 written large"
        bare = [b for b in bare if "handwritten" not in b] or bare
        fixed = [f for f in fixed if "handwritten" not in f] or fixed
    style = _choose(("prefix", "prefix", "suffix_phrase", "suffix_list", "mixed"), u[0]) if attrs else "plain"
    if style == "plain":
        noun = _choose(bare + fixed, u[1])
        return _with_article(noun) if noun in bare else noun
    if style == "prefix":  # "a small thick slanted seven", "a thick, slanted 7"
        noun = _choose(bare, u[1])
        return _with_article(f"{_join_adjectives(adjs, u[2] < 0.5)} {noun}")
    if style == "suffix_phrase":  # "the digit 7 written with a bold stroke, leaning right"
        noun = _choose(bare + fixed, u[1])
        head = _with_article(noun) if noun in bare else noun
        order = phrases if u[2] < 0.5 else phrases[::-1]
        return f"{head} " + ", ".join(order) if len(order) == 1 else f"{head} {order[0]}, " + ", ".join(order[1:])
    if style == "suffix_list":  # "number four, upright", "a seven, thick and slanted"
        noun = _choose(bare + fixed, u[1])
        head = _with_article(noun) if noun in bare else noun
        return f"{head}, {_join_and(adjs)}"
    # mixed: the first attribute as an adjective, the rest as phrases ("a small seven leaning right")
    noun = _choose(bare, u[1])
    head = _with_article(f"{adjs[0]} {noun}")
    return head if len(attrs) == 1 else f"{head} " + ", ".join(phrases[1:])


def is_digit_dataset(class_names: Sequence[str] | None) -> bool:
    """True when every class name is a single digit 0-9 (digits, MNIST, digit npz/folders)."""
    return bool(class_names) and all(isinstance(c, str) and len(c) == 1 and c.isdigit() for c in class_names)


def auto_captions(dataset, seed: int = 0, *, per_class: bool = True) -> list[str]:
    """Captions genlab writes for a labelled digit dataset (class names "0".."9").

    Measures :func:`measure_digit_attributes` on ``dataset.images`` and calls :func:`digit_captions`.
    Raises GenlabError for unlabelled or non-digit datasets: those need a caption file.
    """
    name = getattr(dataset, "name", "dataset")
    hint = (
        "give a caption file instead (load_dataset('folder:PATH', captions='captions.csv'), CSV columns image,caption)"
    )
    if getattr(dataset, "labels", None) is None:
        raise GenlabError(f"{name}: has no labels, so genlab cannot write captions for it; {hint}")
    if not is_digit_dataset(dataset.class_names):
        shown = ", ".join(list(dataset.class_names)[:5])
        raise GenlabError(
            f"{name}: genlab writes captions only for digit datasets (class names 0-9), not for classes {shown}...; {hint}"
        )
    attributes = measure_digit_attributes(dataset.images)
    return digit_captions(dataset.labels.numpy(), attributes, dataset.class_names, seed, per_class=per_class)


_WORD_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def caption_words(caption: str) -> set[str]:
    """Lower-case words (hyphenated words kept whole and also split)."""
    words = set(_WORD_RE.findall(caption.lower()))
    return words | {part for w in words for part in w.split("-")}
