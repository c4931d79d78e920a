"""`xaug ablate SPEC.yaml`: baseline vs candidates over seeds, equal steps, paired bootstrap intervals.

The command reads and validates the spec (`xaug schema ablate`), then calls `trainer.ablate`:
builds missing versions through the pipeline engine, trains and evaluates every (arm, seed) with
the functions `xaug train` / `xaug evaluate` use, and writes ablate.json, ablate.csv and an HTML
page with PNG plots. Running it again reuses every finished run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xaug.cli.common import (HomeOption, JobsOption, QuietOption, console, count, open_store, out, print_json,
                             print_table)


def register(app: typer.Typer) -> None:
    app.command("ablate")(ablate_cmd)


def ablate_cmd(
    spec_file: Path = typer.Argument(..., metavar="SPEC", help="Ablation spec YAML, e.g. pipelines/ablate-demo.yaml.",
                                     show_default=False),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: ablations/<name>)."),
    runs: Path = typer.Option(Path("runs/ablate"), "--runs",
                              help="Run folders, named by arm, seed and config hash (shared between ablations)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1,
                                        help="Use only the spec's first N seeds (finished runs are reused)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override train.steps (other runs: other hashes)."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes (GPUs) per training run, as `xaug train "
                              "--nproc` (DistributedDataParallel under torchrun; train.batch is per process)."),
    check: bool = typer.Option(False, "--check", help="Only validate the spec and every arm's trainer settings; build and train nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print ablate.json to stdout (progress stays on stderr)."),
    jobs: Optional[int] = JobsOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Does an augmentation help? Train baseline and candidates over seeds with equal steps and report
    the paired difference with a bootstrap interval, per subset (rotated wrist, edge cases) and class.

    Example: xaug ablate pipelines/ablate-demo.yaml --device cpu
    """
    from trainer.ablate import load_ablation

    spec = load_ablation(spec_file)
    if seeds is not None:
        listed = spec.seed_list()
        if seeds > len(listed):  # used to run the spec's seeds alone, saying nothing
            from xaug.errors import BadInput

            raise BadInput(f"the spec has only {count(len(listed), 'seed')} ({spec_file}); give --seeds "
                           f"{len(listed)} or fewer, or more seeds in the spec", where=f"--seeds {seeds}")
        spec = spec.model_copy(update={"seeds": listed[:seeds]})
    if steps is not None:
        spec = spec.model_copy(update={"train": spec.train.model_copy(update={"steps": steps})})
    if check:
        from trainer.ablate import check_training

        check_training(spec, nproc)
        arms = ", ".join(a.name for a in spec.arms)
        out.print(f"{spec_file}: valid; arms {arms}; seeds {spec.seed_list()}; {len(spec.arms) * len(spec.seed_list())} "
                  f"runs of {spec.train.steps} steps", markup=False)
        return
    from trainer.ablate import run_ablation

    log = (lambda text: None) if quiet else (lambda text: console.print(text, markup=False))
    result = run_ablation(open_store(home), spec, out=out_dir or Path("ablations") / spec.name, runs_dir=runs,
                          device=device, jobs=jobs, progress=not quiet, log=log, base_dir=spec_file.parent,
                          nproc=nproc)
    if json_out:
        print_json({**result.report, "json": str(result.json_path), "csv": str(result.csv_path),
                    "html": str(result.html_path)})
        return
    print_tables(result.report)
    out.print(f"written {result.json_path}, {result.csv_path} and {result.html_path} "
              f"({len(result.pngs)} plots)", markup=False)


def print_tables(report: dict) -> None:
    """Per split, one row per (subset, arm): mean ± sd over seeds; for candidates the paired
    difference to the baseline and its interval, never cut to the console's width."""
    from rich import box
    from rich.table import Table

    base, cands = report["baseline"], report["candidates"]
    level = int(round(100 * report["bootstrap"]["confidence"]))
    seeds = len(report["seeds"])
    for split, sd in report["splits"].items():
        table = Table(title=f"{report['name']}: {split} split", box=box.SIMPLE_HEAD, title_justify="left",
                      pad_edge=False, collapse_padding=True,
                      caption=f"Dice: mean over {seeds} seeds, sd over seeds; diff: minus {base}, paired by image "
                              f"and seed, with a {level}% bootstrap interval over images. * the interval excludes 0; "
                              "** so does the interval over seeds and images (ablate.json, ablate.csv)",
                      caption_justify="left")
        for col, justify in (("subset", "left"), ("n", "right"), ("arm", "left"), ("Dice", "right"),
                             ("sd", "right"), ("diff", "right"), (f"{level}% interval", "right"), ("", "left")):
            table.add_column(col, justify=justify, no_wrap=True)
        for subset, e in sd["subsets"].items():
            for i, a in enumerate([base, *cands]):
                arm = e["arms"][a]
                cells = [subset if i == 0 else "", str(e["images"]) if i == 0 else "", a,
                         f"{arm['mean']:.4f}", f"{arm['std']:.4f}"]
                d = e["differences"].get(a)
                if d is None:
                    cells += ["", "", ""]
                else:
                    mark = ("**" if d["excludes_zero_seeds"] else "*") if d["excludes_zero"] else ""
                    cells += [f"{d['diff']:+.4f}", f"[{d['low']:+.4f}, {d['high']:+.4f}]", mark]
                table.add_row(*cells, end_section=i == len(cands))
        print_table(table)
    steps = {a["steps"] for a in report["arms"].values()}
    per_arm = (f"{k} {a['steps']} ({count(a['epochs'], 'epoch')} x {count(a['train_images'], 'image')})"
               for k, a in report["arms"].items())
    out.print("steps per run: " + ", ".join(per_arm)
              + ("" if len(steps) == 1 else " (not exactly equal: whole epochs)"), markup=False)
