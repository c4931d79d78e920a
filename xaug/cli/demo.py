"""`xaug demo`: the whole loop on the synthetic default, small enough for a 2-core CPU.

synthesise -> derive wrist rotations and mosaics -> train a baseline and an augmented run ->
evaluate both on the rotated-heavy synthetic test split -> compare. Every step is cached: a
second call reuses the versions and finished runs and only prints the comparison again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xaug.cli.common import HomeOption, JobsOption, QuietOption, console, count, open_store, out, print_table


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_cmd)


def demo_cmd(
    persons: int = typer.Option(32, "--persons", min=4, help="Synthetic train persons (2 hands each)."),
    test_persons: int = typer.Option(12, "--test-persons", min=1, help="Synthetic test persons."),
    size: int = typer.Option(512, "--size", min=128, help="Synthetic image side (the real data: 2048)."),
    train_size: int = typer.Option(128, "--train-size", min=64, help="Training input side (a multiple of 16)."),
    epochs: int = typer.Option(100, "--epochs", min=1,
                               help="Baseline epochs; augmented runs get the same number of steps."),
    width: int = typer.Option(16, "--width", min=4, help="Model width (--width of xaug train)."),
    lr: float = typer.Option(1e-2, "--lr", help="AdamW peak learning rate (high: the demo trains few steps)."),
    mosaic_run: bool = typer.Option(False, "--mosaic-run", help="Also train and compare a mosaic run."),
    runs: Path = typer.Option(Path("runs"), "--runs", help="Folder for the run folders."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    jobs: Optional[int] = JobsOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Run the demo: synthetic data, wrist-rotation and mosaic versions, two short trainings, comparison."""
    from xaug.pipeline import parse_pipeline, run_pipeline
    from xaug.synth.generate import synthesize

    store = open_store(home)
    step = _Steps()
    step("synthesising the default hand X-ray set")
    raw = synthesize(store, name="demo", persons=persons, seed=seed, size=size, test_persons=test_persons,
                     jobs=jobs, progress=not quiet)
    test = raw.samples(split="test", load=False)
    rotated = sum(1 for s in test if s.meta.get("wrist_rotated"))
    out.print(f"  {raw.name} ({raw.id[:12]}): {len(raw.entries) - len(test)} train, {len(test)} test images "
              f"({rotated} with rotated wrists)")

    derived = {}
    for key, steps in (
        ("rotate", [{"op": "rotate", "pivot": "wrist", "angles": [-45, -35, -25, 25, 35, 45], "per_image": 1}]),
        ("mosaic", [{"op": "mosaic", "grid": "2x2", "n": persons * 2, "beta": 0.3}]),
    ):
        step(f"deriving the {key} version from {raw.name} (train persons only)")
        spec = parse_pipeline({"name": f"demo_{key}", "source": raw.id, "split": "train", "seed": seed,
                               "include_source": True, "steps": steps}, where=f"demo {key}")
        result = run_pipeline(store, spec, jobs=jobs, progress=not quiet)
        derived[key] = result.dataset
        out.print(f"  {result.summary()}")

    from trainer.compare import compare, plot_comparison
    from trainer.data import OnlineAug
    from trainer.runs import evaluate_run, train_version

    plan = [("baseline", raw)] + [("rotate", derived["rotate"])] + ([("mosaic", derived["mosaic"])] if mosaic_run else [])
    evaluations = []
    from trainer.runs import training_samples

    base_images = len(training_samples(raw))
    for run_name, ds in plan:
        # same number of optimiser steps for every run: a bigger version gets fewer epochs
        run_epochs = max(1, round(epochs * base_images / max(1, len(training_samples(ds)))))
        run_dir = runs / f"demo-{run_name}"
        run_ref = str(run_dir) if "/" in str(run_dir) else f"./{run_dir}"  # a path, not a run name
        step(f"training {run_name} on {ds.name} ({run_epochs} epochs at {train_size}px) -> {run_dir}")
        train_version(store, ds.name, run=run_ref,
                      resume=(run_dir / "last.pt").exists(), device=device, epochs=run_epochs, size=train_size,
                      batch=8, width=width, depth=4, lr=lr, aug=OnlineAug(hflip=0.0), seed=seed,
                      val_every=run_epochs, progress=not quiet)
        step(f"evaluating {run_name} on the test split of {raw.name}")
        ev = evaluate_run(store, run_ref, dataset=raw.name,
                          split="test", device=device, progress=not quiet)
        evaluations.append(ev)

    import json

    data = [json.loads(ev.json_path.read_text()) for ev in evaluations]
    names = [name for name, _ in plan]
    comp = compare(data, names)
    png = plot_comparison(comp, runs / "demo-comparison.png")
    _print_comparison(data, names)
    out.print(f"per-class comparison plot: {png}")
    out.print("next: `xaug eda demo --out reports/eda`, "
              f"`xaug errors --run {runs / 'demo-rotate'} --dataset demo --out reports/errors`")


def _print_comparison(data: list[dict], names: list[str]) -> None:
    from rich.table import Table

    from xaug.classes import HARDEST

    table = Table(title="test split: mean Dice (competition convention, original resolution)")
    table.add_column("subset")
    for name in names:
        table.add_column(name, justify="right")
    if len(names) > 1:
        for name in names[1:]:
            table.add_column(f"{name} - {names[0]}", justify="right")

    def row(label, values):
        cells = [f"{v:.4f}" if v is not None else "-" for v in values]
        if len(values) > 1 and None not in values:
            cells += [f"{v - values[0]:+.4f}" for v in values[1:]]
        table.add_row(label, *cells)

    row("all test images", [d["mean_dice"] for d in data])
    for key, label in (("wrist_rotated", "rotated wrists"), ("upright", "upright hands")):
        vals = [(d.get("subsets") or {}).get(key, {}).get("mean_dice") for d in data]
        if any(v is not None for v in vals):
            row(f"{label} ({count((data[0].get('subsets') or {}).get(key, {}).get('images', 0), 'image')})", vals)
    for cls in HARDEST:
        row(cls, [d["per_class"][cls] for d in data])
    print_table(table)


class _Steps:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, text: str) -> None:
        self.n += 1
        console.print(f"[bold cyan][{self.n}][/bold cyan] {text}")
