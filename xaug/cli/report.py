"""Report commands: eda, overlay, errors (static HTML folders and PNGs)."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional

import typer

from xaug.cli.common import (BackendOption, HomeOption, JobsOption, QuietOption, SchedulerOption, backend_choice,
                             open_store, out)
from xaug.errors import BadInput
from xaug.outputs import check_output_dir, check_output_file


def register(app: typer.Typer) -> None:
    app.command("eda")(eda_cmd)
    app.command("overlay")(overlay_cmd)
    app.command("errors")(errors_cmd)


def _jobs(jobs: Optional[int]) -> int:
    from xaug.store.work import resolve_jobs  # the one default: the cores this process may use

    return resolve_jobs(jobs)


def eda_cmd(
    name: str = typer.Argument(..., help="Dataset version: name, name_vN or id prefix."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: reports/<version>/eda)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only train or test images (default: both)."),
    gallery: int = typer.Option(12, "--gallery", min=0, help="Ground-truth overlays in the gallery."),
    overlap_size: int = typer.Option(512, "--overlap-size", min=32,
                                     help="Rasterise the overlap matrix at this side (speed)."),
    jobs: Optional[int] = JobsOption,
    backend: Optional[str] = BackendOption,
    scheduler: Optional[str] = SchedulerOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Explore a dataset: counts, class areas, overlaps, metadata, outliers, overlays (index.html)."""
    from xaug.report.eda import write_eda

    if split not in (None, "train", "test"):
        raise BadInput(f"unknown split {split!r}; use train or test", where="--split")
    choice = backend_choice(backend, scheduler, None)
    ds = open_store(home).open(name)
    samples = ds.samples(split=split)
    if not samples:
        raise BadInput("no images to report on" + (f" in split {split}" if split else ""), where=ds.name)
    folder = out_dir or Path("reports") / ds.name / "eda"
    check_output_dir(folder, "--out", ds.store)
    res = write_eda(samples, folder, title=f"EDA of {ds.name}",
                    subtitle=f"{ds.kind} dataset {ds.id[:12]}, {len(samples)} images"
                    + (f" ({split} split)" if split else ""),
                    persons=ds.persons, gallery=gallery, jobs=_jobs(jobs), overlap_side=overlap_size,
                    progress=not quiet, backend=choice)
    o = res.summary["outliers"]
    out.print(f"{res.index}: {len(samples)} images; outliers: " + ", ".join(f"{k} {len(v)}" for k, v in o.items()))


def find_item(samples, item: str):
    """The sample named by `item`: its relpath, file name or stem (unique)."""
    if not item.strip():
        raise BadInput("is empty; give an item's relative path, file name or stem (list them with "
                       "`xaug show NAME --items`)", where="ITEM")
    for key in ("relpath", "name", "stem"):
        hits = [s for s in samples if getattr(s, key) == item]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise BadInput(f"{len(hits)} items match {item!r} ({', '.join(h.relpath for h in hits[:4])}); "
                           "give the full relative path", where=item)
    close = difflib.get_close_matches(item, [s.name for s in samples] + [s.relpath for s in samples], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; list items with `xaug show NAME --items`"
    raise BadInput(f"no item with this relative path, file name or stem{hint}", where=item)


def overlay_cmd(
    name: str = typer.Argument(..., help="Dataset version: name, name_vN or id prefix."),
    item: str = typer.Argument(..., help="Item: relative path, file name or stem."),
    out_file: Path = typer.Option(..., "--out", help="PNG (or JPEG) file to write."),
    max_side: Optional[int] = typer.Option(None, "--max-side", min=16, help="Downscale to this side."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Draw one item's ground truth over its image in the customary colours."""
    from xaug.report.images import check_image_suffix, overlay_image, write_rgb

    check_image_suffix(out_file, "--out")
    store = open_store(home)
    check_output_file(out_file, "--out", store, example="overlay.png")
    ds = store.open(name)
    sample = find_item(ds.samples(load=False), item)
    sample = ds.sample(ds.entry(sample.relpath))  # parse only this item's labels
    if sample.annotations is None:
        out.print(f"note: {sample.relpath} has no labels; writing the image alone")
    write_rgb(out_file, overlay_image(sample, max_side))
    out.print(f"{out_file}: {sample.relpath}")


def errors_cmd(
    run: str = typer.Option(..., "--run", help="Run name (under runs/) or path."),
    dataset: Optional[str] = typer.Option(None, "--dataset",
                                          help="Dataset to score (default: the run's validation dataset)."),
    split: str = typer.Option("val", "--split", help="val (held-out persons) or test."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: <run>/errors_<dataset>_<split>)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N images."),
    boundary_px: int = typer.Option(3, "--boundary-px", min=0, help="'Near a boundary' distance."),
    overlay_size: int = typer.Option(1024, "--overlay-size", min=64, help="Overlay image side."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    tta: Optional[str] = typer.Option(None, "--tta", help="Test-time augmentation: hflip."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader workers."),
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Where a run's predictions fail: confusion (red), missed (yellow), over-prediction (green)."""
    from trainer.inference import check_tta, predict_dataset
    from trainer.runs import eval_samples, labelled, load_run_model, read_run_config, run_path

    from xaug.report.errors import write_error_report

    check_tta(tta)  # --tta bogus left an empty report folder in the run
    run_dir = run_path(run)
    cfg = read_run_config(run_dir)
    store = open_store(home)
    ds, samples = eval_samples(store, cfg, dataset, split)
    samples = labelled(samples[:limit] if limit else samples, f"{ds.name} {split}")
    folder = out_dir or run_dir / f"errors_{ds.name}_{split}"
    check_output_dir(folder, "--out", store)  # before any inference
    # a damaged checkpoint is one line before the report folder is made (in the lazy generator,
    # its EOFError reached click, which printed only "Aborted." and left an empty folder)
    loaded = load_run_model(run_dir, device)
    res = write_error_report(predict_dataset(run_dir, samples, device=device, tta=tta, workers=workers,
                                             loaded=loaded), folder,
                             title=f"Errors of run {run_dir.name} on {ds.name} ({split})",
                             subtitle=f"{len(samples)} images, run {run_dir}", boundary_px=boundary_px,
                             overlay_side=overlay_size, total=len(samples), progress=not quiet)
    sh = res.summary["shares"]
    out.print(f"{res.index}: mean Dice {res.summary['mean_dice']:.4f}; confusion {100 * sh['confusion']:.1f}%, "
              f"missed {100 * sh['missed']:.1f}%, over {100 * sh['over']:.1f}%; "
              f"within {boundary_px} px of a boundary {100 * res.summary['near_boundary']:.1f}%")
