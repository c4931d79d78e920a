"""Compare two versions, as `dvc diff` compares commits: items added, removed, changed (same
image path, other bytes) and unchanged, plus the lineage that links the two versions.

Items are matched by their path in the competition layout. An item whose image and label bytes
are the same in both versions is unchanged even when one version references the other's bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xaug.api import Dataset

if TYPE_CHECKING:
    from xaug.store.manifest import FileEntry


@dataclass
class Step:
    """One derivation: `name` was made from its source by `kind` with `spec` and `seed`."""

    name: str
    id: str
    kind: str
    op: str | None
    seed: int | None
    spec: dict[str, Any]

    def describe(self) -> str:
        """`rotate_v2 (1a2b3c4d5e6f): rotate(angle_range=[-30.0, 30.0], pivot=wrist, ...), seed 1`"""
        steps = self.spec.get("steps") if isinstance(self.spec, dict) else None
        if isinstance(steps, list) and steps:
            parts = []
            for st in steps:
                if not isinstance(st, dict):
                    continue
                args = ", ".join(f"{k}={v}" for k, v in st.items() if k != "op" and v not in (None, False, [], {}))
                parts.append(f"{st.get('op', '?')}({args[:80]}{'...' if len(args) > 80 else ''})")
            what = " + ".join(parts)
            if self.spec.get("include_source"):
                what += " + the source items"
        else:
            what = self.op or self.kind
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"{self.name} ({self.id[:12]}): {what}{seed}"


@dataclass
class VersionDiff:
    a: Dataset
    b: Dataset
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)     # {"path", "what": ["image", "label"]}
    unchanged: list[str] = field(default_factory=list)
    metadata_changed: list[dict[str, Any]] = field(default_factory=list)  # same bytes, other fields
    files: dict[str, list[str]] = field(default_factory=dict)       # other files (meta_data.xlsx)
    relation: str = "unrelated"
    steps: list[Step] = field(default_factory=list)
    common: dict[str, str] | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                "unchanged": len(self.unchanged), "metadata_changed": len(self.metadata_changed)}

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.metadata_changed
                    or self.files.get("added") or self.files.get("removed") or self.files.get("changed"))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": {"name": self.a.name, "id": self.a.id}, "b": {"name": self.b.name, "id": self.b.id},
            "counts": self.counts, "relation": self.relation,
            "lineage": [{"name": s.name, "id": s.id, "kind": s.kind, "op": s.op, "seed": s.seed, "spec": s.spec}
                        for s in self.steps],
            "common_ancestor": self.common,
            "added": self.added, "removed": self.removed, "changed": self.changed,
            "unchanged": self.unchanged, "metadata_changed": self.metadata_changed, "files": self.files,
        }


_FIELDS = ("person", "side", "split", "fold", "meta", "provenance")


def _sha(entry: FileEntry | None) -> str | None:
    return entry.sha256 if entry is not None else None


def diff_versions(a: Dataset, b: Dataset) -> VersionDiff:
    """What changed from version `a` to version `b`."""
    for arg, v in (("a", a), ("b", b)):
        if not isinstance(v, Dataset):
            from xaug.errors import BadInput

            raise BadInput(f"diff_versions() takes two xaug.Dataset (xaug.open(name)); {arg} is "
                           f"{type(v).__name__} {str(v)[:60]!r}")
    d = VersionDiff(a, b)
    items_a = {e.relpath: e for e in a.version.entries}
    items_b = {e.relpath: e for e in b.version.entries}
    for path in sorted(items_a.keys() | items_b.keys()):
        x, y = items_a.get(path), items_b.get(path)
        if x is None:
            d.added.append(path)
        elif y is None:
            d.removed.append(path)
        else:
            what = [k for k in ("image", "label") if _sha(getattr(x, k)) != _sha(getattr(y, k))]
            if what:
                d.changed.append({"path": path, "what": what})
            else:
                d.unchanged.append(path)
                fields = [k for k in _FIELDS if (getattr(x, k) or None) != (getattr(y, k) or None)]
                if fields:
                    d.metadata_changed.append({"path": path, "fields": fields})
    files_a = {f.path: f.sha256 for f in a.version.files}
    files_b = {f.path: f.sha256 for f in b.version.files}
    d.files = {"added": sorted(files_b.keys() - files_a.keys()), "removed": sorted(files_a.keys() - files_b.keys()),
               "changed": sorted(p for p in files_a.keys() & files_b.keys() if files_a[p] != files_b[p])}
    _relate(d)
    return d


def _step(ds: Dataset, v) -> Step:
    store = ds.version.store
    m = store.open(v.id).manifest
    spec = m.get("spec") or {}
    op = None
    if isinstance(spec, dict):
        steps = spec.get("steps")
        ops = [st.get("op") for st in steps if isinstance(st, dict)] if isinstance(steps, list) else []
        op = "+".join(str(o) for o in ops if o) or spec.get("op")
    return Step(v.name, v.id, v.kind, op, m.get("seed"), spec)


def _relate(d: VersionDiff) -> None:
    la, lb = d.a.lineage, d.b.lineage
    ids_a, ids_b = [v.id for v in la], [v.id for v in lb]
    if d.a.id == d.b.id:
        d.relation = "same version"
    elif d.a.id in ids_b:  # b derives from a: the steps from a to b
        k = ids_b.index(d.a.id)
        d.relation = f"{d.b.name} derives from {d.a.name} in {k} step{'s' if k > 1 else ''}"
        d.steps = [_step(d.b, v) for v in reversed(lb[:k])]
    elif d.b.id in ids_a:
        k = ids_a.index(d.b.id)
        d.relation = f"{d.a.name} derives from {d.b.name} in {k} step{'s' if k > 1 else ''}"
        d.steps = [_step(d.a, v) for v in reversed(la[:k])]
    else:
        common = next((v for v in la if v.id in ids_b), None)
        if common is not None:
            d.common = {"name": common.name, "id": common.id}
            d.relation = f"both derive from {common.name}"
            d.steps = ([_step(d.a, v) for v in reversed(la[:ids_a.index(common.id)])]
                       + [_step(d.b, v) for v in reversed(lb[:ids_b.index(common.id)])])
        else:
            d.relation = "unrelated (no common source)"
