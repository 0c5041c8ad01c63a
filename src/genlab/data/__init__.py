"""Datasets: loading (digits, MNIST, Fashion-MNIST, npz, image folders) and splits."""

from .dataset import Dataset
from .download import cache_dir
from .sources import list_datasets, load_dataset

__all__ = ["Dataset", "load_dataset", "list_datasets", "cache_dir"]
