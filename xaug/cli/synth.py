"""`xaug synth`: generate the synthetic hand X-ray dataset into the store."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xaug.cli.common import (BackendOption, HomeOption, JobsOption, QuietOption, SchedulerOption, StorageOption,
                             backend_choice, console, open_store, out)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_cmd)


def synth_cmd(
    persons: int = typer.Option(..., "--persons", help="Training persons (two images each: right and left hand)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives a byte-identical dataset."),
    name: str = typer.Option("raw", "--name", help="Dataset name; versions are <name>_v<N>."),
    size: int = typer.Option(2048, "--size", help="Image side in pixels (the real data: 2048)."),
    rotated_train: float = typer.Option(0.12, "--rotated-train", help="Fraction of training images with a rotated wrist."),
    rotated_test: float = typer.Option(0.6, "--rotated-test", help="Fraction of test images with a rotated wrist."),
    test_persons: Optional[int] = typer.Option(None, "--test-persons",
                                               help="Test persons (default: 150/400 of --persons, as in the real data)."),
    label_swaps: int = typer.Option(0, "--label-swaps", help="Training persons whose annotations have one "
                                    "pair of neighbouring labels swapped (both hands), as on a few real IDs; "
                                    "recorded in item meta as edge case label_swap."),
    appearance: str = typer.Option("realistic", "--appearance",
                                   help="realistic (the default: near-black background, soft-tissue "
                                   "silhouette, wider bones; each image drawn from narrow ranges around real "
                                   "X-ray statistics), randomised (wide ranges: domain randomisation) or "
                                   "legacy (the earlier look; reproduces earlier datasets and their ids)."),
    look: list[str] = typer.Option([], "--look", metavar="NAME=LOW,HIGH",
                                   help="Override one appearance range, e.g. --look tissue_range=40,70 or "
                                   "--look vignette_range=0 (repeatable; names in docs/synthetic.md)."),
    jobs: Optional[int] = JobsOption,
    backend: Optional[str] = BackendOption,
    scheduler: Optional[str] = SchedulerOption,
    storage: Optional[str] = StorageOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Synthesize hand X-rays with exact labels (train and test) and register them in the store."""
    from xaug.synth.generate import synth_spec, synthesize

    overrides = parse_look(look)
    synth_spec(persons, seed, size, rotated_train, rotated_test, test_persons, label_swaps,
               appearance, overrides)  # fail before any work
    choice = backend_choice(backend, scheduler, storage)
    store = open_store(home)
    _check_space(store, persons, test_persons, size)
    ds = synthesize(store, name, persons=persons, seed=seed, size=size, rotated_train=rotated_train,
                    rotated_test=rotated_test, test_persons=test_persons, jobs=jobs, progress=not quiet, backend=choice,
                    label_swaps=label_swaps, appearance=appearance, look=overrides)
    if ds.base != name:
        console.print(f"note: this spec was already synthesized as {ds.name}; reusing it (no version "
                      f"named {name!r} was added)", markup=False)
    n_train = sum(1 for e in ds.entries if e.split == "train")
    n_test = len(ds.entries) - n_train
    rotated = {s: sum(1 for e in ds.entries if e.split == s and e.meta.get("wrist_rotated")) for s in ("train", "test")}
    out.print(f"{ds.name} ({ds.id[:12]}): {n_train} train images ({rotated['train']} rotated wrists), "
              f"{n_test} test images ({rotated['test']} rotated), {size}x{size}, seed {seed}"
              + (f"; labels swapped on {label_swaps} training person(s)" if label_swaps else "")
              + f"; appearance {appearance}")


def parse_look(items: list[str]) -> dict[str, tuple[float, float]]:
    """`NAME=LOW,HIGH` (or `NAME=VALUE` for a fixed value) -> {name: (low, high)}."""
    from xaug.errors import BadInput

    out: dict[str, tuple[float, float]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            parts = [float(v) for v in value.split(",")] if sep else []
        except ValueError:
            parts = []
        if not name.strip() or len(parts) not in (1, 2):
            raise BadInput(f"--look {item!r}: expected NAME=LOW,HIGH or NAME=VALUE, e.g. tissue_range=40,70",
                           where="synth")
        out[name.strip()] = (parts[0], parts[-1])
    return out


def _check_space(store, persons: int, test_persons: Optional[int], size: int) -> None:
    """Refuse, before rendering, a dataset the store's disk cannot hold (about 0.8 byte per pixel of
    PNG, measured on 2048 px images, plus the label JSON)."""
    from xaug.synth.generate import default_test_persons

    tests = default_test_persons(persons) if test_persons is None else test_persons
    images = 2 * (persons + tests)
    store.ensure_space(int(images * (0.8 * size * size + 60_000)), f"{images:,} synthetic images",
                       "free space, or lower --persons or --size")
