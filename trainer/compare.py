"""Per-class Dice of several runs side by side, with differences to the first run (the
baseline); as rows for a table and as a PNG.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xaug.classes import CLASSES
from xaug.report.plots import save_figure


@dataclass
class Comparison:
    runs: list[str]
    splits: list[str]
    datasets: list[str]
    dice: np.ndarray   # (runs, 29)
    means: np.ndarray  # (runs,)

    def delta(self) -> np.ndarray:
        """Each run minus the first (baseline), per class."""
        return self.dice - self.dice[:1]

    def to_json(self) -> dict:
        return {"runs": [{"run": r, "split": s, "dataset": d, "mean_dice": float(m),
                          "per_class": {c: float(v) for c, v in zip(CLASSES, row)},
                          "delta_mean": float(m - self.means[0])}
                         for r, s, d, m, row in zip(self.runs, self.splits, self.datasets, self.means, self.dice)]}


def compare(evaluations: list[dict], names: list[str]) -> Comparison:
    """Evaluations as written by `evaluate_run` (per_class dicts keyed by class name)."""
    dice = np.array([[ev["per_class"][c] for c in CLASSES] for ev in evaluations], np.float64)
    return Comparison(list(names), [ev.get("split", "?") for ev in evaluations],
                      [ev.get("dataset", "?") for ev in evaluations], dice, dice.mean(axis=1))


def plot_comparison(comp: Comparison, out: Path | str) -> Path:
    """Grouped per-class bars of Dice, and the difference to the first run underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    n = len(comp.runs)
    x = np.arange(len(CLASSES))
    wbar = 0.8 / max(1, n)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(14, 7), dpi=100, sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
    for i, run in enumerate(comp.runs):
        ax1.bar(x + (i - (n - 1) / 2) * wbar, comp.dice[i], wbar, label=f"{run} ({comp.means[i]:.4f})")
        if i:
            ax2.bar(x + (i - (n - 1) / 2) * wbar, comp.delta()[i], wbar, color=f"C{i}")
    lo = float(np.nanmin(comp.dice)) if comp.dice.size else 0.0
    ax1.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax1.set_ylabel("Dice")
    ax1.legend(loc="lower left", fontsize=8)
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel(f"minus {comp.runs[0]}")
    ax2.set_xticks(x, CLASSES, rotation=70, fontsize=8)
    fig.suptitle("per-class Dice (" + ", ".join(sorted(set(comp.splits))) + ")")
    fig.tight_layout()
    save_figure(fig, out)
    plt.close(fig)
    return out
