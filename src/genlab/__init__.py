"""genlab: learn the distribution of an image dataset, generate and manipulate images,
and evaluate every generator honestly.

>>> import genlab
>>> data = genlab.load_dataset("digits")
>>> train, test = data.split(0.2, seed=0)
>>> model = genlab.make_model("gmm", n_components=20).fit(train.images)
>>> model.bits_per_dim(test.images)  # doctest: +SKIP
"""

from ._version import __version__
from .data import Dataset, list_datasets, load_dataset
from .errors import GenlabError
from .models import GenerativeModel, list_models, make_model


def load_model(path) -> GenerativeModel:
    """Load any saved genlab model (a folder with config.json + model.safetensors)."""
    return GenerativeModel.load(path)


__all__ = [
    "__version__",
    "Dataset",
    "GenerativeModel",
    "GenlabError",
    "load_dataset",
    "list_datasets",
    "list_models",
    "load_model",
    "make_model",
]
