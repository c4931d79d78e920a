"""Store commands: import, datasets, show, verify, export, diff."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xaug.cli.common import (BackendOption, HomeOption, JobsOption, QuietOption, SchedulerOption, StorageOption,
                             backend_choice, console, open_store, out, print_json, print_table)


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("datasets")(datasets_cmd)
    app.command("show")(show_cmd)
    app.command("verify")(verify_cmd)
    app.command("export")(export_cmd)
    app.command("diff")(diff_cmd)


def import_cmd(
    path: Path = typer.Argument(..., help="Root of a competition-layout folder (train/DCM, train/outputs_json, ...), "
                                "or of COCO images with --format coco."),
    name: str = typer.Option("raw", "--name", help="Dataset name; versions are <name>_v<N>."),
    fmt: str = typer.Option("competition", "--format", help="Input format: competition or coco."),
    coco_json: Optional[list[Path]] = typer.Option(None, "--coco-json", help="COCO instances file (repeatable; "
                                                   "default: every PATH/annotations/*.json). Only with --format coco."),
    label_map: Optional[Path] = typer.Option(None, "--label-map", help="YAML mapping of COCO category names to "
                                             "the 29 classes. Only with --format coco."),
    rle_tolerance: float = typer.Option(0.5, "--rle-tolerance", help="Pixels a polygon traced from an RLE mask "
                                        "may stray from the mask's outline. Only with --format coco."),
    lenient: bool = typer.Option(False, "--lenient", help="Skip bad annotations (recorded in the manifest) instead of failing."),
    folds: int = typer.Option(5, "--folds", min=1, help="k of the person-grouped k-fold split."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the k-fold split."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings (image sizes that differ from the "
                                "rest or from their label's metadata) as errors."),
    rehash: bool = typer.Option(False, "--rehash", help="Read and hash every file again, ignoring the "
                                "cache (which trusts files whose size, mtime and inode are unchanged)."),
    jobs: Optional[int] = JobsOption,
    backend: Optional[str] = BackendOption,
    scheduler: Optional[str] = SchedulerOption,
    storage: Optional[str] = StorageOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Register a competition-layout folder (or COCO files) in the store (unchanged content: no-op).

    Reading, hashing and checking the files runs on --backend (local threads, or the workers of
    a dask cluster, which must see PATH at the same path); the version is the same either way.
    """
    store = open_store(home)
    if fmt not in ("competition", "coco"):
        raise typer.BadParameter(f"must be competition or coco, not {fmt!r}", param_hint="'--format'")
    if fmt == "coco":
        for flag, given in (("--strict", strict), ("--rehash", rehash), ("--jobs", jobs), ("--backend", backend),
                            ("--scheduler", scheduler), ("--storage", storage)):
            if given:
                raise typer.BadParameter("only with --format competition", param_hint=f"'{flag}'")
        _import_coco(store, path, name, coco_json, label_map, lenient, rle_tolerance, folds, split_seed,
                     quiet)
        return
    for flag, given in (("--coco-json", coco_json), ("--label-map", label_map)):
        if given:
            raise typer.BadParameter("only with --format coco", param_hint=f"'{flag}'")
    choice = backend_choice(backend, scheduler, storage)
    ds, created, stats = store.import_folder(
        path, name=name, lenient=lenient, folds=folds, split_seed=split_seed, progress=not quiet,
        strict=strict, rehash=rehash, on_warning=lambda w: console.print(f"warning: {w}", markup=False),
        jobs=jobs, backend=choice)
    what = "registered" if created else "unchanged, already"
    out.print(f"{ds.name} ({ds.id[:12]}) {what}: {len(ds.items)} items; "
              f"hashed {stats['hashed']} files, {stats['reused']} unchanged")
    skipped = ds.manifest.get("skipped") or []
    if skipped:
        console.print(f"skipped {len(skipped)} bad annotation(s), listed in the manifest", markup=False)


def datasets_cmd(json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
                 home: Optional[Path] = HomeOption) -> None:
    """List every dataset version in the store (a damaged one is named on stderr, not listed)."""
    problems: list[str] = []
    rows = [ds.summary() for ds in open_store(home).datasets(problems)]
    for line in problems:
        console.print(f"warning: {line}", markup=False)
    if json_out:
        print_json(rows)
        return
    if not rows:
        out.print("no datasets yet; create one with `xaug synth` or `xaug import PATH`")
        return
    from rich.table import Table

    table = Table("name", "id", "kind", "items", "persons", "source", "created")
    for r in rows:
        src = (r["source"] or {}).get("id", "")[:12]
        table.add_row(r["name"], r["id"][:12], r["kind"], str(r["items"]), str(r["persons"]), src,
                      r["created"] or "")
    print_table(table)


def show_cmd(name: str = typer.Argument(..., help="Dataset: name, name_vN or id prefix."),
             items: bool = typer.Option(False, "--items", help="List every item with its provenance."),
             json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
             home: Optional[Path] = HomeOption) -> None:
    """Show one dataset version: lineage, spec, seed, split, and optionally its items."""
    store = open_store(home)
    ds = store.open(name)
    info = ds.summary()
    info["lineage"] = [f"{d.name} ({d.id[:12]}, {d.kind})" for d in store.lineage(ds)]
    info["spec"] = ds.manifest.get("spec")
    split = ds.split_info
    if split:
        info["split"] = {k: v for k, v in split.items() if k != "folds"}
    info["environment"] = ds.manifest.get("info", {}).get("environment")
    if ds.manifest.get("skipped"):
        info["skipped"] = ds.manifest["skipped"]
    if items:
        info["items_list"] = [
            {"image": e.relpath, "label": e.label.path if e.label else None,
             "sha256": e.image.sha256, "size": e.image.size, "person": e.person,
             "side": e.side, "split": e.split, "fold": e.fold,
             "stored_in": e.stored_in, "provenance": dict(e.provenance), "meta": dict(e.meta)}
            for e in ds.entries]
    if json_out:
        print_json(info)
        return
    for key in ("name", "id", "kind", "items", "own_items", "referenced_items", "splits", "persons",
                "seed", "created"):
        out.print(f"[bold]{key}[/bold]: {info[key]}")
    out.print(f"[bold]lineage[/bold]: {' <- '.join(info['lineage'])}")
    out.print(f"[bold]spec[/bold]: {info['spec']}")
    if split:
        out.print(f"[bold]split[/bold]: {info['split']}")
    if items:
        for e in ds.entries:
            src = f" <- {e.provenance.get('source')}" if e.provenance.get("source") else ""
            ref = f" [ref {e.stored_in[:8]}]" if e.stored_in else ""
            out.print(f"  {e.relpath} {e.person} {e.split} fold={e.fold}{ref}{src}", markup=False)


def verify_cmd(name: str = typer.Argument(..., help="Dataset: name, name_vN or id prefix."),
               json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
               home: Optional[Path] = HomeOption) -> None:
    """Re-hash every file of a version; name each missing, changed or extra file (exit 1 if any)."""
    store = open_store(home)
    ds = store.open(name, check_id=False)  # verify reports a manifest that does not match its id
    problems = store.verify(name)
    if json_out:
        print_json({"name": ds.name, "id": ds.id, "ok": not problems, "problems": problems})
    else:
        for p in problems:
            out.print(p, markup=False)
        out.print(f"{ds.name}: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    if problems:
        raise typer.Exit(1)


def export_cmd(name: str = typer.Argument(..., help="Dataset: name, name_vN or id prefix."),
               dest: Path = typer.Argument(..., help="New (or empty) folder to write."),
               fmt: str = typer.Option("competition", "--format",
                                       help="competition (the plain layout), coco, yolo-seg or masks."),
               split: Optional[list[str]] = typer.Option(None, "--split", help="Only this split: train, val "
                                                         "(the validation fold) or test; repeatable. Default: all."),
               force: bool = typer.Option(False, "--force", help="Replace a folder that is not empty."),
               json_out: bool = typer.Option(False, "--json", help="Print a machine-readable summary."),
               quiet: bool = QuietOption,
               home: Optional[Path] = HomeOption) -> None:
    """Write a version as a competition layout, COCO, YOLO-seg or mask rasters (atomically).

    Example: xaug export mosaic_v1 ./mosaic-coco --format coco
    """
    import time

    store = open_store(home)
    if fmt == "competition" and not split and not force:  # the store's own export, unchanged
        t0 = time.monotonic()
        ds, n = store.export(name, dest, progress=not quiet and not json_out)
        summary = {"dataset": ds.name, "id": ds.id, "format": fmt, "dest": str(dest), "splits": None,
                   "images": len(ds.items), "files": n, "seconds": round(time.monotonic() - t0, 3)}
    else:
        import xaug
        from xaug.interop.export import export, format_names

        if fmt not in format_names():
            raise typer.BadParameter(f"must be one of {', '.join(format_names())}, not {fmt!r}",
                                     param_hint="'--format'")
        result = export(xaug.open(name, home=store.home), dest, format=fmt, split=split, force=force,
                        progress=not quiet and not json_out)
        summary = result.to_json()
    if json_out:
        print_json(summary)
        return
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.items()
                       if k in ("images", "files", "annotations", "polygons", "mask_files"))
    splits = f" [{', '.join(f'{k} {v}' for k, v in summary['splits'].items())}]" if summary.get("splits") else ""
    out.print(f"exported {summary['dataset']} ({summary['id'][:12]}) as {fmt}: {counts}{splits} to {dest}",
              markup=False)


def _import_coco(store, path, name, coco_json, label_map, lenient, tolerance, folds, split_seed, quiet) -> None:
    from xaug.interop.coco_import import import_coco

    ds, created, report = import_coco(store, path, coco_json, name=name, label_map=label_map, lenient=lenient,
                                      tolerance=tolerance, folds=folds, split_seed=split_seed,
                                      progress=not quiet)
    what = "registered" if created else "unchanged, already"
    out.print(f"{ds.name} ({ds.id[:12]}) {what}: {len(ds.items)} items, {report['polygons']} polygons "
              f"({report['exact_polygons']} exact, {report['converted_polygons']} converted, "
              f"{report['rle_annotations']} RLE annotations traced)", markup=False)
    if report.get("dropped_polygons"):
        console.print(f"dropped {report['dropped_polygons']} polygon(s) of fewer than 3 distinct points "
                      "(counted in each item's meta.coco)", markup=False)
    if report["skipped_categories"]:
        skipped = ", ".join(f"{k} ({v})" for k, v in report["skipped_categories"].items())
        console.print(f"skipped {report['skipped_annotations']} annotation(s) of unknown categories: {skipped} "
                      "(recorded in the version's spec)", markup=False)


def diff_cmd(a: str = typer.Argument(..., help="First version: name, name_vN or id prefix."),
             b: str = typer.Argument(..., help="Second version."),
             json_out: bool = typer.Option(False, "--json", help="Machine-readable output (every path)."),
             limit: int = typer.Option(20, "--limit", min=0, help="Paths listed per category (0: all)."),
             home_b: Optional[Path] = typer.Option(None, "--home-b", help="Store of B, when it is another one "
                                                   "(e.g. after an export and import elsewhere)."),
             home: Optional[Path] = HomeOption) -> None:
    """Items added, removed, changed (same path, other bytes) and unchanged from A to B, and the
    lineage that links them.

    Example: xaug diff raw_v1 rotate_v1
    """
    import xaug
    from xaug.interop.diff import diff_versions

    store = open_store(home)
    d = diff_versions(xaug.open(a, home=store.home), xaug.open(b, home=home_b or store.home))
    if json_out:
        print_json(d.to_json())
        return

    def listing(title: str, paths: list[str], mark: str) -> None:
        if not paths:
            return
        out.print(f"{title}:", markup=False)
        shown = paths if limit == 0 else paths[:limit]
        for p in shown:
            out.print(f"  {mark} {p}", markup=False)
        if len(paths) > len(shown):
            out.print(f"  ... and {len(paths) - len(shown)} more (--limit 0 or --json lists all)", markup=False)

    listing("Added", d.added, "+")
    listing("Removed", d.removed, "-")
    listing("Changed", [f"{c['path']} ({', '.join(c['what'])})" for c in d.changed], "~")
    listing("Metadata changed", [f"{c['path']} ({', '.join(c['fields'])})" for c in d.metadata_changed], "*")
    for kind, paths in d.files.items():
        for p in paths:
            out.print(f"file {kind}: {p}", markup=False)
    c = d.counts
    out.print(f"{d.a.name} -> {d.b.name}: {c['added']} added, {c['removed']} removed, {c['changed']} changed, "
              f"{c['unchanged']} unchanged", markup=False)
    out.print(f"lineage: {d.relation}", markup=False)
    for step in d.steps:
        out.print(f"  {step.describe()}", markup=False)
