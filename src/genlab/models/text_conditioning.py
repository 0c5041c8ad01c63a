"""Text conditioning shared by the U-Net families (``diffusion``, ``flow-matching``).

:class:`TextConditioned` is a mixin for a :class:`~genlab.models.neural.NeuralGenerativeModel`
with a ``condition`` hyper-parameter (``"text"`` switches it on) and a ``text_encoder`` one
(a sentence-transformers name or folder, :class:`genlab.text.TextEncoder`, never
downloaded). It gives the family:

* ``fit(X, captions)``: one caption per image, checked; a Dataset's ``captions`` when X is one;
* :meth:`TextConditioned._text_training_data`: the caption embeddings ``{"cond": (N, D)}``
  for the trainer's batches, and the fitted state ``text_encoder_id_`` (the weights' hash,
  checked again whenever prompts are encoded), ``text_dim_`` and ``caption_pool_`` (a
  seeded sample of at most :data:`CAPTION_POOL_SIZE` training captions);
* ``sample(n, prompt=...)`` (or the prompts as ``y``) and :meth:`TextConditioned._text_condition`:
  the prompt embeddings of a sampling call — the given prompts, prompts drawn from
  ``caption_pool_`` when none are given, or None (the null branch) for ``unconditional=True``.

The network side is the U-Net's ``cond`` vector with its learned null vector (rows flagged
by ``drop`` use it): the family drops captions ``label_dropout`` of the time in training and
guides with ``uncond + g (cond - uncond)`` when sampling.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import GenlabError
from ..validation import check_int

#: training captions kept with a text-conditional model as default prompts (bounds config.json: ~50 kB)
CAPTION_POOL_SIZE = 1000
#: guards the lazily loaded text encoder (a cache, not an option) against concurrent first use
_TEXT_ENCODER_LOCK = threading.Lock()


class TextConditioned:
    """Mixin: ``condition="text"`` for a neural family (see the module docstring).

    Put it before :class:`~genlab.models.neural.NeuralGenerativeModel` in the bases; the
    family declares ``condition``/``text_encoder`` parameters and a ``prompt`` sample option,
    calls :meth:`_text_training_data` in its ``_fit`` and :meth:`_text_condition` in its
    ``_sample``, and builds its U-Net with ``cond_dim=self.text_dim_``.
    """

    condition: str
    text_encoder: str

    @property
    def text_conditional(self) -> bool:
        """Text-conditional when ``condition == "text"``: ``fit`` takes captions, ``sample`` prompts."""
        return self.condition == "text"

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None, *, resume: bool = False):
        """Train on uint8 images ``X`` (N, C, H, W); ``y`` = int labels (condition="label"),
        one caption string per image (condition="text"; a Dataset's ``captions`` when X is
        one), or nothing. ``resume`` continues from the last checkpoint."""
        if not self.text_conditional:
            return super().fit(X, y, resume=resume)  # type: ignore[misc]
        from ..data.dataset import Dataset

        if y is None and isinstance(X, Dataset):
            y = X.captions
        n = len(X) if hasattr(X, "__len__") else None
        return self._fit_checked(X, None, resume=bool(resume), captions=check_captions(y, n))  # type: ignore[attr-defined]

    def _text_training_data(self, captions: list[str] | None) -> dict[str, torch.Tensor] | None:
        """``{"cond": (N, text_dim)}`` caption embeddings for training (None unless text-conditional);
        records the encoder's identity, the embedding size and the caption pool."""
        if not self.text_conditional:
            return None
        encoder = self._get_text_encoder(check=False)
        self.text_encoder_id_ = encoder.model_id
        self.text_dim_ = int(encoder.dim)
        self.caption_pool_ = caption_pool(captions or [], getattr(self, "random_state", None))
        return {"cond": encoder.encode(captions)}

    def _get_text_encoder(self, check: bool = True):
        """The sentence encoder (loaded once per model object); ``check`` compares its weights
        with those the model was trained with."""
        from ..text.encoder import TextEncoder

        with _TEXT_ENCODER_LOCK:  # concurrent sample calls load the encoder once
            encoder = getattr(self, "_text_encoder_cache", None)
            if encoder is None:
                # a few prompts: the CPU is fast enough; a recorded id is checked against the weights hash before loading
                expected = getattr(self, "text_encoder_id_", None) if check else None
                encoder = TextEncoder(self.text_encoder, device="cpu", expected_id=expected)
                self._text_encoder_cache = encoder
        if check:
            encoder.check_model_id(self.text_encoder_id_, f"this {getattr(self, 'name', None) or 'text'} model")
        return encoder

    def encode_prompts(self, prompts: str | Sequence[str], n: int) -> torch.Tensor:
        """Text embeddings (n, text_dim) for one prompt (repeated) or n prompts."""
        self._check_fitted()  # type: ignore[attr-defined]
        if not self.text_conditional:
            raise GenlabError("prompts need a text-conditional model (condition='text')")
        texts = [prompts] * n if isinstance(prompts, str) else list(check_captions(prompts, n, what="prompt"))
        return self._get_text_encoder().encode(texts)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, y: Any = None, seed: int | None = None, **options: Any) -> torch.Tensor:
        """Draw ``n`` images, uint8 (n, C, H, W).

        ``y``: class labels (condition="label"); ``prompt=``: a text or n texts
        (condition="text"; ``y`` may hold them too). Without either, a conditional model
        samples as trained: labels drawn from the training class frequencies
        (``class_counts_``), or prompts drawn from a saved sample of the training captions
        (``caption_pool_``), with the model's guidance; ``unconditional=True`` samples the
        unconditional (null-label) model instead. The family's other per-call options
        (``sample_options``: sampler, steps, guidance, ...) override the model's defaults
        for this call.
        """
        if self.text_conditional and y is not None:
            options = {**options, "prompt": self._prompts_from_y(y, options.get("prompt"))}
            y = None
        return super().sample(n, y=y, seed=seed, **options)  # type: ignore[misc]

    def _check_text_options(self, options: dict[str, Any]) -> None:
        """Prompt/guidance combinations a text model refuses (call from ``_check_option_combination``)."""
        if options.get("unconditional") and options.get("prompt") is not None:
            raise GenlabError("give prompts or unconditional=True, not both")
        if options.get("guidance") is not None and not (self.conditional or self.text_conditional):  # type: ignore[attr-defined]
            raise GenlabError("guidance needs a conditional model (condition='label' or 'text')")
        if options.get("prompt") is not None and not self.text_conditional:
            raise GenlabError(
                f"prompt: this model is not text-conditional (condition={self.condition!r}); refit with condition='text'"
            )

    def _text_condition(
        self, n: int, prompt: str | Sequence[str] | None, unconditional: bool, generator: torch.Generator
    ) -> torch.Tensor | None:
        """Embeddings (n, text_dim) of a sampling call: ``prompt``, else (text models, not
        ``unconditional``) prompts drawn from the training captions, else None (null branch)."""
        if prompt is not None:
            return self.encode_prompts(prompt, n)
        if self.text_conditional and not unconditional:
            return self._training_prompt_embeddings(n, generator)
        return None

    def _training_prompt_embeddings(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """Embeddings (n, text_dim) of n prompts drawn (with ``generator``) from the saved
        sample of training captions; None (the null branch) for models saved without one."""
        pool = getattr(self, "caption_pool_", None)
        if not pool:
            warnings.warn(
                "this text-conditional model was saved without training captions; sampling the unconditional model (give prompt=...)",
                stacklevel=5,
            )
            return None
        index = torch.randint(len(pool), (n,), generator=generator)
        used, inverse = torch.unique(index, return_inverse=True)  # each distinct caption is embedded once
        return self._get_text_encoder().encode([pool[int(i)] for i in used])[inverse]

    @staticmethod
    def _prompts_from_y(y: Any, prompt: Any) -> Any:
        """Text models take prompts as ``y`` too: ``y`` checked to be texts, and not given twice."""
        if prompt is not None:
            raise GenlabError("give the prompts as prompt= or as y=, not both")
        if not (isinstance(y, str) or (isinstance(y, (list, tuple)) and all(isinstance(t, str) for t in y))):
            raise GenlabError(
                "y: this model is text-conditional; give prompts (text), not class labels: sample(n, prompt='a thick seven')"
            )
        return y

    def _prompt_embeddings(self, n: int, y: Any, prompt: Any) -> torch.Tensor | None:
        """Text embeddings (n, text_dim) of ``prompt`` (or, for text models, of ``y``); None without prompts."""
        if prompt is not None and not self.text_conditional:
            raise GenlabError(
                f"prompt: this model is not text-conditional (condition={self.condition!r}); refit with condition='text'"
            )
        if self.text_conditional and y is not None:
            prompt = self._prompts_from_y(y, prompt)
        return None if prompt is None else self.encode_prompts(prompt, check_int("n", n, minimum=1))


def caption_pool(captions: list[str], seed: int | None) -> list[str]:
    """At most CAPTION_POOL_SIZE training captions (a seeded sample, in training order): the
    prompts of ``sample(n)`` without a prompt, saved in config.json."""
    if len(captions) <= CAPTION_POOL_SIZE:
        return list(captions)
    keep = np.sort(
        np.random.default_rng(0 if seed is None else int(seed)).choice(len(captions), CAPTION_POOL_SIZE, replace=False)
    )
    return [captions[int(i)] for i in keep]


def check_captions(captions: Any, n: int | None, *, what: str = "caption") -> list[str]:
    """One non-empty string per image: a clear error for missing, short or non-text captions."""
    if captions is None:
        raise GenlabError(
            f"condition='text' needs one {what} per image: fit(X, captions) (load digit data with captions='auto')"
        )
    if isinstance(captions, str):
        raise GenlabError(f"{what}s: expected one string per image, got a single string")
    try:
        items = list(captions)
    except TypeError:
        raise GenlabError(f"{what}s: expected a list of strings, got {type(captions).__name__}") from None
    if n is not None and len(items) != n:
        raise GenlabError(f"{what}s: {len(items)} given for {n} images")
    for i, c in enumerate(items):
        if not isinstance(c, str) or not c.strip():
            raise GenlabError(f"{what}s[{i}]: expected a non-empty string, got {c!r}")
    return items


__all__ = ["TextConditioned", "CAPTION_POOL_SIZE", "caption_pool", "check_captions"]
