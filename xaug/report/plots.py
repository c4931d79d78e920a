"""Report figures as PNG files, drawn with matplotlib's Agg canvas (no pyplot, no global state).

matplotlib is imported inside each function so that importing xaug.report stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from xaug.classes import CLASSES, NUM_CLASSES

HIGHLIGHT = "#d62728"
PLAIN = "#7f9fbf"
ERROR_COLORS = {"confusion": "#e41a1c", "missed": "#e6c300", "over": "#2ca02c"}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def save_figure(fig, path: Path, dpi: float | str = "figure") -> Path:
    """Write a matplotlib figure to `path` (format from the suffix, PNG without one) atomically:
    a killed command leaves the previous file or the new one, never a truncated image."""
    import io

    from xaug.store import atomic_write

    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    atomic_write(path, buf.getvalue())
    return path


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=100)


def class_bars(values: Sequence[float], path: Path, title: str, ylabel: str,
               highlight: Sequence[int] = (), errors: Sequence[float] | None = None,
               labels: Sequence[str] = CLASSES, log: bool = False) -> Path:
    """One bar per class, the `highlight` indices in red and named in the legend."""
    fig = _figure(13, 4.2)
    ax = fig.subplots()
    x = np.arange(len(values))
    colors = [HIGHLIGHT if i in set(highlight) else PLAIN for i in range(len(values))]
    ax.bar(x, values, color=colors, yerr=errors, capsize=2 if errors is not None else 0,
           error_kw={"elinewidth": 0.8, "ecolor": "#555"})
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=9)
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    if highlight:
        from matplotlib.patches import Patch

        names = ", ".join(labels[i] for i in highlight)
        ax.legend(handles=[Patch(color=HIGHLIGHT, label=f"highlighted: {names}")], loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def grouped_class_bars(groups: Mapping[str, Sequence[float]], path: Path, title: str, ylabel: str,
                       labels: Sequence[str] = CLASSES) -> Path:
    """Side-by-side bars per class for a few groups (e.g. mean area by sex)."""
    fig = _figure(13, 4.2)
    ax = fig.subplots()
    x = np.arange(len(labels))
    n = max(1, len(groups))
    width = 0.8 / n
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for k, (name, vals) in enumerate(groups.items()):
        ax.bar(x - 0.4 + width * (k + 0.5), vals, width, label=name, color=palette[k % len(palette)])
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=9)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def overlap_heatmap(matrix: np.ndarray, path: Path, title: str, unit: str) -> Path:
    """29x29 matrix of shared pixels (diagonal blanked), log colour scale, class names on both axes."""
    from matplotlib.colors import LogNorm

    m = np.asarray(matrix, np.float64).copy()
    np.fill_diagonal(m, np.nan)
    m[m <= 0] = np.nan
    fig = _figure(10.5, 9)
    ax = fig.subplots()
    finite = m[np.isfinite(m)]
    norm = LogNorm(vmin=max(finite.min(), 1e-3), vmax=finite.max()) if finite.size else None
    im = ax.imshow(m, cmap="viridis", norm=norm)
    ax.set_xticks(range(NUM_CLASSES), CLASSES, rotation=90, fontsize=8)
    ax.set_yticks(range(NUM_CLASSES), CLASSES, fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8, label=unit)
    return _save(fig, path)


def histograms(series: Mapping[str, Sequence[float]], path: Path, title: str, bins: int = 20,
               units: Mapping[str, str] | None = None,
               categories: Mapping[str, Mapping[str, int]] | None = None) -> Path:
    """Small multiples: one histogram per named series (empty series say 'no data'), then one bar
    panel per entry of `categories` ({panel: {category: count}})."""
    categories = dict(categories or {})
    n = max(1, len(series) + len(categories))
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = _figure(3.4 * cols, 2.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, vals) in zip(axes, series.items()):
        v = np.asarray([x for x in vals if x is not None and np.isfinite(x)], np.float64)
        if v.size:
            ax.hist(v, bins=bins, color=PLAIN, edgecolor="white")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel((units or {}).get(name, ""))
        ax.set_ylabel("count")
    for ax, (name, cats) in zip(axes[len(series):], categories.items()):
        keys = list(cats)
        ax.bar(range(len(keys)), [cats[k] for k in keys], color=PLAIN)
        ax.set_xticks(range(len(keys)), [str(k) for k in keys])
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("count")
    for ax in axes[len(series) + len(categories):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return _save(fig, path)


def category_bars(counts: Mapping[str, Mapping[str, int]], path: Path, title: str) -> Path:
    """Small multiples of horizontal bars: {panel: {category: count}}."""
    n = max(1, len(counts))
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = _figure(4.4 * cols, 0.5 + 2.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, cats) in zip(axes, counts.items()):
        keys = list(cats)[:15]
        ax.barh(range(len(keys)), [cats[k] for k in keys], color=PLAIN)
        ax.set_yticks(range(len(keys)), [str(k) for k in keys], fontsize=9)
        ax.invert_yaxis()
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("count")
    for ax in axes[len(counts):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return _save(fig, path)


def angle_histogram(angles: Mapping[str, Sequence[float]], path: Path, title: str,
                    threshold: float) -> Path:
    """Overlaid histograms of signed angles per group with +-threshold lines."""
    fig = _figure(8, 3.6)
    ax = fig.subplots()
    allv = np.concatenate([np.asarray(v, np.float64) for v in angles.values()] or [np.zeros(0)])
    lim = max(60.0, float(np.nanmax(np.abs(allv))) + 5 if allv.size else 60.0)
    bins = np.linspace(-lim, lim, 49)
    for name, v in angles.items():
        if len(v):
            ax.hist(v, bins=bins, alpha=0.55, label=f"{name} (n={len(v)})")
    for t in (-threshold, threshold):
        ax.axvline(t, color="#444", ls="--", lw=1)
    ax.set_xlabel("hand axis vs forearm axis (degrees; + towards the thumb)")
    ax.set_ylabel("images")
    ax.set_title(title)
    if angles:
        ax.legend()
    return _save(fig, path)


def scatter(x: Sequence[float], y: Sequence[float], path: Path, title: str, xlabel: str,
            ylabel: str, diagonal: bool = True) -> Path:
    fig = _figure(5, 4.6)
    ax = fig.subplots()
    ax.scatter(x, y, s=12, alpha=0.7, color="#1f77b4")
    if diagonal and len(x):
        lo = float(min(np.min(x), np.min(y)))
        hi = float(max(np.max(x), np.max(y)))
        ax.plot([lo, hi], [lo, hi], color="#999", lw=1, ls="--", label="y = x")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def error_shares(counts: np.ndarray, path: Path, title: str, labels: Sequence[str] = CLASSES) -> Path:
    """Stacked bars per class of the confusion / missed / over-prediction shares (sum to 1)."""
    c = np.asarray(counts, np.float64)
    total = c.sum(1, keepdims=True)
    shares = np.divide(c, total, out=np.zeros_like(c), where=total > 0)
    fig = _figure(13, 4.2)
    ax = fig.subplots()
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    for k, (name, color) in enumerate(ERROR_COLORS.items()):
        ax.bar(x, shares[:, k], bottom=bottom, color=color, label=name)
        bottom += shares[:, k]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=9)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the class's error pixels")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)
