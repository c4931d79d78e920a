"""Store commands: import, datasets, show, verify, export."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xaug.cli.common import HomeOption, QuietOption, console, open_store, out, print_json


def register(app: typer.Typer) -> None:
    app.command("import")(import_cmd)
    app.command("datasets")(datasets_cmd)
    app.command("show")(show_cmd)
    app.command("verify")(verify_cmd)
    app.command("export")(export_cmd)


def import_cmd(
    path: Path = typer.Argument(..., help="Root of a competition-layout folder (train/DCM, train/outputs_json, ...)."),
    name: str = typer.Option("raw", "--name", help="Dataset name; versions are <name>_v<N>."),
    lenient: bool = typer.Option(False, "--lenient", help="Skip bad annotations (recorded in the manifest) instead of failing."),
    folds: int = typer.Option(5, "--folds", min=1, help="k of the person-grouped k-fold split."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the k-fold split."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings (image sizes that differ from the "
                                "rest or from their label's metadata) as errors."),
    rehash: bool = typer.Option(False, "--rehash", help="Read and hash every file again, ignoring the "
                                "cache (which trusts files whose size, mtime and inode are unchanged)."),
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Register a competition-layout folder in the store (unchanged content: no-op)."""
    store = open_store(home)
    ds, created, stats = store.import_folder(
        path, name=name, lenient=lenient, folds=folds, split_seed=split_seed, progress=not quiet,
        strict=strict, rehash=rehash, on_warning=lambda w: console.print(f"warning: {w}", markup=False))
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
    out.print(table)


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
            {"image": it["image"]["path"], "label": (it.get("label") or {}).get("path"),
             "sha256": it["image"]["sha256"], "size": it["image"]["size"], "person": it["person"],
             "side": it.get("side"), "split": it["split"], "fold": it.get("fold"),
             "stored_in": it.get("stored_in"), "provenance": it.get("provenance"), "meta": it.get("meta")}
            for it in ds.items]
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
        for it in info["items_list"]:
            prov = it["provenance"] or {}
            src = f" <- {prov.get('source')}" if prov.get("source") else ""
            ref = f" [ref {it['stored_in'][:8]}]" if it["stored_in"] else ""
            out.print(f"  {it['image']} {it['person']} {it['split']} fold={it['fold']}{ref}{src}", markup=False)


def verify_cmd(name: str = typer.Argument(..., help="Dataset: name, name_vN or id prefix."),
               json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
               home: Optional[Path] = HomeOption) -> None:
    """Re-hash every file of a version; name each missing, changed or extra file (exit 1 if any)."""
    store = open_store(home)
    ds = store.open(name)
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
               dest: Path = typer.Argument(..., help="New folder for the competition layout."),
               quiet: bool = QuietOption,
               home: Optional[Path] = HomeOption) -> None:
    """Materialise a version as a plain competition-layout folder."""
    ds, n = open_store(home).export(name, dest, progress=not quiet)
    out.print(f"exported {ds.name} ({ds.id[:12]}): {n} files to {dest}")
