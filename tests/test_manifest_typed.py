"""Manifest items are typed outside the store: code reads `Dataset.entries` / `entry()` /
`select()` (`ItemEntry`, `FileEntry`), never the manifest's JSON items as dicts indexed by string.

Read from the sources (like test_imports.py): only `xaug/store/` works on the JSON form (it
writes, hashes and checks it). The checks are precise on purpose: they look for what only a
manifest item dict has (an item's `image`/`label` file entry, the `stored_in` key, a loop over a
version's raw `items`), so other dict code (COCO records, annotation JSON, reports) passes.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("xaug", "trainer", "benchmarks")
STORE = ROOT / "xaug" / "store"

FILE_KEYS = {"image", "label"}          # an item's file entries
FILE_FIELDS = {"path", "sha256", "size"}  # a file entry's fields
MANIFEST_ONLY_KEYS = {"stored_in"}       # no other JSON of the project has it


def _key(node: ast.AST) -> str | None:
    """The string key of `x["key"]` or `x.get("key", ...)`, else None."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
            and isinstance(node.slice.value, str):
        return node.slice.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def _keyed_object(node: ast.AST) -> ast.AST:
    """What `x["key"]` / `x.get("key")` indexes."""
    return node.value if isinstance(node, ast.Subscript) else node.func.value


def _is_file_entry_dict(node: ast.AST) -> bool:
    """`it["image"]`, `it.get("label")` or `(it.get("label") or {})`: an item's file entry as a dict."""
    if isinstance(node, ast.BoolOp):
        return any(_is_file_entry_dict(v) for v in node.values)
    return _key(node) in FILE_KEYS


def _is_manifest(node: ast.AST) -> bool:
    """`manifest` or `ds.manifest`."""
    return isinstance(node, ast.Name) and node.id == "manifest" \
        or isinstance(node, ast.Attribute) and node.attr == "manifest"


def _raw_items(node: ast.AST) -> bool:
    """A version's manifest items as JSON: `ds.items` (an attribute, not the API's `items()` call)
    or `manifest["items"]`."""
    if isinstance(node, ast.Attribute) and node.attr == "items":
        return True
    return _key(node) == "items" and _is_manifest(_keyed_object(node))


def _is_position(node: ast.AST) -> bool:
    """`[0]`, `[-1]` or `[a:b]`: a list position, not a dict key."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Slice) or isinstance(node, ast.Constant) and type(node.value) is int


def _names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def violations(source: str, where: str = "<src>") -> list[str]:
    """One line per place that reads a manifest item as a dict."""
    tree = ast.parse(source)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    # img = it["image"]; ... img["path"]: a name that holds an item's file entry dict
    file_dicts = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) and _is_file_entry_dict(n.value)
                  for t in n.targets if isinstance(t, ast.Name)}
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        key = _key(node)
        if key is None:
            if isinstance(node, ast.Subscript) and _raw_items(node.value) and id(node.value) not in called \
                    and _is_position(node.slice) \
                    and not (isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name)
                             and node.value.value.id == "self"):
                flag(node, "indexes a version's raw `items` (use `entries`)")
            continue
        obj = _keyed_object(node)
        if key in FILE_FIELDS and (_is_file_entry_dict(obj) or isinstance(obj, ast.Name) and obj.id in file_dicts):
            flag(node, f"reads an item's file entry as a dict (use `entry.image.{key}` / `entry.label`)")
        elif key in MANIFEST_ONLY_KEYS:
            flag(node, f"reads {key!r} of a manifest dict (use `entry.{key}`)")
        elif key in ("items", "files") and _is_manifest(obj):
            flag(node, f"reads the manifest's {key!r} (use `Dataset.entries` / `Dataset.files`)")
        elif isinstance(obj, ast.Call) and isinstance(obj.func, ast.Attribute) and obj.func.attr == "item":
            flag(node, "indexes `Dataset.item(...)` as a dict (use `Dataset.entry(...)`)")

    # for it in ds.items: it["person"] ... (loops and comprehensions over the raw items)
    loops: list[tuple[ast.AST, list[ast.AST]]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)) and _raw_items(node.iter) and id(node.iter) not in called:
            loops.append((node.target, node.body))
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for gen in node.generators:
                if _raw_items(gen.iter) and id(gen.iter) not in called:
                    body = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
                    loops.append((gen.target, body + list(gen.ifs)))
    for target, body in loops:
        names = _names(target)
        for part in body:
            for node in ast.walk(part):
                if _key(node) is not None and isinstance(_keyed_object(node), ast.Name) \
                        and _keyed_object(node).id in names:
                    flag(node, f"reads {_key(node)!r} of a raw manifest item (loop over `entries` instead)")
    return sorted(set(found), key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def scanned_files() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not path.is_relative_to(STORE):
                out.append(path)
    return out


def test_no_module_outside_the_store_reads_manifest_items_as_dicts():
    found = []
    for path in scanned_files():
        found += violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not found, "manifest items read as dicts outside xaug/store/:\n" + "\n".join(found)


def test_the_check_finds_dict_reads_of_manifest_items():
    bad = '''
paths = {it["image"]["path"]: it for it in ds.items}
size = (it.get("label") or {}).get("size")
held = it.get("stored_in")
n = sum(1 for it in ds.items if it["split"] == "train")
for it in ds.version.items:
    print(it["person"])
first = ds.items[-1]
rows = ds.manifest["items"]
sheet = ds.manifest.get("files", [])
sha = ds.item(rel)["image"]
lab = it.get("label")
h = lab["sha256"]
'''
    lines = {int(v.split(":")[1]) for v in violations(bad)}
    assert lines == set(range(2, 12)) - {6} | {13}, violations(bad)


def test_the_check_leaves_other_dict_code_alone():
    good = '''
for it in ds.items(split="train"):       # the API's typed items
    print(it.person, it.image_file.sha256)
n = sum(len(v) for v in job.items.values())
first = self.items[index]
rows = job.items[split]
e = {"rel": rel, "person": p, "split": s, "meta": {}}
if e["split"] == "train" and e["person"]:
    pass
anns.append(Annotation(raw["label"], pts))
img, mask = res["image"], res["mask"]
entries = {e.relpath: e for e in ds.entries}
sha = ds.entry(rel).image.sha256
'''
    assert violations(good) == []
