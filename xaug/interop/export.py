"""The export driver every format shares: pick the items, check the destination, write into a
hidden staging folder next to it, and publish it with one rename.

A format is a function registered under its name:

    @register_format("yolo-seg")
    def write_yolo(job: ExportJob) -> dict: ...     # writes under job.stage, returns counts

A killed export leaves only `.<dest>.xaug-export-<pid>/` (never a complete-looking `<dest>`);
the next export to the same destination removes it.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from xaug.api import SPLITS, Dataset, Item
from xaug.errors import BadInput

SUMMARY_FILE = "xaug-export.json"
_STAGE_TAG = ".xaug-export-"
_OLD_TAG = ".xaug-replaced-"

FORMATS: dict[str, Callable[["ExportJob"], dict[str, Any]]] = {}


def register_format(name: str):
    def deco(fn):
        FORMATS[name] = fn
        return fn
    return deco


def _load_formats() -> None:
    # each module registers its format on import
    from xaug.interop import coco, competition, masks, yolo  # noqa: F401


def format_names() -> list[str]:
    """Registered formats, the built-in ones first in their documented order."""
    _load_formats()
    order = ("competition", "coco", "yolo-seg", "masks")
    return [f for f in order if f in FORMATS] + sorted(f for f in FORMATS if f not in order)


@dataclass
class ExportJob:
    """What a format writer gets: the version, the chosen items (by split), and where to write."""

    dataset: Dataset
    items: dict[str, list[Item]]          # split -> items, splits in train/val/test order
    stage: Path                           # write everything under here
    progress: "Progress"
    all_splits: bool                      # True when every item of the version is exported

    def advance(self, n: int = 1) -> None:
        self.progress.advance(n)

    def write_bytes(self, rel: str, data: bytes) -> Path:
        path = self.stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def write_text(self, rel: str, text: str) -> Path:
        return self.write_bytes(rel, text.encode("utf-8"))

    def all_items(self) -> Iterator[tuple[str, Item]]:
        for split, items in self.items.items():
            for it in items:
                yield split, it


@dataclass
class ExportResult:
    dataset: str
    id: str
    format: str
    dest: Path
    splits: dict[str, int]
    counts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "id": self.id, "format": self.format, "dest": str(self.dest),
                "splits": self.splits, **self.counts, "seconds": round(self.seconds, 3)}


class Progress:
    """The shared progress reporter (`xaug.progress`): a bar on a terminal, short lines in a log."""

    def __init__(self, total: int, label: str, enabled: bool):
        from xaug.progress import Progress as Shared

        self._p = Shared(total, label, enabled=enabled, unit="img")

    def advance(self, n: int = 1) -> None:
        self._p.advance(n)

    def close(self) -> None:
        self._p.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def parse_splits(splits: Sequence[str] | str | None) -> list[str] | None:
    """`--split train --split val` or `train,val` -> ["train", "val"]; None/empty -> every split."""
    if splits is None:
        return None
    if isinstance(splits, str):
        splits = [splits]
    out: list[str] = []
    for s in splits:
        for part in str(s).split(","):
            part = part.strip()
            if not part:
                continue
            if part not in SPLITS:
                raise BadInput(f"--split must be one of {', '.join(SPLITS)}, not {part!r}")
            if part not in out:
                out.append(part)
    return out or None


def check_destination(dest: Path, home: Path, force: bool) -> Path:
    """Refuse a destination that is a file, lies inside the store (or holds it), is not writable,
    or is not empty (unless `force`). The messages are the store's own export's."""
    dest = Path(dest)
    where = str(dest)
    if dest.exists() and not dest.is_dir():
        raise BadInput("is a file; give a new folder to export into", where=where)
    real, store = dest.resolve(), Path(home).resolve()
    if real == store or real.is_relative_to(store) or store.is_relative_to(real):
        raise BadInput(f"is inside the store (or contains it); export to a folder outside {home}", where=where)
    if dest.is_dir() and any(dest.iterdir()):
        if not force:
            raise BadInput("folder exists and is not empty; choose a new folder (or pass --force to replace it)",
                           where=where)
        cwd = Path.cwd().resolve()
        if cwd == real or cwd.is_relative_to(real):
            raise BadInput("is the current folder (or holds it); --force will not replace it", where=where)
    probe = real.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise BadInput(f"cannot write in {probe}; choose a folder you can write to", where=where)
    return dest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _left_by_killed(dest: Path, tag: str) -> list[Path]:
    """The `.<name><tag><pid>` folders beside `dest` whose export process is gone."""
    out = []
    for p in sorted(dest.parent.glob(f".{dest.name}{tag}*")):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            out.append(p)
    return out


def _restore_interrupted(dest: Path) -> None:
    """An export --force killed between its two renames left `dest` missing and the earlier export
    aside in `.<name>.xaug-replaced-<pid>`: put that back, so the destination again holds a whole
    export (the earlier one) before this command decides what to do with it."""
    if dest.exists() or not dest.parent.is_dir():
        return
    for p in _left_by_killed(dest, _OLD_TAG):
        if p.is_dir():
            os.replace(p, dest)
            return


def _clean_stale(dest: Path) -> None:
    """Remove what killed exports to `dest` left (their process is gone)."""
    for tag in (_STAGE_TAG, _OLD_TAG):
        for p in _left_by_killed(dest, tag):
            shutil.rmtree(p, ignore_errors=True)


def select_items(ds: Dataset, splits: list[str] | None) -> dict[str, list[Item]]:
    chosen = splits or list(SPLITS)
    out = {s: ds.items(split=s) for s in SPLITS if s in chosen}
    return {s: items for s, items in out.items() if items or splits}


def export(ds: Dataset, dest: Path | str, format: str = "competition",
           split: Sequence[str] | str | None = None, force: bool = False,
           progress: bool = False) -> ExportResult:
    """Write version `ds` to `dest` in `format` ("competition", "coco", "yolo-seg", "masks").

    `split` limits the export to some of "train", "val" (the validation fold), "test". Every
    byte read is checked against the manifest. The folder appears complete or not at all.
    """
    _load_formats()
    if not isinstance(ds, Dataset):
        raise BadInput(f"export() takes an xaug.Dataset (xaug.open(name)), not {type(ds).__name__} {str(ds)[:60]!r}")
    if not isinstance(dest, (str, os.PathLike)):
        raise BadInput(f"dest must be the folder to export into (a str or Path), not {type(dest).__name__}")
    if not isinstance(force, bool):
        # force replaces a folder: a truthy "no" must not do that
        raise BadInput(f"force must be True or False, not {force!r}")
    if not isinstance(format, str) or format not in FORMATS:
        import difflib

        close = difflib.get_close_matches(str(format).lower(), list(FORMATS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BadInput(f"unknown export format {format!r}{hint}; known: {', '.join(format_names())}")
    splits = parse_splits(split)
    _restore_interrupted(Path(dest))
    dest = check_destination(Path(dest), ds.home, force)
    items = select_items(ds, splits)
    n = sum(len(v) for v in items.values())
    if n == 0:
        raise BadInput(f"nothing to export: {ds.name} has no items in split {', '.join(splits or SPLITS)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
    stage = dest.parent / f".{dest.name}{_STAGE_TAG}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    t0 = time.monotonic()
    bar = Progress(n, f"export {format}", progress)
    try:
        job = ExportJob(ds, items, stage, bar, all_splits=splits is None)
        counts = FORMATS[format](job)
        result = ExportResult(ds.name, ds.id, format, dest, {s: len(v) for s, v in items.items()}, counts)
        summary = {**result.to_json(), "dest": None, "seconds": None,
                   "lineage": [{"name": v.name, "id": v.id, "kind": v.kind} for v in ds.lineage],
                   "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "xaug": _version()}
        summary = {k: v for k, v in summary.items() if v is not None}
        job.write_text(SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
        _publish(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        bar.close()
    result.seconds = time.monotonic() - t0
    return result


def _publish(stage: Path, dest: Path) -> None:
    """Move the finished staging folder into place; an existing (forced) folder goes only after."""
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if dest.exists():
        old = dest.parent / f".{dest.name}{_OLD_TAG}{os.getpid()}"
        os.replace(dest, old)
        os.replace(stage, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, dest)


def _version() -> str:
    from xaug import __version__

    return __version__


def item_dir(split: str, it: Item) -> str:
    """`<split>/<person>`: where an item goes in the image/label folders of COCO, YOLO and masks."""
    return f"{split}/{it.person}"


def iter_progress(job: ExportJob, items: Iterable[Item]) -> Iterator[Item]:
    for it in items:
        yield it
        job.advance()
