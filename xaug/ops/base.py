"""What every op is made of: a pydantic Spec, a random `plan` and a pure `apply`; the registry.

An op is a class registered under a name::

    @register_op("rotate")
    class Rotate(OpDef):
        Spec = RotateSpec
        def plan(self, spec, sources, rng_for) -> list[ItemPlan]: ...   # all randomness here
        def apply(self, plan, load) -> (image, annotations, provenance): ...  # pure

`plan` sees only light SourceInfo records (no pixels) and draws every random parameter from
the generator of the output item it is planning; `apply` turns one ItemPlan into pixels and
polygons with no randomness, so any worker produces the same bytes.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar

import numpy as np
from pydantic import BaseModel, Field

from xaug.errors import XaugError
from xaug.model import Annotation

# load(relpath) -> (image as read by xaug.layout.read_image, annotations)
Loader = Callable[[str], "tuple[np.ndarray, list[Annotation]]"]
RngFor = Callable[[int], np.random.Generator]


def min_area_field(default: float) -> Any:
    """The `min_area` field every op that clips polygons has (one description, one range)."""
    return Field(default, ge=0, le=1e9, allow_inf_nan=False,
                 description="drop the parts clipping cut off that are smaller than this (px^2); whole polygons stay")


@dataclass(frozen=True)
class SourceInfo:
    """A candidate source item, without pixels: where it is, whose it is and its size."""

    relpath: str
    person: str
    side: str | None
    split: str
    height: int
    width: int
    fold: int | None = None

    @property
    def stem(self) -> str:
        return self.relpath.rsplit("/", 1)[-1].rsplit(".", 1)[0]


@dataclass
class ItemPlan:
    """One output item, fully decided: its name and place, its source items and its parameters.

    `stem` is the complete output file stem (side suffix `_R`/`_L` kept last); `sources` are
    relpaths of source items; `params` is JSON-able and holds everything `apply` needs.
    """

    stem: str
    person: str
    side: str | None
    split: str
    sources: list[str]
    params: dict[str, Any]
    fold: int | None = None
    op: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ItemPlan":
        return cls(**data)


class OpDef:
    """Base class of a registered op; subclasses set `Spec` and implement `plan` and `apply`."""

    name: ClassVar[str] = ""
    Spec: ClassVar[type[BaseModel]]

    def plan(self, spec: BaseModel, sources: list[SourceInfo], rng_for: RngFor) -> list[ItemPlan]:
        raise NotImplementedError

    def apply(self, plan: ItemPlan, load: Loader) -> tuple[np.ndarray, list[Annotation], dict[str, Any]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<op {self.name}>"


_REGISTRY: dict[str, OpDef] = {}


def register_op(name: str) -> Callable[[type[OpDef]], type[OpDef]]:
    """Class decorator: register an OpDef subclass under `name` (one instance is kept)."""

    def deco(cls: type[OpDef]) -> type[OpDef]:
        if name in _REGISTRY and type(_REGISTRY[name]) is not cls:
            raise ValueError(f"op {name!r} is already registered by {type(_REGISTRY[name]).__name__}")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return deco


def op_names() -> list[str]:
    return sorted(_REGISTRY)


def get_op(name: str) -> OpDef:
    """The registered op called `name`; an unknown name raises XaugError with the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = op_names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise XaugError(f"unknown op {name!r}{hint}; known ops: {', '.join(known)}", where="op") from None


def spec_classes() -> list[type[BaseModel]]:
    """Every op's Spec model, in name order (for a discriminated union on `op`)."""
    return [_REGISTRY[n].Spec for n in op_names()]


# ---------------------------------------------------------------- small helpers for specs/plans

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
RANGE_RE = re.compile(rf"\s*({_NUMBER})\s*:\s*({_NUMBER})\s*")


def parse_range(value: Any) -> Any:
    """The one range parser (specs and flags): '-30:30' -> (-30.0, 30.0); anything that is not a
    string is left to pydantic.

    >>> parse_range("-45:-20")
    (-45.0, -20.0)
    """
    if isinstance(value, str):
        m = RANGE_RE.fullmatch(value)
        if not m:
            raise ValueError(f"cannot read {value!r}; give a range low:high such as -30:30")
        return (float(m.group(1)), float(m.group(2)))  # low <= high: each spec checks, naming its key
    return value


def split_side(stem: str) -> tuple[str, str]:
    """'image1_R' -> ('image1', '_R'); a stem without a side suffix -> (stem, '')."""
    if stem.endswith(("_R", "_L")):
        return stem[:-2], stem[-2:]
    return stem, ""


def source_by_relpath(sources: list[SourceInfo]) -> dict[str, SourceInfo]:
    return {s.relpath: s for s in sources}


def check_sources(sources: list[SourceInfo], op: str, need: int = 1) -> None:
    if len(sources) < need:
        raise XaugError(f"{op} needs at least {need} source item(s) but the chosen split has "
                        f"{len(sources)}; pick another --from/--split", where=op)


def as_points(points: Any) -> np.ndarray:
    return np.asarray(points, dtype=np.int64).reshape(-1, 2)


__all__ = ["SourceInfo", "ItemPlan", "OpDef", "Loader", "RngFor", "register_op", "get_op", "op_names",
           "spec_classes", "parse_range", "split_side", "check_sources", "source_by_relpath"]
