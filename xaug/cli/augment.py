"""`xaug rotate | mosaic | flip | run FILE | schema`: augmentation pipelines from flags or YAML.

Each op command parses its flags, builds the same pipeline spec a YAML file would, and calls
`xaug.pipeline.run_pipeline`; the library does the work, this module only maps flags and output.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from xaug.cli.common import (BackendOption, HomeOption, JobsOption, QuietOption, SchedulerOption, StorageOption,
                             backend_choice, console, open_store, out, print_json)
from xaug.errors import BadInput

FromOption = typer.Option("raw", "--from", help="Source version: a name, name_vN or hash prefix.")
SeedOption = typer.Option(0, "--seed", help="Seed of every random draw; another seed makes another version.")
IncludeOption = typer.Option(False, "--include-source/--no-include-source",
                             help="Also list the source items by reference (no bytes copied).")


class Split(str, Enum):
    train = "train"
    test = "test"


SplitOption = typer.Option(Split.train, "--split", help="Split to read (train: non-validation persons).")


class Pivot(str, Enum):
    image = "image"
    wrist = "wrist"


def parse_angles(text: str) -> dict[str, Any]:
    """'-30:30' -> {'angle_range': (-30, 30)}; '-30,-15,15,30' or '20' -> {'angles': '...'} (the
    spec reads the list). Ranges go through the ops' one range parser."""
    from xaug.ops.base import parse_range

    text = text.strip()
    if ":" in text:
        try:
            lo, hi = parse_range(text)
        except ValueError as exc:
            raise BadInput(f"{exc} or a list such as -30,-15,15,30", where="--angles") from None
        if lo > hi:
            a, b = (x.strip() for x in text.split(":"))
            raise BadInput(f"range {text!r} runs backwards; write the low end first, e.g. {b}:{a}", where="--angles")
        return {"angle_range": (lo, hi)}
    return {"angles": text}


def _spec_from_flags(*, name: str, source: str, split: Split, seed: int, include_source: bool,
                     step: dict[str, Any], flags: dict[str, str]):
    """The pipeline spec the flags describe; problems name the flag, not the spec key."""
    from xaug.pipeline import parse_pipeline

    data = {"name": name, "source": source, "split": split.value, "seed": seed,
            "include_source": include_source, "steps": [step]}
    try:
        return parse_pipeline(data, where="options")
    except BadInput as exc:
        lines = [_flag_line(p, flags) for p in exc.problems] or [exc.message]
        raise BadInput(lines[0], problems=lines[1:]) from None


def _flag_line(problem: str, flags: dict[str, str]) -> str:
    key, _, msg = problem.partition(": ")
    parts = key.split(".")
    if parts[:1] == ["steps"] and len(parts) >= 3:
        field = parts[2]
    else:
        field = parts[0]
    flag = flags.get(field)
    return f"{flag}: {msg}" if flag else problem


def _given(step: dict[str, Any]) -> dict[str, Any]:
    """The flags the user gave: an op's defaults live in its spec only (the `[default: ...]` in
    the help is checked against the spec by tests/test_cli_augment.py)."""
    return {k: v for k, v in step.items() if v is not None}


_COMMON_FLAGS = {"name": "--name", "source": "--from", "split": "--split", "seed": "--seed"}


def _run(home: Optional[Path], spec, jobs: Optional[int], quiet: bool, backend=None) -> None:
    from xaug.pipeline import run_pipeline

    # run_pipeline refuses, before planning, what the disk or memory cannot hold
    result = run_pipeline(open_store(home), spec, jobs=jobs, progress=not quiet, backend=backend)
    out.print(result.summary(), markup=False)
    if not result.cached:
        from xaug.ops.rotate import default_pivot_items

        entries = result.dataset.entries
        lacking = default_pivot_items(entries)
        if lacking:  # said once, not per image: the labels of these hands lack the wrist's bones
            console.print(f"note: {len(lacking)} of {len(entries)} images (e.g. {lacking[0]}) come from labels "
                          "with no Radius/Ulna or no carpal polygons; their hands turned about the default wrist "
                          "(W/2, 0.72 H) and their provenance says wrist.estimated: false", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("rotate")
    def rotate(
        angles: Optional[str] = typer.Option(None, "--angles", show_default=False,
                                             help="Degrees: a range lo:hi drawn uniformly, or a list "
                                             "-30,-15,15,30 drawn from (counter-clockwise positive). "
                                             "(default: -30:30)"),
        per_image: Optional[int] = typer.Option(None, "--per-image", "-k", show_default=False,
                                                help="Rotated copies of each source image. (default: 1)"),
        pivot: Optional[Pivot] = typer.Option(None, "--pivot", show_default=False,
                                              help="image: turn the whole image about its centre; wrist: "
                                              "turn the hand about the wrist, forearm kept. (default: image)"),
        source: str = FromOption,
        split: Split = SplitOption,
        seed: int = SeedOption,
        jobs: Optional[int] = JobsOption,
        backend: Optional[str] = BackendOption,
        scheduler: Optional[str] = SchedulerOption,
        storage: Optional[str] = StorageOption,
        name: str = typer.Option("rotate", "--name", help="Name of the new version."),
        include_source: bool = IncludeOption,
        quiet: bool = QuietOption,
        home: Optional[Path] = HomeOption,
    ) -> None:
        """Rotated copies of each image with exactly transformed polygons.

        Example: xaug rotate --angles -45:-20 --pivot wrist --per-image 2 --seed 1
        """
        step = _given({"op": "rotate", **(parse_angles(angles) if angles is not None else {}),
                       "per_image": per_image, "pivot": pivot.value if pivot else None})
        flags = {**_COMMON_FLAGS, "angle_range": "--angles", "angles": "--angles",
                 "per_image": "--per-image", "pivot": "--pivot"}
        spec = _spec_from_flags(name=name, source=source, split=split, seed=seed,
                                include_source=include_source, step=step, flags=flags)
        _run(home, spec, jobs, quiet, backend_choice(backend, scheduler, storage))

    @app.command("mosaic")
    def mosaic(
        grid: Optional[str] = typer.Option(None, "--grid", show_default=False,
                                           help="rows x columns of cells, e.g. 2x2 or 1x3. (default: 2x2)"),
        n: Optional[int] = typer.Option(None, "--n", show_default=False,
                                        help="Number of mosaic images to make. (default: 800)"),
        beta: Optional[float] = typer.Option(None, "--beta", show_default=False,
                                             help="Cell boundaries ~ Beta(beta, beta) (RICAP). (default: 0.3)"),
        source: str = FromOption,
        split: Split = SplitOption,
        seed: int = SeedOption,
        jobs: Optional[int] = JobsOption,
        backend: Optional[str] = BackendOption,
        scheduler: Optional[str] = SchedulerOption,
        storage: Optional[str] = StorageOption,
        name: str = typer.Option("mosaic", "--name", help="Name of the new version."),
        include_source: bool = IncludeOption,
        quiet: bool = QuietOption,
        home: Optional[Path] = HomeOption,
    ) -> None:
        """RICAP-style mosaics: each cell a full-resolution crop of a different source image.

        Example: xaug mosaic --grid 2x2 --n 800 --beta 0.3 --seed 0
        """
        step = _given({"op": "mosaic", "grid": grid, "n": n, "beta": beta})  # the spec parses "2x2"
        flags = {**_COMMON_FLAGS, "grid": "--grid", "n": "--n", "beta": "--beta"}
        spec = _spec_from_flags(name=name, source=source, split=split, seed=seed,
                                include_source=include_source, step=step, flags=flags)
        _run(home, spec, jobs, quiet, backend_choice(backend, scheduler, storage))

    @app.command("flip")
    def flip(
        source: str = FromOption,
        split: Split = SplitOption,
        seed: int = SeedOption,
        jobs: Optional[int] = JobsOption,
        backend: Optional[str] = BackendOption,
        scheduler: Optional[str] = SchedulerOption,
        storage: Optional[str] = StorageOption,
        name: str = typer.Option("flip", "--name", help="Name of the new version."),
        include_source: bool = IncludeOption,
        quiet: bool = QuietOption,
        home: Optional[Path] = HomeOption,
    ) -> None:
        """Horizontally mirrored copies (a left hand becomes a right hand), polygons mirrored exactly.

        Example: xaug flip --include-source
        """
        step = {"op": "flip"}
        spec = _spec_from_flags(name=name, source=source, split=split, seed=seed,
                                include_source=include_source, step=step, flags=dict(_COMMON_FLAGS))
        _run(home, spec, jobs, quiet, backend_choice(backend, scheduler, storage))

    @app.command("run")
    def run(
        file: Path = typer.Argument(..., help="Pipeline YAML, e.g. pipelines/rotate.yaml.",
                                    show_default=False),
        jobs: Optional[int] = JobsOption,
        backend: Optional[str] = BackendOption,
        scheduler: Optional[str] = SchedulerOption,
        storage: Optional[str] = StorageOption,
        seed: Optional[int] = typer.Option(None, "--seed", help="Override the file's seed."),
        check: bool = typer.Option(False, "--check", help="Only validate the file and plan it; write nothing."),
        quiet: bool = QuietOption,
        home: Optional[Path] = HomeOption,
    ) -> None:
        """Run a pipeline file: every step's outputs (and the source by reference) in one version.

        Example: xaug run pipelines/combined.yaml --jobs 2
        """
        from xaug.pipeline import load_pipeline, parse_pipeline, resolved_spec

        spec = load_pipeline(file)
        if seed is not None:  # re-validated like the rest of the spec
            spec = parse_pipeline({**resolved_spec(spec), "seed": seed}, where="--seed")
        if check:
            _check(home, spec, file)
            return
        _run(home, spec, jobs, quiet, backend_choice(backend, scheduler, storage))

    @app.command("schema")
    def schema(
        kind: str = typer.Argument("pipeline", help=f"Which spec: {', '.join(SCHEMAS)}."),
    ) -> None:
        """Print the JSON schema of pipeline files, or of ablation specs (`xaug schema ablate`)."""
        if kind not in SCHEMAS:
            raise BadInput(f"unknown spec kind {kind!r}; known: {', '.join(SCHEMAS)}", where="xaug schema")
        module, func = SCHEMAS[kind].split(":")
        import importlib

        print_json(getattr(importlib.import_module(module), func)())


# Spec kinds `xaug schema KIND` prints: the function that returns each JSON schema.
SCHEMAS = {"pipeline": "xaug.pipeline:pipeline_schema", "ablate": "trainer.ablate:ablation_schema"}


def _check(home: Optional[Path], spec, file: Path) -> None:
    from xaug.pipeline import check_output_space, make_plan

    store = open_store(home)
    check_output_space(store, spec)  # --check says before planning what the run would refuse
    plan = make_plan(store, spec)
    existing = store.find_plan(plan.key)
    made = f"already made as {existing.name}" if existing else "not made yet"
    out.print(f"{file}: valid; {len(plan.tasks)} new items + {len(plan.references)} by reference "
              f"from {plan.source.name}; plan {plan.key[:12]} {made}", markup=False)
