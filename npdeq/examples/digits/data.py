"""The digits data: scikit-learn's bundled 8x8 handwritten digits (1797 images, no download),
split into a stratified training and held-out test set, standardised with the training
statistics, and served in shuffled mini-batches. Needs scikit-learn.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

import numpy as np

from npdeq.backend.checks import as_count

__all__ = ["Digits", "load", "batches", "IMAGES", "TEST_FRACTION", "TRAIN_IMAGES"]

IMAGES = 1797  # scikit-learn's bundled set
TEST_FRACTION = 0.2
# scikit-learn's split gives the test set ceil(fraction * n) images.
TRAIN_IMAGES = IMAGES - math.ceil(TEST_FRACTION * IMAGES)


@dataclasses.dataclass(slots=True)
class Digits:
    """Training and test arrays (host NumPy): standardised images ``(N, 64)`` and labels
    ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load(seed: int = 0, test_fraction: float = TEST_FRACTION, train_size: int | None = None,
         dtype: Any = np.float64) -> Digits:
    """Load and split the digits.

    Args:
        seed: the split's random state.
        test_fraction: the held-out share (stratified by class).
        train_size: keep only this many training images (for smoke tests); ``None``: all.
        dtype: the images' dtype.

    Returns:
        The split, pixels standardised by the training set's mean and deviation.

    Raises:
        ImportError: scikit-learn is missing (``pip install "npdeq[examples]"``).
        ValueError: ``train_size`` is not an int from 1 to the training images available
            (a larger one would silently give fewer).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError("the demo needs scikit-learn: pip install \"npdeq[examples]\"") from exc
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=test_fraction, stratify=y, random_state=seed)
    if train_size is not None:
        count = as_count(train_size)
        if count is None or not 1 <= count <= len(y_train):
            raise ValueError(f"train_size must be an int from 1 to {len(y_train)} (the "
                             f"training images), got {train_size!r}")
        x_train, y_train = x_train[:count], y_train[:count]
    # One mean and scale for all pixels: per-pixel statistics blow up the nearly always
    # blank border pixels.
    mean, scale = x_train.mean(), x_train.std()
    prepare = lambda a: ((a - mean) / scale).astype(dtype)  # noqa: E731
    return Digits(prepare(x_train), y_train.astype(np.int64), prepare(x_test),
                  y_test.astype(np.int64))


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield index arrays of a random permutation of ``range(n)`` in chunks of
    ``batch_size`` (the last one may be smaller)."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
