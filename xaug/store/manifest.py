"""Manifests: what a version holds and how it was made; its canonical hash is the version id.

Everything in the manifest is hashed except the `info` block (creation time, the name it was
first registered under, library versions), so the id depends only on content and recipe: not
on file order, absolute paths, timestamps or worker count.
"""
from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from xaug.store.hashing import canonical_json, sha256_bytes

FORMAT = "xaug-manifest/1"
NOT_HASHED = ("info",)


def environment() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    env = {"python": platform.python_version()}
    for pkg in ("xaug", "numpy", "opencv-python-headless", "shapely", "scikit-image", "albumentations",
                "pydantic", "joblib"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return env


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: its path inside the layout, sha256 and size in bytes."""

    path: str
    sha256: str
    size: int
    stored_in: str | None = None   # the version id whose folder holds the bytes (None: this one)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], stored_in: str | None = None) -> "FileEntry":
        return cls(str(data["path"]), str(data["sha256"]), int(data["size"]), stored_in or data.get("stored_in"))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class ItemEntry:
    """One item of a version's manifest, typed: its image and label files, whose it is, where it
    sits in the split, how it was made (`provenance`) and what is known of it (`meta`).

    `Dataset.entries` gives these; `to_json()` is exactly the manifest's JSON (the id is unchanged).

    >>> e = ItemEntry.from_json({"image": {"path": "train/DCM/ID001/a_R.png", "sha256": "ab", "size": 3},
    ...                          "label": None, "person": "ID001", "side": "R", "split": "train",
    ...                          "fold": 2, "provenance": {}, "meta": {}, "stored_in": None})
    >>> e.relpath, e.fold, e.image.size
    ('train/DCM/ID001/a_R.png', 2, 3)
    """

    image: FileEntry
    label: FileEntry | None
    person: str
    split: str
    side: str | None = None
    fold: int | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    stored_in: str | None = None

    @property
    def relpath(self) -> str:
        return self.image.path

    def files(self) -> tuple[FileEntry, ...]:
        return (self.image,) if self.label is None else (self.image, self.label)

    def role(self, val_fold: int | None) -> str:
        """'val' for a train item in the validation fold `val_fold`, else its split ('train'/'test').

        >>> e = ItemEntry(FileEntry("train/DCM/ID001/a_R.png", "ab", 3), None, "ID001", "train", fold=2)
        >>> e.role(2), e.role(0), e.role(None)
        ('val', 'train', 'train')
        """
        if self.split == "train" and val_fold is not None and self.fold == val_fold:
            return "val"
        return self.split

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ItemEntry":
        held = data.get("stored_in")
        label = data.get("label")
        return cls(FileEntry.from_json(data["image"], held), FileEntry.from_json(label, held) if label else None,
                   person=data["person"], split=data["split"], side=data.get("side"), fold=data.get("fold"),
                   provenance=dict(data.get("provenance") or {}), meta=dict(data.get("meta") or {}),
                   stored_in=held)

    def to_json(self) -> dict[str, Any]:
        return item_entry(self.image.to_json(), self.label.to_json() if self.label else None, person=self.person,
                          side=self.side, split=self.split, fold=self.fold, provenance=dict(self.provenance),
                          meta=dict(self.meta), stored_in=self.stored_in)

    def referenced_from(self, holder: str) -> "ItemEntry":
        """This item listed by another version without copying: its bytes stay in `holder`."""
        held = self.stored_in or holder
        return replace(self, image=replace(self.image, stored_in=held),
                       label=replace(self.label, stored_in=held) if self.label else None, stored_in=held)


def item_entry(image: dict[str, Any], label: dict[str, Any] | None, *, person: str, side: str | None,
               split: str, fold: int | None, provenance: dict[str, Any], meta: dict[str, Any],
               stored_in: str | None) -> dict[str, Any]:
    return {"image": image, "label": label, "person": person, "side": side, "split": split,
            "fold": fold, "provenance": provenance, "meta": meta, "stored_in": stored_in}


def new_manifest(*, kind: str, items: list[dict[str, Any]], files: list[dict[str, Any]],
                 source: dict[str, Any] | None, spec: dict[str, Any], seed: int | None,
                 plan_key: str | None, split: dict[str, Any] | None, skipped: list[dict[str, Any]],
                 name: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": kind,
        "source": {"id": source["id"]} if source else None,
        "spec": spec,
        "seed": seed,
        "plan_key": plan_key,
        "split": split,
        "files": sorted(files, key=lambda f: f["path"]),
        "items": sorted(items, key=lambda it: it["image"]["path"]),
        "skipped": sorted(skipped, key=lambda s: (s["file"], s["annotation"])),
        "info": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "name": name,
                 "source_name": source.get("name") if source else None, "environment": environment()},
    }


def manifest_id(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the manifest without its `info` block."""
    body = {k: v for k, v in manifest.items() if k not in NOT_HASHED}
    return sha256_bytes(canonical_json(body))
