"""Evaluation: datasets mapped to one record shape, and (later) metrics, runner, report and selection."""

from ._datasets import DATASETS, Example, data_dir, load_examples

__all__ = ["DATASETS", "Example", "data_dir", "load_examples"]
