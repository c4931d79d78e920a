"""The public Python API: open a dataset version and read its items, images, polygons and masks.

    import xaug
    ds = xaug.open("mosaic_v3")              # name (newest), name_vN or id prefix, as the CLI
    for item in ds.items(split="train"):     # "train" | "val" | "test" | None (everything)
        img = item.image()                   # (H, W) uint8, bytes checked against the manifest
        polys = item.annotations()           # Polygon(label, points (N, 2) float64)
        masks = item.masks(size=512)         # (29, 512, 512) bool, the evaluator's rasteriser

Every read checks the bytes against the sha256 the manifest records: a changed file is an
error naming the file and `xaug verify NAME`, never silently used data. Nothing here imports
torch; `xaug.torch.SegmentationDataset` wraps a `Dataset` for PyTorch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np

from xaug.classes import CLASS_INDEX
from xaug.errors import BadInput

if TYPE_CHECKING:
    from xaug.store.manifest import FileEntry, ItemEntry

__all__ = ["open", "datasets", "Dataset", "Item", "Polygon", "FileRef", "VersionInfo", "resolve_home", "SPLITS"]

SPLITS = ("train", "val", "test")
ImageMode = Literal["gray", "rgb", "stored"]


def resolve_home(home: Path | str | None = None) -> Path:
    """The store folder: `home`, else `$XAUG_HOME`, else `./xaug-data` (as the CLI's --home)."""
    if home is not None:
        if not isinstance(home, (str, os.PathLike)):
            raise BadInput(f"home must be the store folder (a str or Path), not {type(home).__name__}")
        return Path(home)
    env = os.environ.get("XAUG_HOME")
    return Path(env) if env else Path("xaug-data")


def parse_size(size: Any, what: str = "size") -> tuple[int, int] | None:
    """`None`, an int S (S x S) or a (height, width) pair of ints -> (h, w), positive; anything
    else (a str, a float, a 1- or 3-element tuple, a bool) is BadInput naming `what`."""
    if size is None:
        return None
    ok = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))  # noqa: E731
    if ok(size):
        hw = (int(size), int(size))
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(ok(v) for v in size):
        hw = (int(size[0]), int(size[1]))
    else:
        raise BadInput(f"{what} must be an int or a (height, width) pair of ints, not {size!r}")
    if min(hw) < 1:
        raise BadInput(f"{what} must be positive, got {size!r}")
    return hw


# ---------------------------------------------------------------- reading with a hash check

@dataclass(frozen=True)
class FileRef:
    """One stored file: where its bytes are, its path inside the layout, and the manifest's hash."""

    path: Path       # absolute path of the bytes (own, or in the version that stores them)
    relpath: str     # path inside the competition layout, e.g. "train/DCM/ID001/x_R.png"
    sha256: str
    size: int

    def read(self, dataset: str) -> bytes:
        """The file's bytes, checked against the manifest; BadInput naming the file if they differ."""
        return read_verified(self.path, self.sha256, self.size, dataset, self.relpath)


def read_verified(path: Path, sha256: str, size: int, dataset: str, relpath: str | None = None) -> bytes:
    """Read a stored file and check its bytes against the manifest's size and sha256 (the store's
    own check: a missing or changed file is BadInput naming it and `xaug verify NAME`)."""
    from xaug.store import read_verified as store_read_verified

    return store_read_verified(path, sha256, where=relpath or str(path), name=dataset, size=size)


def decode_png(data: bytes, where: str) -> np.ndarray:
    """Decode 8-bit PNG bytes as stored (gray, or 3/4 channels in OpenCV's BGR order)."""
    from xaug.layout import decode_image

    return decode_image(data, where)


def to_mode(img: np.ndarray, mode: ImageMode) -> np.ndarray:
    """An image as stored -> "gray" (H, W), "rgb" (H, W, 3) or "stored" (unchanged)."""
    import cv2

    if mode == "stored":
        return img
    if mode == "gray":
        if img.ndim == 2:
            return img
        if img.shape[2] == 1:
            return np.ascontiguousarray(img[..., 0])
        return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2GRAY)
    if mode == "rgb":
        if img.ndim == 2 or img.shape[2] == 1:
            return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
        return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_BGR2RGB)
    raise BadInput(f"image mode must be 'gray', 'rgb' or 'stored', not {mode!r}")


# ---------------------------------------------------------------- items

@dataclass(frozen=True, eq=False)
class Polygon:
    """One labelled closed ring of an item: `points` is a read-only (N, 2) float64 array, x first.

    `extra` holds the annotation JSON's other keys (id, type, attributes) verbatim.
    """

    label: str
    points: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def class_index(self) -> int:
        """Channel of this label in the 29-class masks (`xaug.classes.CLASSES` order)."""
        return CLASS_INDEX[self.label]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Polygon):
            return NotImplemented
        return self.label == other.label and self.extra == other.extra and np.array_equal(self.points, other.points)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Item:
    """One image of a dataset version with its metadata; reads are checked against the manifest.

    path:       the image's path inside the competition layout ("train/DCM/ID001/x_R.png")
    split:      "train", "val" (the train split's validation fold) or "test"
    layout_split: the folder it lives in: "train" or "test"
    fold:       the person's k-fold index (train split), else None
    meta:       what the store recorded about the item (edge cases, wrist_rotated, pose, ...)
    provenance: how it was made (source item and exact parameters); {} for imported items
    """

    dataset: str                 # the version's name, e.g. "mosaic_v3"
    dataset_id: str
    path: str
    person: str
    side: str | None
    split: str
    layout_split: str
    fold: int | None
    image_file: FileRef
    label_file: FileRef | None
    meta: dict[str, Any]
    provenance: dict[str, Any]
    stored_in: str | None = None  # id of the version that holds the bytes, when referenced

    def __hash__(self) -> int:
        return hash((self.dataset_id, self.path))

    def __repr__(self) -> str:
        return (f"Item({self.path!r}, dataset={self.dataset!r}, person={self.person!r}, "
                f"side={self.side!r}, split={self.split!r}, fold={self.fold!r})")

    @property
    def name(self) -> str:
        """The image file name ("image1661130828152_R.png")."""
        return Path(self.path).name

    @property
    def stem(self) -> str:
        return Path(self.path).stem

    @property
    def image_path(self) -> Path:
        """Absolute path of the PNG bytes in the store (read them with `image()`, which checks them)."""
        return self.image_file.path

    @property
    def has_labels(self) -> bool:
        return self.label_file is not None

    @cached_property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image, from the PNG header."""
        from xaug.layout import image_size

        try:
            h, w, _ = image_size(self.image_file.path)
        except OSError:
            self.image_bytes()  # raises the store's one-line error (missing, unreadable)
            raise
        return h, w

    def image_bytes(self) -> bytes:
        """The PNG's bytes, checked against the manifest's sha256."""
        return self.image_file.read(self.dataset)

    def image(self, mode: ImageMode = "gray") -> np.ndarray:
        """The image as uint8: "gray" (H, W), "rgb" (H, W, 3), or "stored" (as decoded by OpenCV)."""
        img = to_mode(decode_png(self.image_bytes(), self.path), mode)
        # the size from the pixels, so `size` needs no second read of the file
        self.__dict__.setdefault("size", tuple(int(v) for v in img.shape[:2]))
        return img

    def annotations(self) -> tuple[Polygon, ...]:
        """The labelled polygons in file order ((); an item without a label file has none)."""
        return tuple(Polygon(a.label, a.points, a.extra) for a in self._raw_annotations()[0])

    def _raw_annotations(self):
        from xaug.layout import parse_annotation_doc

        if self.label_file is None:
            return [], {}
        data = self.label_file.read(self.dataset)
        anns, extra, problems, _ = parse_annotation_doc(data, self.label_file.relpath)
        if problems:
            raise BadInput(problems[0] + f"; run `xaug verify {self.dataset}`", problems=problems[1:])
        out = []
        for a in anns:
            pts = np.asarray(a.points, np.float64).reshape(-1, 2)
            pts.setflags(write=False)
            out.append(type(a)(a.label, pts, a.extra))
        return out, extra

    def masks(self, size: int | tuple[int, int] | None = None) -> np.ndarray:
        """(29, H, W) bool masks in class order, rasterised as the evaluator does (overlaps kept).

        `size` (an int for a square, or (height, width)) scales the polygons to that size first,
        as the trainer does; None keeps the image's own size.
        """
        from xaug.raster import class_masks

        anns, _ = self._raw_annotations()
        h, w = self.size
        if size is None:
            out_hw = (h, w)
        else:
            out_hw = parse_size(size, "mask size")
            if out_hw != (h, w):
                scale = np.array([out_hw[1] / w, out_hw[0] / h])
                anns = [a.with_points(np.asarray(a.points, np.float64) * scale) for a in anns]
        return class_masks(anns, out_hw).view(bool)

    def to_sample(self, load: bool = True):
        """The item as the library's `xaug.model.Sample` (annotations loaded and checked)."""
        from xaug.model import Annotation, Sample

        s = Sample(relpath=self.path, image_path=self.image_file.path, person=self.person,
                   split=self.layout_split, side=self.side, meta=dict(self.meta),
                   provenance=dict(self.provenance), fold=self.fold)
        if load and self.label_file is not None:
            anns, extra = self._raw_annotations()
            s.annotations = [Annotation(a.label, np.rint(a.points).astype(np.int64), dict(a.extra)) for a in anns]
            s.doc_extra = extra
        return s


# ---------------------------------------------------------------- datasets

@dataclass(frozen=True)
class VersionInfo:
    """One step of a lineage: a version's name, id and kind."""

    name: str
    id: str
    kind: str


class Dataset:
    """One dataset version, read-only: its identity, recipe, lineage and items.

    `len(ds)`, `for item in ds`, `ds["<image stem>"]` (or file name, layout path, int index).
    """

    def __init__(self, version, store):
        self._version = version   # xaug.store.Dataset
        self._store = store       # xaug.store.Store
        self._items: list[Item] | None = None
        self._by_key: dict[str, Item] | None = None

    def __repr__(self) -> str:
        return f"xaug.Dataset({self.name!r}, id={self.id[:12]}, items={len(self)})"

    # -- identity and recipe
    @property
    def id(self) -> str:
        """The manifest hash: the version's identity."""
        return self._version.id

    @property
    def name(self) -> str:
        """`<name>_v<N>`."""
        return self._version.name

    @property
    def kind(self) -> str:
        """"synth", "import", "rotate", "mosaic", "pipeline", ..."""
        return self._version.kind

    @property
    def spec(self) -> dict[str, Any]:
        """The resolved spec the version was made from (a copy)."""
        import copy

        return copy.deepcopy(self._version.manifest.get("spec") or {})

    @property
    def seed(self) -> int | None:
        return self._version.manifest.get("seed")

    @property
    def created(self) -> str | None:
        return (self._version.manifest.get("info") or {}).get("created")

    @property
    def source(self) -> VersionInfo | None:
        """The version this one derives from, if any."""
        chain = self.lineage
        return chain[1] if len(chain) > 1 else None

    @property
    def lineage(self) -> tuple[VersionInfo, ...]:
        """This version, its source, its source's source, ... (newest first)."""
        return tuple(VersionInfo(d.name, d.id, d.kind) for d in self._store.lineage(self._version))

    @property
    def split_info(self) -> dict[str, Any] | None:
        """The person-grouped k-fold split: method, k, seed, val_fold, folds {person: fold}."""
        import copy

        return copy.deepcopy(self._version.split_info)

    @property
    def val_fold(self) -> int | None:
        return self._version.val_fold

    @property
    def persons(self) -> dict[str, Any]:
        """{person: PersonMeta} from the version's meta_data.xlsx ({} when it has none)."""
        return dict(self._version.persons)

    @property
    def home(self) -> Path:
        """The store folder this version was opened from."""
        return self._store.home

    @property
    def version(self):
        """The store's own `xaug.store.Dataset` (manifest, file paths) for lower-level work."""
        return self._version

    # -- items
    def _all(self) -> list[Item]:
        if self._items is None:
            self._items = [self._item(e) for e in self._version.entries]
        return self._items

    def _file(self, f: FileEntry) -> FileRef:
        return FileRef(self._version.file_path(f), f.path, f.sha256, f.size)

    def _item(self, e: ItemEntry) -> Item:
        """The public Item of one typed manifest entry (`xaug.store.ItemEntry`)."""
        v = self._version
        return Item(
            dataset=v.name, dataset_id=v.id, path=e.relpath, person=e.person, side=e.side,
            split=e.role(v.val_fold), layout_split=e.split, fold=e.fold,
            image_file=self._file(e.image), label_file=self._file(e.label) if e.label is not None else None,
            meta=dict(e.meta), provenance=dict(e.provenance), stored_in=e.stored_in)

    def items(self, split: str | None = None, fold: int | None = None) -> list[Item]:
        """Items in manifest order (sorted by path), optionally filtered.

        split: "train" (the train split without its validation fold), "val" (the validation
               fold), "test", or None for every item.
        fold:  only items of this k-fold index (train split).
        """
        if split is not None and split not in SPLITS:
            raise BadInput(f"split must be one of {', '.join(SPLITS)} or None, not {split!r}")
        if fold is not None:
            k = (self._version.split_info or {}).get("k")
            if not isinstance(fold, (int, np.integer)) or isinstance(fold, bool) or fold < 0 or (k is not None and fold >= k):
                raise BadInput(f"fold must be an integer from 0 to {(k or 1) - 1} for {self.name}, not {fold!r}")
        return [it for it in self._all()
                if (split is None or it.split == split) and (fold is None or it.fold == fold)]

    def __len__(self) -> int:
        return len(self._version.entries)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._all())

    def __getitem__(self, key: str | int) -> Item:
        """An item by image stem, file name, layout path (str or Path), or position (a slice: a list)."""
        if isinstance(key, (int, np.integer)):
            items = self._all()
            if not -len(items) <= key < len(items):
                raise IndexError(f"item index {key} out of range for {self.name} ({len(items)} items)")
            return items[key]
        if isinstance(key, slice):
            return self._all()[key]  # type: ignore[return-value]
        if isinstance(key, os.PathLike):
            key = Path(key).as_posix()
        if not isinstance(key, str):
            raise TypeError(f"an item of {self.name} is looked up by image stem, file name, layout path "
                            f"or int index, not {type(key).__name__}; use ds.items(...) to filter")
        if self._by_key is None:
            by: dict[str, Item] = {}
            for it in self._all():
                for k in (it.stem, it.name):
                    by.setdefault(k, it)
            by.update({it.path: it for it in self._all()})
            self._by_key = by
        if key in self._by_key:
            return self._by_key[key]
        import difflib

        close = difflib.get_close_matches(str(key), [it.stem for it in self._all()], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise KeyError(f"no item {key!r} in {self.name}{hint}")

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return False
        return True

    def counts(self) -> dict[str, int]:
        """Number of items per split ("train", "val", "test")."""
        out = {s: 0 for s in SPLITS}
        for it in self._all():
            out[it.split] = out.get(it.split, 0) + 1
        return out


def open(ref: str, home: Path | str | None = None) -> Dataset:  # noqa: A001 - the public name
    """Open a version by name (newest), `name_vN` or a unique id prefix, as the CLI resolves it."""
    from xaug.store import Store

    if isinstance(ref, Dataset):  # already open: the same version, from its own store unless `home`
        home = ref.home if home is None else home
        ref = ref.id
    elif isinstance(ref, os.PathLike):
        ref = os.fspath(ref)
    if not isinstance(ref, str):
        raise BadInput(f"open() takes a dataset name, name_vN or id prefix (a str), not {type(ref).__name__}")
    store = Store(resolve_home(home))
    return Dataset(store.open(ref), store)


def datasets(home: Path | str | None = None) -> list[Dataset]:
    """Every version in the store, by name then version number."""
    from xaug.store import Store

    store = Store(resolve_home(home))
    return [Dataset(v, store) for v in store.datasets()]

