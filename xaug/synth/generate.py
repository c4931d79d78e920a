"""Synthesize a hand X-ray dataset into the store: plan every item, render in parallel, commit.

>>> from xaug.store import Store                                   # doctest: +SKIP
>>> ds = synthesize(Store("xaug-data"), "raw", persons=6, seed=0, size=256)  # doctest: +SKIP
>>> len(ds.samples(split="train"))                                 # doctest: +SKIP
12
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from xaug.classes import CLASSES
from xaug.errors import BadInput
from xaug.layout import annotation_bytes, annotation_doc, encode_png
from xaug.model import Annotation
from xaug.seeds import seed_problem
from xaug.synth.anatomy import annotation_polygons, hand_geometry
from xaug.synth.plan import ItemPlan, RealLook, appearance_spec, plan_dataset
from xaug.synth.render import render, render_realistic

# Bump when the pixels or polygons for the same spec change: it is part of the plan key.
GENERATOR_VERSION = 2
_RENDER_STREAM = 5


def default_test_persons(persons: int) -> int:
    """Same train:test ratio as the real data (400 train persons, 150 test persons)."""
    return max(1, round(persons * 150 / 400))


def synth_spec(persons: int, seed: int, size: int = 2048, rotated_train: float = 0.12,
               rotated_test: float = 0.6, test_persons: int | None = None,
               label_swaps: int = 0, appearance: str = "realistic",
               look: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved, validated spec of a synthetic dataset (what the manifest records).

    `label_swaps` (training persons with one pair of labels swapped) enters the spec only when
    non-zero, so the versions made before the option existed keep their ids. Likewise
    `appearance="legacy"` adds nothing (today's look, same ids); the realistic styles record
    every resolved range (`look` overrides the style's preset ranges, see plan.APPEARANCE_RANGES).
    """
    app = appearance_spec(appearance, look)
    if test_persons is None:
        test_persons = default_test_persons(persons)
    problems = []
    if persons < 1:
        problems.append(f"--persons must be at least 1, got {persons}")
    if test_persons < 0:
        problems.append(f"--test-persons must be 0 or more, got {test_persons}")
    if persons + test_persons > 999:
        problems.append(f"at most 999 persons fit the ID001..ID999 folders, got {persons + test_persons}")
    if not 64 <= size <= 8192:
        problems.append(f"--size must be between 64 and 8192 pixels, got {size}")
    if seed_problem(seed):
        problems.append(f"--seed {seed_problem(seed)}")
    for flag, rate in (("--rotated-train", rotated_train), ("--rotated-test", rotated_test)):
        if not 0.0 <= rate <= 1.0:
            problems.append(f"{flag} is a fraction of images between 0 and 1, got {rate}")
    if not 0 <= label_swaps <= max(persons, 0):  # no second line about a --persons already refused
        problems.append(f"--label-swaps counts training persons: 0 to {persons}, got {label_swaps}")
    if problems:
        raise BadInput(problems[0], where="synth", problems=problems[1:])
    spec = {"generator": "xaug.synth", "version": GENERATOR_VERSION, "persons": int(persons),
            "test_persons": int(test_persons), "seed": int(seed), "size": int(size),
            "rotated_train": float(rotated_train), "rotated_test": float(rotated_test)}
    if label_swaps:
        spec["label_swaps"] = int(label_swaps)
    if app is not None:
        spec["appearance"] = app.to_spec()
    return spec


def plan_key(spec: dict[str, Any]) -> str:
    from xaug.store import canonical_json

    return "synth-" + hashlib.sha256(canonical_json(spec)).hexdigest()[:40]


def _annotation_id(stem: str, label: str) -> str:
    h = hashlib.sha256(f"{stem}/{label}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def render_item(plan: ItemPlan, size: int) -> tuple[np.ndarray, list[Annotation]]:
    """Image (H, W, 3 uint8) and the 29 annotations of one planned item; pure given the plan."""
    geom = hand_geometry(plan.person.shape, plan.pose, plan.side, size)
    polys = annotation_polygons(geom)
    rng = np.random.default_rng(np.random.SeedSequence([plan.seed[0], _RENDER_STREAM, plan.index]))
    draw = render_realistic if isinstance(plan.look, RealLook) else render
    image = draw(polys, geom, plan.look, plan.edges, rng)
    swap = dict.fromkeys(CLASSES)
    if "label_swap" in plan.edges:  # an injected annotation error: the image is unchanged
        a, b = plan.edges["label_swap"]["labels"]
        swap[a], swap[b] = b, a
    anns = [Annotation(swap[label] or label, polys[label],
                       {"id": _annotation_id(plan.stem, label), "type": "poly_seg", "attributes": {}})
            for label in CLASSES]
    return image, anns


def item_files(plan: ItemPlan, size: int) -> tuple[bytes, bytes]:
    """PNG bytes and label JSON bytes of one item."""
    image, anns = render_item(plan, size)
    doc = annotation_doc(anns, {"attributes": {}, "file_id": plan.stem}, filename=f"{plan.stem}.png",
                         person=plan.person.meta.person, height=size, width=size)
    return encode_png(image), annotation_bytes(doc)


def make_item(plan: ItemPlan, size: int):
    """The engine's `make_item`: one planned synthetic item, rendered and encoded (pure)."""
    from xaug.store.execute import MadeItem

    png, label = item_files(plan, size)
    return MadeItem(plan.relpath, png, label, person=plan.person.meta.person, split=plan.split,
                    side=plan.side, meta=plan.meta(), provenance={"op": "synth", "seed": list(plan.seed)})


def synthesize(store, name: str = "raw", persons: int = 10, seed: int = 0, size: int = 2048,
               rotated_train: float = 0.12, rotated_test: float = 0.6, test_persons: int | None = None,
               jobs: int | None = None, progress: bool = True, label_swaps: int = 0, backend=None,
               appearance: str = "realistic", look: dict | None = None):
    """Generate both hands of each person (train + test) and register them as dataset `name`.

    The same spec returns the existing version without rendering anything (the plan key is the
    hash of the spec); a killed run resumes, skipping the items already staged. The store's build
    engine does the work (`xaug.store.execute`), on `backend` (local by default, or dask).
    """
    from functools import partial

    from xaug.store import check_name
    from xaug.store.execute import BuildRequest, build

    spec = synth_spec(persons, seed, size, rotated_train, rotated_test, test_persons, label_swaps,
                      appearance, look)
    check_name(name)
    key = plan_key(spec)
    existing = store.find_plan(key)
    if existing is not None:
        return existing
    from xaug.store.backends import get_backend

    backend = get_backend(backend)
    backend.warm(jobs, ("xaug.synth.render", "xaug.synth.anatomy"))  # the pool starts while this process plans
    plans, sheet = plan_dataset(spec["persons"], spec["test_persons"], seed, rotated_train, rotated_test,
                                label_swaps, appearance=spec.get("appearance"))
    result = build(store, BuildRequest(name, "synth", key, None, spec, seed), plans,
                   partial(make_item, size=size), persons=sheet, jobs=jobs, progress=progress,
                   label="synthesizing", backend=backend)
    return result.dataset
