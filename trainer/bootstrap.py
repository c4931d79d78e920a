"""Paired bootstrap intervals over images (pure numpy, no torch, no I/O).

An ablation scores the same images with a baseline and a candidate model, once per training
seed. The paired difference of image i under seed s is `d[s, i] = cand[s, i] - base[s, i]`. The
reported effect is the mean of d over seeds and images (for mean Dice that is exactly the
candidate's mean Dice minus the baseline's). Its interval resamples *images* with replacement:
a resampled image brings its differences under every seed, so the pairing by image and by seed
is kept, and the spread between images (not between seeds) sets the width.

>>> import numpy as np
>>> d = np.full((3, 50, 2), 0.02)                        # seeds x images x columns
>>> r = paired_bootstrap(d, resamples=200, seed=0)
>>> [round(float(x), 6) for x in (r.estimate[0], r.low[0], r.high[0])]
[0.02, 0.02, 0.02]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Per column: the mean paired difference and its percentile bootstrap interval."""

    estimate: np.ndarray   # (K,) mean of d over seeds and images
    low: np.ndarray        # (K,) lower percentile bound
    high: np.ndarray       # (K,) upper percentile bound
    confidence: float
    resamples: int
    images: int
    seeds: int

    def excludes_zero(self) -> np.ndarray:
        """(K,) True where the whole interval lies on one side of 0."""
        return (self.low > 0) | (self.high < 0)


def resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) how often each of n images is drawn in each bootstrap resample."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB007]))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def paired_bootstrap(diff: np.ndarray, resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0, counts: np.ndarray | None = None) -> Interval:
    """Percentile bootstrap of the mean of `diff` (seeds, images[, K]) over images.

    Every seed holds the same images in the same order. `counts` (resamples, images), from
    `resample_counts`, lets several columns or subsets share one set of draws.
    """
    d = np.asarray(diff, np.float64)
    if d.ndim == 2:
        d = d[..., None]
    if d.ndim != 3:
        raise ValueError("diff must be (seeds, images) or (seeds, images, K)")
    seeds, n, _ = d.shape
    if n == 0 or seeds == 0:
        raise ValueError("no images (or no seeds) to bootstrap")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    per_image = d.mean(axis=0)           # (n, K): a drawn image brings all its seeds
    if counts is None:
        counts = resample_counts(n, resamples, seed)
    if counts.shape[1] != n:
        raise ValueError(f"counts are for {counts.shape[1]} images, diff has {n}")
    stats = counts @ per_image / n       # (resamples, K): the mean of each resample
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    return Interval(per_image.mean(axis=0), low, high, confidence, counts.shape[0], n, seeds)


def seeds_and_images_bootstrap(diff: np.ndarray, resamples: int = 10_000, confidence: float = 0.95,
                               seed: int = 0, counts: np.ndarray | None = None) -> Interval:
    """Two-level percentile bootstrap of the mean of `diff` (seeds, images[, K]): each resample
    draws the seeds with replacement, then the images with replacement (the same images under
    every drawn seed, so the pairing is kept).

    `paired_bootstrap` holds the trained models fixed and asks how much the result depends on
    the images; this one also lets the training seed vary. When the seeds disagree more than the
    images do, its interval is the wider, honest one. With one seed both are the same.

    >>> d = np.array([[0.01] * 20, [0.05] * 20])        # two seeds that disagree, no image spread
    >>> iv = seeds_and_images_bootstrap(d, resamples=4000, seed=0)
    >>> [round(float(x), 3) for x in (iv.low[0], iv.estimate[0], iv.high[0])]
    [0.01, 0.03, 0.05]
    """
    d = np.asarray(diff, np.float64)
    if d.ndim == 2:
        d = d[..., None]
    if d.ndim != 3 or 0 in d.shape[:2]:
        raise ValueError("diff must be a non-empty (seeds, images) or (seeds, images, K) array")
    seeds, n, _ = d.shape
    if counts is None:
        counts = resample_counts(n, resamples, seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    seed_w = rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=counts.shape[0]) / seeds  # (B, S)
    stats = sum(seed_w[:, s:s + 1] * (counts @ d[s] / n) for s in range(seeds))               # (B, K)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha], axis=0)
    return Interval(d.mean(axis=(0, 1)), low, high, confidence, counts.shape[0], n, seeds)


def seed_spread(values: np.ndarray) -> dict[str, float]:
    """Mean, sample standard deviation (ddof=1; 0 for one seed), min and max of per-seed values."""
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}
