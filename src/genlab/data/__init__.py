"""Datasets: loading (digits, MNIST, Fashion-MNIST, npz, image folders), captions and splits."""

from .captions import CaptionEntry, captions_for_files, read_caption_file
from .dataset import Dataset
from .download import cache_dir
from .sources import list_datasets, load_dataset

__all__ = [
    "Dataset",
    "load_dataset",
    "list_datasets",
    "cache_dir",
    "read_caption_file",
    "captions_for_files",
    "CaptionEntry",
]
