"""The dataset store: named, hash-versioned datasets in the competition layout.

    <home>/refs.json                      {"raw": ["<id v1>", "<id v2>"], "rotate": [...]}
    <home>/versions/<id>/manifest.json    written last; its canonical hash is <id>
    <home>/versions/<id>/data/<relpath>   the version's own files (competition layout)
    <home>/staging/<key>/                 versions being built (resumable); never listed
    <home>/cache/hashes.sqlite            incremental hash cache
    <home>/lock                           held while a version is committed or refs change
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from filelock import FileLock

from xaug.errors import BadInput, UnknownDataset, XaugError
from xaug.layout import (META_SHEET, PersonMeta, label_relpath_for, parse_annotation_doc, persons_by_folder,
                         read_meta, write_meta)
from xaug.model import Sample
from xaug.seeds import seed_problem
from xaug.store.hashing import HashCache, canonical_json, sha256_bytes, sha256_file
from xaug.store.manifest import FileEntry, ItemEntry, item_entry, manifest_id, new_manifest

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
VERSIONED_RE = re.compile(r"^(?P<base>.+)_v(?P<n>\d+)$")


def is_plain_name(name: str) -> bool:
    """The one name rule: letters, digits, '_' or '-', starting with a letter, at most 64
    characters, not ending in _v<N> (the store numbers versions)."""
    return bool(NAME_RE.match(name or "")) and not VERSIONED_RE.match(name)


def check_name(name: str) -> str:
    if not is_plain_name(name):
        shown = repr(name) if len(str(name)) <= 80 else repr(str(name)[:40]) + f"... ({len(str(name))} characters)"
        raise BadInput("dataset names are plain identifiers (letters, digits, '_' or '-', starting "
                       "with a letter, at most 64 characters, not ending in _v<N>); choose another --name",
                       where=shown)
    return name


# ---------------------------------------------------------------- paths and bytes read from the store

HEX_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_SHA_RE = HEX_ID_RE
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_ITEM_IMAGE_RE = re.compile(r"^(train|test)/DCM/[^/]+/[^/]+(?i:\.png)$")


def check_relpath(rel: Any, where: str) -> str:
    """A path read from a manifest (or any file xaug wrote) must be relative, '/'-separated, with no
    empty, '.' or '..' part, no drive and no NUL: it can only name something below its root."""
    if (not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel
            or _DRIVE_RE.match(rel) or any(part in ("", ".", "..") for part in rel.split("/"))):
        raise BadInput(f"unsafe path {rel!r} (absolute, '..' or empty parts); the store refuses to use it",
                       where=where)
    return rel


def check_image_relpath(rel: Any, where: str) -> str:
    """An item image's path: a safe relpath of the form `<train|test>/DCM/<ID>/<name>.png` (what
    every manifest must hold; a version with any other is refused when opened)."""
    check_relpath(rel, where)
    if not _ITEM_IMAGE_RE.match(rel):
        raise BadInput(f"{rel!r} is not <train|test>/DCM/<ID>/<name>.png", where=where)
    return rel


def inside(root: Path, rel: str, where: str) -> Path:
    """`root / rel` after checking `rel` and that, symlinks resolved, it stays inside `root`."""
    check_relpath(rel, where)
    path = root / rel
    real_root = root.resolve()
    if not path.resolve().is_relative_to(real_root):
        raise BadInput(f"path {rel!r} leads outside its folder (a symbolic link?); the store refuses to "
                       "use it", where=where)
    return path


def read_verified(path: Path | str, sha256: str, *, where: str, name: str, size: int | None = None) -> bytes:
    """The bytes of a stored file, checked against the sha256 (and size) its manifest records.

    The hash is taken of the bytes already read (no second read). A missing, unreadable or changed
    file raises BadInput naming `where` (the file's relpath) and `xaug verify NAME`.

    >>> import hashlib, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a"; _ = p.write_bytes(b"x")
    >>> read_verified(p, hashlib.sha256(b"x").hexdigest(), where="a", name="raw_v1")
    b'x'
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInput(f"stored file is missing; run `xaug verify {name}`", where=where) from None
    except OSError as exc:
        raise BadInput(f"cannot read the stored file ({exc.strerror}); run `xaug verify {name}`",
                       where=where) from None
    if (size is not None and len(data) != size) or sha256_bytes(data) != sha256:
        raise BadInput(f"stored file does not match its manifest (changed after it was written); "
                       f"run `xaug verify {name}`", where=where)
    return data


def sample_bytes(sample: Sample) -> bytes:
    """A Sample's image bytes; checked against the manifest when the Sample came from the store."""
    if sample.image_sha256 is None:  # a Sample of a plain folder (scan_layout): nothing to check
        try:
            return Path(sample.image_path).read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read image ({exc.strerror})", where=str(sample.image_path)) from None
    return read_verified(sample.image_path, sample.image_sha256, where=sample.relpath,
                         name=sample.dataset or "NAME")


def read_sample_image(sample: Sample, flags: int | None = None):
    """A Sample's image decoded as stored (or with OpenCV imread `flags`), bytes checked first."""
    from xaug.layout import decode_image

    return decode_image(sample_bytes(sample), sample.relpath, flags)


def _check_entry(entry: Any, key: str, where: str) -> None:
    if not isinstance(entry, dict):
        raise BadInput(f"{key}: not a file entry; {_DAMAGED}", where=where)
    check_relpath(entry.get("path"), f"{where}: {key}.path")
    if not isinstance(entry.get("sha256"), str) or not _SHA_RE.match(entry["sha256"]):
        raise BadInput(f"{key}.sha256: not a sha256 hex digest; {_DAMAGED}", where=where)
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadInput(f"{key}.size: not a byte count; {_DAMAGED}", where=where)


_REFS_FIX = "each versions/<id>/manifest.json records the name it was made under in info.name"
_DAMAGED = "the version is damaged: restore the store from a backup, or rebuild the version"


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """The structure of a manifest read from disk, and every path in it (relative, inside the store)."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("items"), list) \
            or not isinstance(manifest.get("files", []), list):
        raise BadInput(f"not a manifest (an object with 'items' and 'files' lists); {_DAMAGED}", where=where)
    for i, f in enumerate(manifest.get("files", [])):
        _check_entry(f, f"files.{i}", where)
        if f.get("stored_in") is not None and not HEX_ID_RE.match(str(f["stored_in"])):
            raise BadInput(f"files.{i}.stored_in: not a version id; {_DAMAGED}", where=where)
    for i, it in enumerate(manifest["items"]):
        if not isinstance(it, dict):
            raise BadInput(f"items.{i}: not an item; {_DAMAGED}", where=where)
        _check_entry(it.get("image"), f"items.{i}.image", where)
        if not _ITEM_IMAGE_RE.match(it["image"]["path"]):
            raise BadInput(f"items.{i}.image.path: {it['image']['path']!r} is not <split>/DCM/<ID>/<name>.png; "
                           f"{_DAMAGED}", where=where)
        if it.get("label") is not None:
            _check_entry(it["label"], f"items.{i}.label", where)
        if it.get("stored_in") is not None and not HEX_ID_RE.match(str(it["stored_in"])):
            raise BadInput(f"items.{i}.stored_in: not a version id; {_DAMAGED}", where=where)
        if not isinstance(it.get("person"), str) or it.get("split") not in ("train", "test"):
            raise BadInput(f"items.{i}: needs a person and a split (train or test); {_DAMAGED}", where=where)
        if not (isinstance(it.get("meta") or {}, dict) and isinstance(it.get("provenance") or {}, dict)
                and isinstance(it.get("fold"), (int, type(None))) and isinstance(it.get("side"), (str, type(None)))):
            raise BadInput(f"items.{i}: meta, provenance, fold or side of the wrong type; {_DAMAGED}", where=where)
    source = manifest.get("source")
    if source is not None and not (isinstance(source, dict) and HEX_ID_RE.match(str(source.get("id")))):
        raise BadInput(f"source: not a version id; {_DAMAGED}", where=where)
    split = manifest.get("split")
    if split is not None and not (isinstance(split, dict) and isinstance(split.get("folds", {}), dict)
                                  and isinstance(split.get("val_fold"), (int, type(None)))):
        raise BadInput(f"split: not a split record; {_DAMAGED}", where=where)
    for key, kind in (("info", dict), ("skipped", list), ("kind", str), ("plan_key", str)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise BadInput(f"{key}: not a {kind.__name__}; {_DAMAGED}", where=where)
    return manifest


def enclosing_store(home: Path) -> Path | None:
    """The store folder (refs.json beside versions/) that `home` lies inside, if any."""
    probe = Path(home).absolute()
    for parent in probe.parents:
        if (parent / "refs.json").is_file() and (parent / "versions").is_dir():
            return parent
    return None


LOCK_WAIT_S = 600.0  # the store's lock (publishing, refs.json): held for seconds at a time
STAGING_WAIT_S = 3600.0  # a plan's staging lock: held while another process builds the same version


@contextmanager
def held(path: Path, timeout: float) -> Iterator[None]:
    """Hold the file lock `path`; say so on stderr when another process holds it, and after
    `timeout` seconds refuse in one line instead of waiting on (or a filelock.Timeout traceback).

    A killed process's lock is released by the system (flock): only a live one makes us wait."""
    import sys

    from filelock import Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=min(2.0, timeout))
    except Timeout:
        print(f"waiting for {path}: another xaug command is writing to this store (at most "
              f"{timeout / 60:g} min)", file=sys.stderr, flush=True)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise BadInput(f"another xaug command has held this lock for {timeout / 60:g} min; let it "
                           "finish (or stop it) and run the same command again", where=str(path)) from None
    try:
        yield
    finally:
        lock.release()


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename: a kill leaves the old file
    or the new one, never a half-written one (store files, and every report, CSV and PNG)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a kill leaves no partial temporary behind
        raise


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no partial temporary behind
        raise


# ---------------------------------------------------------------- staging (usable in workers)

def _record_path(staging: Path, relpath: str) -> Path:
    return staging.parent / "records" / (sha256_bytes(relpath.encode())[:32] + ".json")


def stage_item(staging: Path, image_relpath: str, image: bytes | Path, label: bytes | None = None, *,
               person: str, split: str, side: str | None = None, provenance: dict | None = None,
               meta: dict | None = None, fold: int | None = None) -> dict:
    """Write one item's files under `staging` atomically, then its record; return the record.

    Pure with respect to the store: safe to call from joblib workers. The record is written last,
    so an item with a record is complete (a resumed build skips it).
    """
    staging = Path(staging)
    if isinstance(image, (bytes, bytearray, memoryview)):
        image_bytes = bytes(image)
        atomic_write(staging / image_relpath, image_bytes)
        image_info = {"path": image_relpath, "sha256": sha256_bytes(image_bytes), "size": len(image_bytes)}
    else:
        _atomic_copy(Path(image), staging / image_relpath)
        image_info = {"path": image_relpath, "sha256": sha256_file(staging / image_relpath),
                      "size": (staging / image_relpath).stat().st_size}
    label_info = None
    if label is not None:
        label_rel = label_relpath_for(image_relpath)
        atomic_write(staging / label_rel, label)
        label_info = {"path": label_rel, "sha256": sha256_bytes(label), "size": len(label)}
    record = item_entry(image_info, label_info, person=person, side=side, split=split, fold=fold,
                        provenance=provenance or {}, meta=meta or {}, stored_in=None)
    atomic_write(_record_path(staging, image_relpath), canonical_json(record))
    return record


def _prune_staging(data_dir: Path, manifest: dict[str, Any]) -> None:
    """Delete what a killed run left in a staging folder and the manifest does not list.

    A run killed mid-write leaves `.name.<pid>.tmp` files (and, between an item's files and its
    record, files of an item without a record). A resumed run rewrites those items, but the stray
    files would be published with the version and fail `verify` as extras.
    """
    keep = {f["path"] for f in manifest.get("files", [])}
    for it in manifest.get("items", []):
        if it.get("stored_in"):
            continue
        keep.add(it["image"]["path"])
        if it.get("label"):
            keep.add(it["label"]["path"])
    if not data_dir.is_dir():
        return
    for path in sorted(data_dir.rglob("*"), reverse=True):
        rel = path.relative_to(data_dir).as_posix()
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif rel not in keep:
            path.unlink()


# ---------------------------------------------------------------- datasets

class Dataset:
    """One registered version: its id (manifest hash), name (`raw_v2`) and manifest."""

    def __init__(self, store: "Store", id: str, name: str, manifest: dict[str, Any]):
        self.store = store
        self.id = id
        self.name = name
        self.manifest = manifest
        self._persons: dict[str, PersonMeta] | None = None
        self._by_path: dict[str, dict[str, Any]] | None = None
        self._roots_checked: set[str] = set()
        self._entries: tuple[ItemEntry, ...] | None = None

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {self.id[:12]})"

    @property
    def base(self) -> str:
        m = VERSIONED_RE.match(self.name)
        return m.group("base") if m else self.name

    @property
    def version(self) -> int:
        m = VERSIONED_RE.match(self.name)
        return int(m.group("n")) if m else 0

    @property
    def root(self) -> Path:
        return self.store.version_dir(self.id) / "data"

    @property
    def items(self) -> list[dict[str, Any]]:
        """The manifest's items as JSON (what is hashed; for tools that want the raw record).
        Code reads `entries`: the same items, typed."""
        return self.manifest["items"]

    @property
    def entries(self) -> tuple[ItemEntry, ...]:
        """Every item, typed (`ItemEntry`: image and label `FileEntry`, person, split, fold, ...)."""
        if self._entries is None:
            self._entries = tuple(ItemEntry.from_json(it) for it in self.items)
        return self._entries

    def entry(self, ref: str) -> ItemEntry:
        """An item by image relpath, file name or stem, typed."""
        return ItemEntry.from_json(self.item(ref))

    @property
    def files(self) -> tuple[FileEntry, ...]:
        """The version's files that belong to no item (its meta_data.xlsx), typed."""
        return tuple(FileEntry.from_json(f) for f in self.manifest.get("files", []))

    @property
    def sheet(self) -> FileEntry | None:
        """The version's meta_data.xlsx, if it has one."""
        return next((f for f in self.files if f.path == META_SHEET), None)

    @property
    def kind(self) -> str:
        return self.manifest.get("kind", "?")

    @property
    def source_id(self) -> str | None:
        src = self.manifest.get("source")
        return src["id"] if src else None

    @property
    def split_info(self) -> dict[str, Any] | None:
        return self.manifest.get("split")

    @property
    def val_fold(self) -> int | None:
        split = self.split_info
        return split.get("val_fold") if split else None

    def file_path(self, info: FileEntry | dict[str, Any], stored_in: str | None = None) -> Path:
        """Absolute path of a file entry's bytes (own, or in the version that stores them).

        The path comes from the manifest: it must stay inside the holding version's data folder
        (no absolute path, no '..', no symbolic link leading out), else BadInput.
        """
        if isinstance(info, FileEntry):
            info, stored_in = info.to_json(), info.stored_in
        holder = stored_in or self.id
        if not HEX_ID_RE.match(str(holder)):
            raise BadInput(f"stored_in {holder!r} is not a version id; run `xaug verify {self.name}`",
                           where=str(info.get("path")))
        root = self.store.version_dir(holder) / "data"
        if holder not in self._roots_checked:  # the version folder itself must be in the store
            home = self.store.home.resolve()
            if not root.resolve().is_relative_to(home):
                raise BadInput(f"the folder of version {holder[:12]} leads outside the store (a symbolic "
                               f"link?); the store refuses to use it; run `xaug verify {self.name}`",
                               where=str(self.store.version_dir(holder)))
            self._roots_checked.add(holder)
        return inside(root, info.get("path"), f"{self.name}: {info.get('path')!r}")

    def read_file(self, info: FileEntry | dict[str, Any], stored_in: str | None = None) -> bytes:
        """The bytes of a file entry, checked against the manifest's sha256 and size."""
        if isinstance(info, FileEntry):
            info, stored_in = info.to_json(), info.stored_in
        return read_verified(self.file_path(info, stored_in), info["sha256"], where=info["path"],
                             name=self.name, size=info.get("size"))

    def read_image(self, ref: Sample | ItemEntry | dict[str, Any] | str, flags: int | None = None):
        """An item's image (Sample, ItemEntry, item dict or relpath/stem) decoded, bytes checked first."""
        from xaug.layout import decode_image

        if isinstance(ref, Sample):
            ref = ref.relpath
        if isinstance(ref, ItemEntry):
            e = ref
        else:
            e = ItemEntry.from_json(ref) if isinstance(ref, dict) else self.entry(ref)
        return decode_image(self.read_file(e.image), e.image.path, flags)

    def item(self, ref: str) -> dict[str, Any]:
        """An item's manifest JSON by image relpath, file name or stem (code reads `entry()`)."""
        if self._by_path is None:
            self._by_path = {it["image"]["path"]: it for it in self.items}
        if ref in self._by_path:
            return self._by_path[ref]
        for it in self.items:
            rel = it["image"]["path"]
            if ref in (rel, Path(rel).name, Path(rel).stem):
                return it
        names = [Path(it["image"]["path"]).stem for it in self.items]
        close = difflib.get_close_matches(ref, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise BadInput(f"no item {ref!r} in {self.name}{hint}; list them with `xaug show {self.name} --items`")

    def sample(self, it: ItemEntry | dict[str, Any], load: bool = True) -> Sample:
        e = it if isinstance(it, ItemEntry) else ItemEntry.from_json(it)
        s = Sample(relpath=e.relpath, image_path=self.file_path(e.image), person=e.person, split=e.split,
                   side=e.side, meta=dict(e.meta), provenance=dict(e.provenance), fold=e.fold,
                   image_sha256=e.image.sha256, dataset=self.name)
        if load and e.label is not None:
            path = self.file_path(e.label)
            data = self.read_file(e.label)
            anns, extra, problems, _ = parse_annotation_doc(data, str(path))
            if problems:
                raise BadInput(problems[0] + f"; run `xaug verify {self.name}`", problems=problems[1:])
            s.annotations, s.doc_extra = anns, extra
        return s

    def samples(self, split: str | None = None, role: str | None = None, load: bool = True) -> list[Sample]:
        """Items as Samples; `role` ('train'/'val') filters the train split by the recorded folds."""
        if role not in (None, "train", "val"):
            raise BadInput(f"role must be 'train' or 'val', not {role!r}")
        return [self.sample(e, load=load) for e in self.select(split, role)]

    def select(self, split: str | None = None, role: str | None = None) -> list[ItemEntry]:
        """The typed entries of one split; `role` ('train'/'val') filters train by the folds."""
        if role not in (None, "train", "val"):
            raise BadInput(f"role must be 'train' or 'val', not {role!r}")
        val = self.val_fold
        return [e for e in self.entries if (split is None or e.split == split)
                and (role is None or e.split == "train" and e.role(val) == role)]

    @property
    def persons(self) -> dict[str, PersonMeta]:
        if self._persons is None:
            sheet = self.sheet
            if sheet is None:
                self._persons = {}
            else:
                rows = SheetCache(self.store.home).read(
                    sheet.sha256, lambda: self.read_file(sheet), where=f"{self.name}: {META_SHEET}")
                self._persons = persons_by_folder(rows, {e.person for e in self.entries})
        return self._persons

    def file_entries(self) -> Iterator[FileEntry]:
        """Every file of the version, typed: the sheet, then each item's image and label."""
        yield from self.files
        for e in self.entries:
            yield from e.files()

    def all_files(self) -> Iterator[tuple[dict[str, Any], str | None]]:
        """`file_entries()` as (JSON file entry, stored_in) pairs."""
        for f in self.file_entries():
            yield f.to_json(), f.stored_in

    def summary(self) -> dict[str, Any]:
        splits: dict[str, int] = {}
        for e in self.entries:
            splits[e.split] = splits.get(e.split, 0) + 1
        own = sum(1 for e in self.entries if not e.stored_in)
        src = self.manifest.get("source")
        return {"name": self.name, "id": self.id, "kind": self.kind, "items": len(self.entries),
                "own_items": own, "referenced_items": len(self.entries) - own, "splits": splits,
                "persons": len({e.person for e in self.entries}),
                "source": src, "seed": self.manifest.get("seed"),
                "created": self.manifest.get("info", {}).get("created")}


# ---------------------------------------------------------------- the store

# Bump when write_meta's output changes: the sheet cache then writes anew.
SHEET_WRITER = 1


class SheetCache:
    """meta_data.xlsx parsed and written once per content, under `cache/sheets/`.

    Every build from a version reads its sheet (importing and running openpyxl: about 70 ms of
    a 3 s command) and every commit writes one; both are pure functions of their input. `read`
    is keyed by the sheet's sha256, `write` by the persons' canonical JSON, the writer version
    and the installed openpyxl's file; a cached sheet is checked against the sha256 it was
    stored with. A missing, damaged or unwritable cache is only slower: the results are the
    same bytes either way (tested)."""

    def __init__(self, home: Path | str):
        self.dir = Path(home) / "cache" / "sheets"

    def read(self, sha256: str | None, data: Any, where: str) -> dict[str, PersonMeta]:
        import io

        path = self.dir / f"{sha256}.json" if sha256 and HEX_ID_RE.match(sha256) else None
        if path is not None:
            try:
                rows = json.loads(path.read_bytes())["persons"]
                return {r["person"]: PersonMeta(**r) for r in rows}
            except (OSError, ValueError, KeyError, TypeError):
                pass
        persons = read_meta(io.BytesIO(data()), where=where)
        if path is not None:
            self._put(path, canonical_json({"persons": [m.to_json() for m in persons.values()]}))
        return persons

    def write(self, path: Path, persons: Iterable[PersonMeta]) -> tuple[str, int]:
        """`write_meta(path, persons)`, from the cache when these persons were written before;
        returns the written sheet's (sha256, size)."""
        rows = [m.to_json() for m in sorted(persons, key=lambda m: m.person)]
        key = sha256_bytes(canonical_json({"writer": SHEET_WRITER, "openpyxl": _openpyxl_identity(),
                                           "persons": rows}))
        cached = self.dir / f"{key}.xlsx"
        try:
            data = cached.read_bytes()
            sha = (self.dir / f"{key}.sha256").read_text().strip()
            if sha256_bytes(data) == sha:
                atomic_write(Path(path), data)
                return sha, len(data)
        except OSError:
            pass
        write_meta(path, [PersonMeta(**r) for r in rows])
        data = Path(path).read_bytes()
        sha = sha256_bytes(data)
        self._put(cached, data)
        self._put(self.dir / f"{key}.sha256", sha.encode())
        return sha, len(data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        try:
            atomic_write(path, data)
        except OSError:  # a read-only store: it was only a cache
            pass


def _openpyxl_identity() -> list:
    """Which openpyxl would write the sheet, without importing it: its file's path, size, mtime."""
    import importlib.util

    spec = importlib.util.find_spec("openpyxl")
    if spec is None or not spec.origin:
        return []
    st = os.stat(spec.origin)
    return [spec.origin, st.st_size, st.st_mtime_ns]


class Store:
    """A workspace folder of named, hash-versioned datasets."""

    def __init__(self, home: Path | str):
        self.home = Path(home)
        self._checked: set[tuple] = set()  # manifests whose structure and id this process checked
        self._home_checked = False  # not inside another store (checked once)

    # -- paths and refs
    def version_dir(self, id: str) -> Path:
        return self.home / "versions" / id

    @property
    def _refs_path(self) -> Path:
        return self.home / "refs.json"

    def _lock(self):
        self._check_home()
        self.home.mkdir(parents=True, exist_ok=True)
        return held(self.home / "lock", timeout=LOCK_WAIT_S)

    def _check_home(self) -> None:
        if self.home.exists() and not self.home.is_dir():
            raise BadInput("is a file, not a store folder; give a folder with --home (or $XAUG_HOME)",
                           where=str(self.home))
        if not self._home_checked:
            outer = enclosing_store(self.home)
            if outer is not None:  # a store in another's versions/ would be extra files of a version
                raise BadInput(f"is inside the store {outer}; give that store's own folder as --home, or a "
                               "folder outside it", where=str(self.home))
            self._home_checked = True

    def refs(self) -> dict[str, list[str]]:
        """names -> version ids, as refs.json lists them; a damaged refs.json raises BadInput."""
        self._check_home()
        where = str(self._refs_path)
        fix = f"restore refs.json from a backup ({_REFS_FIX})"
        try:
            refs = json.loads(self._refs_path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise BadInput(f"cannot read the store's list of names ({exc.strerror})", where=where) from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadInput(f"not valid JSON: the store's list of names is damaged; {fix}", where=where) from None
        if not isinstance(refs, dict):
            raise BadInput(f"not a mapping of names to version ids; {fix}", where=where)
        for base, ids in refs.items():
            if not NAME_RE.match(base) or VERSIONED_RE.match(base):
                raise BadInput(f"{base!r} is not a dataset name; {fix}", where=where)
            if not isinstance(ids, list) or not all(isinstance(i, str) and HEX_ID_RE.match(i) for i in ids):
                raise BadInput(f"{base}: version ids must be 64 hex digits; {fix}", where=where)
        return refs

    def _write_refs(self, refs: dict[str, list[str]]) -> None:
        atomic_write(self._refs_path, json.dumps(refs, indent=1, sort_keys=True).encode())

    def _load_manifest(self, id: str, check_id: bool = True) -> dict[str, Any]:
        """A version's manifest, its structure and paths checked and (with `check_id`) its content
        hash compared with its id: an edited manifest is refused before anything is read through it."""
        path = self.version_dir(id) / "manifest.json"
        where = str(path)
        if not HEX_ID_RE.match(id):
            raise BadInput(f"{id!r} is not a version id", where=str(self._refs_path))
        try:
            st = path.stat()
            manifest = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise BadInput("version listed in refs.json has no manifest (deleted or never published); "
                           f"{_DAMAGED}", where=where) from None
        except OSError as exc:
            raise BadInput(f"cannot read the manifest ({exc.strerror})", where=where) from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BadInput(f"manifest is not valid JSON; {_DAMAGED}", where=where) from None
        stamp = (id, st.st_size, st.st_mtime_ns, st.st_ino)
        if stamp in self._checked:  # this process checked these very bytes already
            return manifest
        check_manifest(manifest, where)
        if check_id:
            try:
                ok = manifest_id(manifest) == id
            except (TypeError, ValueError):  # NaN or other values canonical JSON refuses
                ok = False
            if not ok:
                raise BadInput(f"manifest content does not match its id {id[:12]} (edited after it was "
                               "written); run `xaug verify " + id[:12] + "`", where=where)
            self._checked.add(stamp)
        return manifest

    def _dataset(self, base: str, n: int, id: str, check_id: bool = True) -> Dataset:
        return Dataset(self, id, f"{base}_v{n}", self._load_manifest(id, check_id))

    def ensure_space(self, nbytes: int, what: str, hint: str) -> None:
        """Refuse work whose output (an estimate, `nbytes`) would not fit on the store's disk, before
        any of it starts: a build that fills the disk half-way helps no one."""
        self._check_home()
        probe = self.home.absolute()
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        need = int(nbytes * 1.1) + (64 << 20)  # 10% and 64 MB for labels, manifests, temporaries
        if need > free:
            raise BadInput(f"{what} needs about {human_bytes(need)} but only {human_bytes(free)} is free "
                           f"on the store's disk; {hint}", where=str(self.home))

    # -- reading
    def datasets(self, problems: list[str] | None = None, check_id: bool = True) -> list[Dataset]:
        """Every healthy version; a damaged one is left out (and described in `problems`)."""
        out = []
        refs = self.refs()
        for base, ids in sorted(refs.items()):
            for n, id in enumerate(ids, 1):
                try:
                    out.append(self._dataset(base, n, id, check_id))
                except BadInput as exc:
                    if problems is not None:
                        problems.append(f"{base}_v{n}: " + exc.lines()[0])
        if problems is not None:
            listed = {id for ids in refs.values() for id in ids}
            root = self.home / "versions"
            orphans = sorted(d.name for d in root.iterdir() if HEX_ID_RE.match(d.name) and d.name not in listed
                             and self._published(d.name)) if root.is_dir() else []
            if orphans:  # refs.json lost or edited: the versions are there, unnamed
                problems.append(f"{root}: {len(orphans)} version(s) that refs.json does not name (e.g. "
                                f"{orphans[0][:12]}): a build killed before it named its version (run it "
                                f"again), or refs.json lost or edited (restore it from a backup; {_REFS_FIX})")
        return out

    def names(self) -> list[str]:
        return [f"{b}_v{n}" for b, ids in sorted(self.refs().items()) for n in range(1, len(ids) + 1)]

    def open(self, ref: str, check_id: bool = True) -> Dataset:
        """A version by `name` (newest), `name_vN`, or a unique id prefix (4+ hex digits)."""
        refs = self.refs()
        ref = ref if isinstance(ref, str) else str(ref)
        m = VERSIONED_RE.match(ref or "")
        if m and m.group("base") in refs:
            ids, n = refs[m.group("base")], int(m.group("n"))
            if 1 <= n <= len(ids):
                return self._dataset(m.group("base"), n, ids[n - 1], check_id)
        if ref in refs and refs[ref]:
            return self._dataset(ref, len(refs[ref]), refs[ref][-1], check_id)
        if ref and re.fullmatch(r"[0-9a-f]{4,64}", ref):
            hits = {(b, n, id) for b, ids in refs.items() for n, id in enumerate(ids, 1) if id.startswith(ref)}
            if len({h[2] for h in hits}) == 1:
                b, n, id = sorted(hits)[0]
                return self._dataset(b, n, id, check_id)
        known = self.names()
        if ref in refs:  # refs.json names it with no version: hand-edited (a build only ever appends)
            raise UnknownDataset(f"{self._refs_path}: {ref!r} is listed with no version; remove the entry or "
                                 f"restore refs.json from a backup ({_REFS_FIX})")
        close = difflib.get_close_matches(ref or "", known + list(refs), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        listing = ", ".join(known) if known else f"none yet in {self.home}; create one with `xaug synth` or `xaug import`"
        raise UnknownDataset(f"unknown dataset {ref!r}{hint}; known: {listing}")

    def find_plan(self, plan_key: str) -> Dataset | None:
        """The version a plan made; only that one is opened and checked (a damaged one raises).

        Every build asks this (twice: before and under the plan's lock), so it must not read every
        manifest of the store: `cache/plans.json` remembers each version's plan key. Manifests are
        content-addressed, so a version id's plan key never changes; the cache only grows, is
        checked against the manifest it points to, and is rebuilt if lost or damaged."""
        for rebuild in (False, True):
            keys = self._plan_keys(rebuild=rebuild)
            lied = False
            for base, ids in sorted(self.refs().items()):
                for n, id in enumerate(ids, 1):
                    if keys.get(id) == plan_key:
                        if not self._published(id):  # its folder deleted: building the plan again restores it
                            continue
                        ds = self._dataset(base, n, id)
                        if ds.manifest.get("plan_key") == plan_key:
                            return ds
                        lied = True
            if not lied:
                return None
        return None  # pragma: no cover - a rebuilt cache is read from the manifests themselves

    @property
    def _plans_path(self) -> Path:
        return self.home / "cache" / "plans.json"

    def _plan_keys(self, rebuild: bool = False) -> dict[str, str | None]:
        """version id -> plan key for every version refs.json lists (damaged ones left out);
        `rebuild`: forget the cache (it named a version of another plan) and read the manifests."""
        try:
            known = {} if rebuild else json.loads(self._plans_path.read_bytes().decode("utf-8"))
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}
        known = {k: v for k, v in known.items() if HEX_ID_RE.match(str(k)) and (v is None or isinstance(v, str))}
        ids = [id for ids in self.refs().values() for id in ids]
        missing = [id for id in ids if id not in known]
        for id in missing:
            try:
                known[id] = self._load_manifest(id, check_id=False).get("plan_key")
            except BadInput:  # damaged: opening it says so; find_plan just does not match it
                continue
        if missing or rebuild:
            try:
                atomic_write(self._plans_path, json.dumps(known, sort_keys=True).encode())
            except OSError:  # a read-only store: it was only a cache
                pass
        return {id: known.get(id) for id in ids}

    def lineage(self, ds: Dataset) -> list[Dataset]:
        """ds, its source, its source's source, ... (by id)."""
        chain = [ds]
        seen = {ds.id}
        while chain[-1].source_id and chain[-1].source_id not in seen:
            sid = chain[-1].source_id
            seen.add(sid)
            chain.append(self.open(sid))
        return chain

    # -- registering
    def _register(self, name: str, id: str) -> Dataset:
        """Under the lock: give `id` the next version of `name`, unless its newest already is it."""
        refs = self.refs()
        ids = refs.setdefault(name, [])
        if id in ids:
            return self._dataset(name, ids.index(id) + 1, id)
        ids.append(id)
        self._write_refs(refs)
        return self._dataset(name, len(ids), id)

    def _existing(self, name: str, id: str) -> Dataset | None:
        ids = self.refs().get(name, [])
        return self._dataset(name, ids.index(id) + 1, id) if id in ids and self._published(id) else None

    def _published(self, id: str) -> bool:
        """Whether version `id` has its folder and manifest. refs.json may still list one whose folder
        was deleted by hand: opening it says so, and rebuilding it (the same plan, or the same
        import) puts the identical version back under its old name and number."""
        return (self.version_dir(id) / "manifest.json").is_file()

    def _publish(self, stage_root: Path, manifest: dict[str, Any], name: str) -> tuple[Dataset, bool]:
        """Write the manifest last, move the staged folder into place, register the name."""
        id = manifest_id(manifest)
        with self._lock():
            existing = self._existing(name, id)
            if existing is not None:
                shutil.rmtree(stage_root, ignore_errors=True)
                return existing, False
            target = self.version_dir(id)
            if not self._published(id):
                check_manifest(manifest, f"{name}: the manifest being published")  # never publish what open refuses
                _prune_staging(stage_root / "data", manifest)
                atomic_write(stage_root / "manifest.json", json.dumps(manifest, indent=1).encode())
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # a folder without manifest: an interrupted publish
                    shutil.rmtree(target)
                os.replace(stage_root, target)
                shutil.rmtree(target / "records", ignore_errors=True)
            else:
                shutil.rmtree(stage_root, ignore_errors=True)
            ds = self._register(name, id)
            self._plan_keys()  # the new version's plan key into cache/plans.json (a cache hit writes nothing)
            return ds, True

    @contextmanager
    def build(self, name: str, kind: str, plan_key: str, source: Dataset | None = None,
              spec: dict[str, Any] | None = None, seed: int | None = None) -> Iterator["Builder"]:
        check_name(name)
        b = Builder(self, name, kind, plan_key, source, spec or {}, seed)
        with b._staging_lock:
            yield b

    # -- import
    def import_folder(self, path: Path, name: str = "raw", lenient: bool = False, folds: int = 5,
                      split_seed: int = 0, progress: bool = False, strict: bool = False,
                      rehash: bool = False, on_warning=None, jobs: int | None = None,
                      backend: Any = None) -> tuple[Dataset, bool, dict[str, int]]:
        """Register a competition-layout folder; nothing is registered if any input is bad.

        Returns (dataset, created, stats) where stats counts files hashed and reused from the cache.
        Image sizes that differ from the most common one, or from the size a label's metadata
        records, are warnings (`on_warning(line)`, default: Python warnings); with `strict` they
        are problems. `rehash` ignores the hash cache (see xaug.store.hashing for its rule).
        `backend` (a name, a `BackendChoice`; default `$XAUG_BACKEND` or local) is where the files
        are read, hashed, checked and copied in: `jobs` threads here, or the workers of a dask
        cluster, which must see the folder at the same path. The version is the same either way.
        """
        from xaug.layout import scan_layout
        from xaug.store.backends import get_backend

        check_name(name)
        be = get_backend(backend)  # a missing `distributed` is one line, before any work
        if not (isinstance(folds, int) and 1 <= folds <= 100):
            raise BadInput(f"--folds is the k of a k-fold split: 1 to 100, got {folds}", where="import")
        if problem := seed_problem(split_seed):
            raise BadInput(f"--split-seed {problem}", where="import")
        self._check_home()
        root = Path(path)
        scan = scan_layout(root, parse=False)
        problems = list(scan.problems)
        sheet = root / META_SHEET
        meta: dict[str, PersonMeta] = {}
        if sheet.is_file():
            try:
                meta = persons_by_folder(read_meta(sheet), {s.person for s in scan.samples})
            except XaugError as exc:
                problems += exc.lines()
        cache = HashCache(self.home / "cache" / "hashes.sqlite", trust=not rehash)
        warnings_: list[str] = []
        try:
            files, skipped, rewritten = self._hash_and_check(root, scan, cache, problems, lenient, progress,
                                                             warnings_, strict, be, jobs)
        finally:
            cache.close()
        if strict:
            problems += warnings_
        elif warnings_:
            if on_warning is None:
                import warnings

                for w in warnings_:
                    warnings.warn(w, stacklevel=2)
            else:
                for w in warnings_:
                    on_warning(w)
        if problems:
            from xaug.layout import ANNOTATION_PROBLEM

            skippable = sum(1 for p in problems if ANNOTATION_PROBLEM.match(p))
            hint = (f"; fix them, or import with --lenient to skip the {skippable} bad annotation(s) "
                    "(recorded in the manifest)" if skippable and not lenient else "")
            raise BadInput(f"{len(problems)} problem(s) in {root}; nothing was registered{hint}",
                           problems=sorted(problems))
        stats = {"hashed": cache.hashed, "reused": cache.reused}
        train_persons = [s.person for s in scan.samples if s.split == "train"]
        split = self._split(train_persons, meta, folds, split_seed)
        items = []
        for s in scan.samples:
            lab_rel = label_relpath_for(s.relpath)
            img = files[s.relpath]
            image_info = {"path": s.relpath, "sha256": img[1], "size": img[2]}
            label_info = None
            if lab_rel in files:
                label_info = {"path": lab_rel, "sha256": files[lab_rel][1], "size": files[lab_rel][2]}
            fold = split["folds"].get(s.person) if s.split == "train" else None
            items.append(item_entry(image_info, label_info, person=s.person, side=s.side, split=s.split,
                                    fold=fold, provenance={}, meta={}, stored_in=None))
        extra_files = []
        if META_SHEET in files:
            extra_files.append({"path": META_SHEET, "sha256": files[META_SHEET][1], "size": files[META_SHEET][2]})
        manifest = new_manifest(kind="import", items=items, files=extra_files, source=None,
                                spec={"op": "import", "lenient": lenient, "folds": folds}, seed=split_seed,
                                plan_key=None, split=split, skipped=skipped, name=name)
        id = manifest_id(manifest)
        existing = self._existing(name, id)
        if existing is not None:
            return existing, False, stats
        stage_root = self.home / "staging" / f"import-{id[:32]}"
        with held(Path(str(stage_root) + ".lock"), timeout=LOCK_WAIT_S):
            self._copy_in(stage_root / "data", files, rewritten, be, jobs, progress)
            ds, created = self._publish(stage_root, manifest, name)
        return ds, created, stats

    def _split(self, persons: list[str], meta: dict[str, PersonMeta], k: int, seed: int) -> dict[str, Any]:
        """person_folds, cached by its inputs: an unchanged re-import need not import sklearn (~2 s)."""
        people = sorted(set(persons))
        key = sha256_bytes(canonical_json([people, [meta[p].sex if p in meta else None for p in people], k, seed]))
        path = self.home / "cache" / "splits" / f"{key[:32]}.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_bytes())
                if isinstance(cached, dict) and isinstance(cached.get("folds"), dict):
                    return cached
            except (ValueError, UnicodeDecodeError):
                pass  # a damaged cache entry: computed again below
        split = person_folds_for(persons, meta, k, seed)
        atomic_write(path, json.dumps(split).encode())
        return split

    def _hash_and_check(self, root: Path, scan, cache: HashCache, problems: list[str], lenient: bool,
                        progress: bool, warnings_: list[str] | None = None, strict: bool = False,
                        backend: Any = None, jobs: int | None = None):
        """Hash every file (cached when unchanged) and check the ones not checked before.

        Images must be PNG files that decode; labels must parse with known labels, 3+ finite points
        within the image's margin (xaug.layout.OUTSIDE_MARGIN). An image and its label are one task
        (`_check_sample`): a label is checked again when its image changed. The cache stays here:
        this process asks it which files it vouches for, and only samples with a file to read go to
        the backend (threads here, or dask workers); unchanged ones only have their PNG header read
        here. With `lenient`, bad annotations are dropped: the label is rewritten without them and
        they are returned as `skipped`. Image sizes that differ from the most common one or from a
        label's metadata go to `warnings_`.
        Returns ({relpath: (source path or None, sha256, size)}, skipped, rewritten).
        """
        from collections import Counter

        from xaug.store.backends import LocalBackend, get_backend

        be = get_backend(backend)
        warnings_ = [] if warnings_ is None else warnings_
        stat_of: dict[str, os.stat_result] = {}

        def look(rel: str, path: Path) -> _FileCheck:
            try:
                sha, checked, st = cache.trusted(path)
            except OSError as exc:
                return _FileCheck(rel, str(path), None, False, 0, error=exc.strerror or exc.__class__.__name__)
            stat_of[str(path)] = st
            return _FileCheck(rel, str(path), sha, checked, st.st_size)

        tasks = [_SampleCheck(look(s.relpath, s.image_path),
                              look(label_relpath_for(s.relpath), scan.label_files[s.relpath])
                              if s.relpath in scan.label_files else None,
                              recheck_label=lenient or strict, lenient=lenient)
                 for s in scan.samples]
        total = sum(1 + (t.label is not None) for t in tasks) + 1
        bar = _progress(range(total), progress, "checking", total=total)
        ticks = iter(bar)
        threads = jobs or min(8, (os.cpu_count() or 2) * 2)  # reading and decoding release the GIL
        results: list[_SampleResult | None] = [None] * len(tasks)

        def collect(indices: list[int], runner, n_jobs: int | None, remote: bool) -> None:
            if not indices:  # no client to connect, no cluster to start
                return
            for i, res in zip(indices, runner.map(_check_sample, [tasks[i] for i in indices], n_jobs)):
                if remote:
                    _refuse_unseen(root, tasks[i], res)
                results[i] = res
                # into the cache as results arrive: a rerun after a Ctrl-C or a dead worker reuses them
                for f, r in ((tasks[i].image, res.image), (tasks[i].label, res.label)):
                    if r is not None and r.sha is not None:
                        _remember(cache, f, r, stat_of)
                for _ in range(1 + (tasks[i].label is not None)):
                    next(ticks, None)

        if be.name == "local":
            collect(list(range(len(tasks))), be, threads, remote=False)
        else:  # unchanged samples need no worker: only their PNG header is read, here
            collect([i for i, t in enumerate(tasks) if not t.reads], LocalBackend(), threads, remote=False)
            collect([i for i, t in enumerate(tasks) if t.reads], be, jobs, remote=True)

        out: dict[str, tuple[Path | None, str, int]] = {}
        skipped: list[dict] = []
        rewritten: dict[str, bytes] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for task, res in zip(tasks, results):
            img, lab = task.image, task.label
            problems += res.image.problems
            if res.image.sha is not None:
                out[img.rel] = (Path(img.path), res.image.sha, res.image.size)
            if res.hw is not None:
                sizes[img.rel] = res.hw
            if lab is None:
                continue
            problems += res.label.problems
            skipped += res.skipped
            warnings_ += res.warnings
            if res.label.sha is None:
                continue
            if res.rewritten is not None:
                rewritten[lab.rel] = res.rewritten
                out[lab.rel] = (None, sha256_bytes(res.rewritten), len(res.rewritten))
            else:
                out[lab.rel] = (Path(lab.path), res.label.sha, res.label.size)
        sheet = root / META_SHEET
        if sheet.is_file():
            sha, size, _ = cache.digest(sheet.resolve())
            out[META_SHEET] = (sheet.resolve(), sha, size)
        next(ticks, None)
        if hasattr(bar, "close"):
            bar.close()
        if sizes:
            common, _ = Counter(sizes.values()).most_common(1)[0]
            for rel, hw in sorted(sizes.items()):
                if hw != common:
                    warnings_.append(f"{rel}: image is {hw[1]}x{hw[0]} but most images are "
                                     f"{common[1]}x{common[0]}; check it is the right file")
        return out, skipped, rewritten

    def _copy_in(self, data_dir: Path, files: dict[str, tuple[Path | None, str, int]], rewritten: dict[str, bytes],
                 backend: Any, jobs: int | None, progress: bool) -> None:
        """Copy the imported files into a version's staging folder (what an interrupted run copied
        is kept). Local: threads here. dask `shared`: the workers copy; `bytes`: this process copies
        (the workers never write into the store); `auto`: the workers copy where they see the
        store (a probe file), this process copies the rest."""
        import uuid
        from functools import partial

        from xaug.progress import Progress
        from xaug.store.backends import LocalBackend

        for rel in sorted(rewritten):  # lenient: labels without their bad annotations, made here
            if not (data_dir / rel).exists():
                atomic_write(data_dir / rel, rewritten[rel])
        todo = [(str(src), str(data_dir / rel)) for rel, (src, _, _) in sorted(files.items())
                if src is not None and not (data_dir / rel).exists()]
        if not todo:
            return
        threads = jobs or min(8, (os.cpu_count() or 2) * 2)
        storage = getattr(getattr(backend, "choice", None), "storage", "auto")
        with Progress(len(todo), "copying", enabled=progress, unit="file") as bar:
            left = todo
            if backend.name != "local" and storage != "bytes":
                probe = self.home / "staging" / f".xaug-probe-{uuid.uuid4().hex}"
                atomic_write(probe, probe.name.encode())
                try:
                    copied = []
                    for done in backend.map(partial(_copy_if_seen, str(probe)), todo, jobs):
                        copied.append(done)
                        bar.advance(int(done))
                finally:
                    probe.unlink(missing_ok=True)
                left = [job for job, done in zip(todo, copied) if not done]
                if left and storage == "shared":
                    raise BadInput(f"the dask workers do not see the store's folder {self.home}; mount it at the "
                                   "same path on every worker, or use --storage bytes (or auto)",
                                   where="--storage shared")
            for _ in LocalBackend().map(_copy_job, left, threads):
                bar.advance()

    # -- verify and export
    def verify(self, ref: str) -> list[str]:
        """Re-hash every file of a version: one line per missing, changed or extra file.

        Always re-reads every byte (no cache, no size/mtime shortcut), whatever made the version.
        """
        ds = self.open(ref, check_id=False)
        problems: list[str] = []
        if manifest_id(ds.manifest) != ds.id:
            problems.append(f"manifest: content does not match its id {ds.id[:12]}")
        expected: set[Path] = set()
        for f in ds.file_entries():
            try:
                p = ds.file_path(f)
            except BadInput as exc:
                problems.append(f"unsafe: {f.path!r} ({exc.message})")
                continue
            if not f.stored_in:
                expected.add(p)
            if not p.is_file():
                problems.append(f"missing: {f.path}" + (f" (stored in {f.stored_in[:12]})" if f.stored_in else ""))
            elif p.stat().st_size != f.size or sha256_file(p) != f.sha256:
                problems.append(f"changed: {f.path}")
        if ds.root.is_dir():
            for p in sorted(ds.root.rglob("*")):
                if (p.is_file() or p.is_symlink()) and p not in expected:
                    problems.append(f"extra: {p.relative_to(ds.root).as_posix()}")
        return problems

    def export(self, ref: str, out_dir: Path, progress: bool = False) -> tuple[Dataset, int]:
        """Materialise a version as a plain competition-layout folder (atomically).

        Every file is checked against the manifest as it is copied; the destination must be a new
        (or empty) folder outside the store. On any failure nothing is left at the destination.
        """
        ds = self.open(ref)
        out_dir = Path(out_dir)
        where = str(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise BadInput("is a file; give a new folder to export into", where=where)
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise BadInput("folder exists and is not empty; choose a new folder", where=where)
        real_out, real_home = out_dir.resolve(), self.home.resolve()
        if real_out == real_home or real_out.is_relative_to(real_home) or real_home.is_relative_to(real_out):
            raise BadInput("is inside the store (or contains it); export to a folder outside "
                           f"{self.home}", where=where)
        parent = out_dir.resolve().parent
        probe = parent
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise BadInput(f"cannot write in {probe}; choose a folder you can write to", where=where)
        tmp = out_dir.with_name(f".{out_dir.name}.xaug-export")
        shutil.rmtree(tmp, ignore_errors=True)
        n = 0
        entries = list(ds.file_entries())
        try:
            for f in _progress(entries, progress, "exporting"):
                data = ds.read_file(f)
                dst = inside(tmp, f.path, f"{ds.name}: {f.path!r}")
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
                n += 1
            if out_dir.exists():
                out_dir.rmdir()
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ds, n


# ---------------------------------------------------------------- import: the work of one sample

@dataclass(frozen=True)
class _FileCheck:
    """One file to import as the driver's cache saw it: its sha256 when the cache vouches for it
    (None: read and hash it), whether it passed its check before, or why it could not be looked at."""

    rel: str
    path: str
    sha: str | None
    checked: bool
    size: int
    error: str | None = None


@dataclass(frozen=True)
class _SampleCheck:
    """An image and its label (if any): one task of an import, run in any process."""

    image: _FileCheck
    label: _FileCheck | None
    recheck_label: bool  # --lenient or --strict: every label is parsed again
    lenient: bool

    @property
    def reads(self) -> bool:
        """Has a file to read (hash or check), more than a vouched-for image's PNG header."""
        img, lab = self.image, self.label
        if img.error is None and not (img.sha is not None and img.checked):
            return True
        return (lab is not None and lab.error is None
                and (self.recheck_label or not (lab.sha is not None and lab.checked)))


@dataclass(frozen=True)
class _FileResult:
    sha: str | None  # None: could not be read
    size: int
    hashed: bool  # hashed by the task (the cache did not vouch for it)
    problems: list[str]
    mark: bool | None = None  # the cache marks it checked (True), to check again (False), or as it was
    missing: bool = False  # the task found no such file (a dask worker that does not see the folder?)


@dataclass(frozen=True)
class _SampleResult:
    image: _FileResult
    hw: tuple[int, int] | None  # the image's (height, width) when it could be read
    label: _FileResult | None
    skipped: list[dict]
    rewritten: bytes | None  # lenient: the label without its skipped annotations
    warnings: list[str]


def _cannot_read(rel: str, why: str | None, missing: bool = False) -> _FileResult:
    return _FileResult(None, 0, False, [f"{rel}: cannot read ({why}); fix or remove the file"], missing=missing)


def _read_hashed(f: _FileCheck) -> "tuple[bytes, str, int] | _FileResult":
    """A file's bytes with its sha256 and size (the cache's, when it has them; else computed), or
    the one-line result of a file that cannot be read."""
    try:
        data = Path(f.path).read_bytes()
    except OSError as exc:
        return _cannot_read(f.rel, exc.strerror, isinstance(exc, FileNotFoundError))
    return (data, f.sha, f.size) if f.sha is not None else (data, sha256_bytes(data), len(data))


def _check_sample(task: _SampleCheck) -> _SampleResult:
    """Read, hash and check one image and its label: pure (no cache, no store), so it runs in a
    thread here or on a dask worker with the same result. Every problem is one line naming the file."""
    from xaug.layout import annotation_bytes, annotation_doc, decode_image, image_size

    img, hw, changed = task.image, None, False
    if img.error is not None:
        image = _cannot_read(img.rel, img.error)
    elif img.sha is not None and img.checked:  # unchanged and checked before: its size is enough
        try:
            h, w = image_size(img.path)[:2]
            hw = (int(h), int(w))
            image = _FileResult(img.sha, img.size, False, [])
        except BadInput as exc:
            image = _FileResult(img.sha, img.size, False, [f"{img.rel}: {exc.message}"])
        except OSError as exc:
            image = _cannot_read(img.rel, exc.strerror, isinstance(exc, FileNotFoundError))
    else:
        read = _read_hashed(img)
        if isinstance(read, _FileResult):
            image = read
        else:
            data, sha, size = read
            hashed = img.sha is None
            try:  # not a PNG, does not decode, 16-bit, a forged size
                shape = decode_image(data, img.rel).shape
            except BadInput as exc:
                image = _FileResult(sha, size, hashed, [f"{img.rel}: {exc.message}"])
            else:
                hw, changed = (int(shape[0]), int(shape[1])), True
                problem = []
                if not hashed and sha256_bytes(data) != sha:  # changed since the cache saw it
                    problem.append(f"{img.rel}: changed while being imported; import again")
                image = _FileResult(sha, size, hashed, problem, mark=True if not problem else None)
    lab = task.label
    skip: list[dict] = []
    new_bytes, warn = None, []
    label = None
    if lab is not None and lab.error is not None:
        label = _cannot_read(lab.rel, lab.error)
    elif lab is not None and lab.sha is not None and lab.checked and not task.recheck_label and not changed:
        label = _FileResult(lab.sha, lab.size, False, [])
    elif lab is not None:
        read = _read_hashed(lab)
        if isinstance(read, _FileResult):
            label = read
        else:
            data, sha, size = read
            anns, extra, problem, skip = parse_annotation_doc(data, lab.rel, task.lenient, size=hw)
            meta = extra.get("metadata") if isinstance(extra.get("metadata"), dict) else {}
            if hw is not None and "height" in meta and "width" in meta \
                    and (meta.get("height"), meta.get("width")) != hw:
                warn.append(f"{lab.rel}: metadata says {meta.get('width')}x{meta.get('height')} but the image "
                            f"{img.rel} is {hw[1]}x{hw[0]}; fix the label or the image")
            if skip:
                new_bytes = annotation_bytes(annotation_doc(anns, extra))
            # a label checked before that fails now (its image changed) must be checked again next
            # time, even if that image is then unchanged
            ok = not problem and not skip
            label = _FileResult(sha, size, lab.sha is None, problem, mark=ok if ok != lab.checked else None)
    return _SampleResult(image, hw, label, skip, new_bytes, warn)


def _remember(cache: HashCache, f: _FileCheck, r: _FileResult, stat_of: dict[str, os.stat_result]) -> None:
    """What a task learnt about a file, into the driver's hash cache."""
    if r.hashed:
        cache.record(f.path, stat_of[f.path], r.sha, checked=bool(r.mark))
    elif r.mark is not None:
        cache.mark_checked(f.path, r.mark)


def _refuse_unseen(root: Path, task: _SampleCheck, res: _SampleResult) -> None:
    """A file this process sees but a dask worker does not: the folder is not shared (one line)."""
    for f, r in ((task.image, res.image), (task.label, res.label)):
        if f is not None and r is not None and r.missing and os.path.exists(f.path):
            raise BadInput(f"a dask worker cannot read {f.rel}, which this machine sees; the workers must see "
                           f"the folder being imported at the same path ({root})", where="--backend dask")


def _copy_job(job: tuple[str, str]) -> None:
    _atomic_copy(Path(job[0]), Path(job[1]))


def _copy_if_seen(probe: str, job: tuple[str, str]) -> bool:
    """Copy one file into the store if this worker sees the store (its probe file); else leave it."""
    try:
        if Path(probe).read_text() != Path(probe).name:
            return False
    except OSError:
        return False
    _copy_job(job)
    return True


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def person_folds_for(persons: list[str], meta: dict[str, PersonMeta], k: int, seed: int) -> dict[str, Any]:
    from xaug.store.splits import person_folds

    return person_folds(persons, meta, k=k, seed=seed)


def _progress(iterable: Iterable, enabled: bool, what: str, total: int | None = None):
    from xaug.progress import Progress

    return Progress.wrap(iterable, what, enabled=enabled, total=total, unit="file")


# ---------------------------------------------------------------- building derived versions

class Builder:
    """Builds one version in a staging folder keyed by the plan; commit() publishes it atomically."""

    def __init__(self, store: Store, name: str, kind: str, plan_key: str, source: Dataset | None,
                 spec: dict[str, Any], seed: int | None):
        if not re.fullmatch(r"[0-9A-Za-z_-]{8,128}", plan_key or ""):
            raise XaugError(f"plan key must be 8-128 characters of [0-9A-Za-z_-], got {plan_key!r}")
        self.store, self.name, self.kind, self.plan_key = store, name, kind, plan_key
        self.source, self.spec, self.seed = source, spec, seed
        self.stage_root = store.home / "staging" / plan_key
        self.staging = self.stage_root / "data"
        self.staging.mkdir(parents=True, exist_ok=True)
        self._staging_lock = held(Path(str(self.stage_root) + ".lock"), timeout=STAGING_WAIT_S)
        self._refs: dict[str, dict[str, Any]] = {}
        self._persons: dict[str, PersonMeta] | None = None
        self.created = False
        self.dataset: Dataset | None = None
        self.folds, self.split_seed = 5, 0  # used when there is no source to inherit a split from
        self.split: dict[str, Any] | None = None  # without a source: a split to record as given (import)

    def has_item(self, image_relpath: str) -> bool:
        return _record_path(self.staging, image_relpath).is_file()

    def add_item(self, image_relpath: str, image: bytes | Path, label: bytes | None = None, **fields) -> dict:
        return stage_item(self.staging, image_relpath, image, label, **fields)

    def reference(self, ref: Sample | ItemEntry | dict[str, Any]) -> None:
        """Include an item of the source version without copying its bytes."""
        if self.source is None:
            raise XaugError("reference() needs a source dataset")
        rel = ref.relpath if isinstance(ref, (Sample, ItemEntry)) else ref["image"]["path"]
        self._refs[rel] = self.source.entry(rel).referenced_from(self.source.id).to_json()

    def set_persons(self, persons: dict[str, PersonMeta]) -> None:
        self._persons = dict(persons)

    def _records(self) -> list[dict[str, Any]]:
        rec_dir = self.stage_root / "records"
        if not rec_dir.is_dir():
            return []
        return [json.loads(p.read_bytes()) for p in sorted(rec_dir.glob("*.json"))]

    def commit(self) -> Dataset:
        items = {r["image"]["path"]: r for r in self._records()}
        for rel, entry in self._refs.items():
            if rel in items:
                raise XaugError(f"item {rel} is both referenced and written; outputs need new names")
            items[rel] = entry
        files = []
        if self._persons is not None:
            persons = {p: m for p, m in self._persons.items() if any(it["person"] == p for it in items.values())}
            sha, size = SheetCache(self.store.home).write(self.staging / META_SHEET, persons.values())
            files.append({"path": META_SHEET, "sha256": sha, "size": size})
        if self.source is not None:
            split = self.source.split_info
        elif self.split is not None:  # carried over by an import: items keep the folds they were staged with
            split = self.split
        else:  # a source dataset (e.g. synthetic): record its own person-grouped k-fold split
            train_persons = [it["person"] for it in items.values() if it["split"] == "train"]
            split = person_folds_for(train_persons, self._persons or {}, self.folds, self.split_seed)
            for it in items.values():
                it["fold"] = split["folds"].get(it["person"]) if it["split"] == "train" else None
        source = {"id": self.source.id, "name": self.source.name} if self.source is not None else None
        manifest = new_manifest(kind=self.kind, items=list(items.values()), files=files, source=source,
                                spec=self.spec, seed=self.seed, plan_key=self.plan_key, split=split,
                                skipped=[], name=self.name)
        self.dataset, self.created = self.store._publish(self.stage_root, manifest, self.name)
        return self.dataset


