"""The evaluation figures of the run page: the memorisation strip (each sample beside its
nearest training image) and the "wrong way" baseline (real | uniform noise | generated),
drawn from what :func:`genlab.service.evaluate_run` hands its ``inspect`` hook."""

from __future__ import annotations

from pathlib import Path

FIGURES = "ui-figures"


def write_figures(run_dir: Path, evaluation, train, test, *, seed: int = 0, n: int = 8) -> dict[str, Path]:
    """Write ``ui-figures/memorisation.png`` and ``ui-figures/baseline.png`` into the run folder."""
    from ..compare import memorization_strip
    from ..images import auto_scale, labelled_panels, make_grid, save_png
    from ..models import make_model

    folder = Path(run_dir) / FIGURES
    folder.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    samples = evaluation.samples
    if evaluation.memorization is not None and samples is not None:
        strip = memorization_strip(samples, train.images, evaluation.memorization, n=min(n, len(samples)))
        out["memorisation"] = save_png(strip, folder / "memorisation.png")
    k = min(n * 2, len(samples), len(test))
    noise = make_model("uniform").fit(train.images).sample(k, seed=seed)
    picture = labelled_panels(
        [
            ("real (held out)", make_grid(test.images[:k], n)),
            ("uniform noise", make_grid(noise, n)),
            ("generated", make_grid(samples[:k], n)),
        ],
        auto_scale(int(samples.shape[2]), target=40),
    )
    out["baseline"] = save_png(picture, folder / "baseline.png")
    return out
