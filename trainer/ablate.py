"""`xaug ablate`: does an offline augmentation make the model better, and by how much?

An ablation spec names a dataset (or synthesises one), a baseline and candidates (each an
existing version or a pipeline to build), training seeds and trainer settings. For every
(arm, seed) it trains one run through the same functions `xaug train` and `xaug evaluate` use,
with the same number of optimiser steps, scores the validation persons and the test split per
image and class, and reports per subset of the recorded meta (rotated wrist / upright, each edge
case) the mean and spread over seeds and the paired difference to the baseline with a bootstrap
interval over images (`trainer.bootstrap`).

    from trainer.ablate import load_ablation, run_ablation
    spec = load_ablation("pipelines/ablate-demo.yaml")
    result = run_ablation(Store(home), spec, out=Path("ablations/demo"), device="cpu")

Resumable: a run folder is named by the hash of what it trains (version id, validation dataset
id, the resolved training config, seed); a finished, evaluated run is reused, a killed one
continues from its last epoch (`resume`), and nothing else is redone.

torch is imported only when training starts, so `xaug schema ablate` and spec checks stay fast.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainer.bootstrap import Interval, paired_bootstrap, resample_counts, seed_spread, seeds_and_images_bootstrap
from xaug.classes import CLASSES
from xaug.errors import BadInput, XaugError
from xaug.seeds import SEED_MAX, seed_problem
from xaug.report.plots import save_figure
from xaug.store import atomic_write
from xaug.store.hashing import canonical_json

ARM_NAME = r"[A-Za-z][A-Za-z0-9_-]{0,31}"
MEAN = "mean"                      # the column of the per-image mean over the 29 classes
RUN_RECORD = "ablate_run.json"     # written into a run folder once it is trained and evaluated
HASH_CHARS = 12                    # of the run hash in a run folder's name


# ---------------------------------------------------------------- the spec

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # unknown keys, and `steps: true` for 1, are mistakes


class SynthData(_Strict):
    """Synthesise the dataset (cached by its spec like `xaug synth`): train persons with a
    person-grouped validation fold, and a labelled, rotated-heavy test split."""

    name: str = Field("raw", pattern=ARM_NAME, description="Base name of the synthetic version.")
    persons: int = Field(32, ge=4, description="Train persons (two hands each).")
    test_persons: Optional[int] = Field(None, ge=1, description="Test persons (default: the generator's).")
    size: int = Field(512, ge=64, description="Image side in pixels (the real data: 2048).")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the synthetic set.")
    rotated_train: float = Field(0.12, ge=0, le=1, description="Share of train images with a rotated wrist.")
    rotated_test: float = Field(0.6, ge=0, le=1, description="Share of test images with a rotated wrist.")


class Arm(_Strict):
    """The baseline or one candidate: a version that exists, a pipeline to build, or (baseline
    only) neither, meaning the dataset's own training persons."""

    name: str = Field(..., pattern=ARM_NAME, description="Short name used in tables, plots and run folders.")
    version: Optional[str] = Field(None, min_length=1,
                                   description="Existing version to train on: name, name_vN or id prefix.")
    pipeline: Optional[Union[str, dict[str, Any]]] = Field(
        None, description="Pipeline to build (cache hits as usual): a YAML path or an inline pipeline "
                          "(`xaug schema`); source defaults to the ablation's dataset, split to train, "
                          "name to <ablation>_<arm>.")

    train: Optional["TrainOverrides"] = Field(
        None, description="Trainer settings of this arm only, over the shared `train` block (`aug` and "
                          "`options` merge key by key): compares models or online augmentation. `steps` "
                          "stay the ablation's.")

    @model_validator(mode="after")
    def _one_source(self) -> "Arm":
        if self.version is not None and self.pipeline is not None:
            raise ValueError("give either 'version' or 'pipeline', not both")
        return self


class TrainOverrides(_Strict):
    """Trainer settings: unset fields take the shared block's (an arm's) or the trainer's defaults."""

    size: Optional[int] = Field(None, ge=32, description="Training input side (a multiple of 2**depth).")
    batch: Optional[int] = Field(None, ge=1)
    lr: Optional[float] = Field(None, gt=0, description="AdamW peak learning rate.")
    arch: Optional[str] = Field(None, description="resunet, unet or smp:<Architecture>:<encoder>, where the trainer knows it.")
    width: Optional[int] = Field(None, ge=1)
    depth: Optional[int] = Field(None, ge=1)
    norm: Optional[Literal["batch", "group", "instance", "none"]] = None
    aug: Optional[dict[str, Any]] = Field(
        None, description="Online augmentation (trainer.data.OnlineAug fields: hflip, brightness_contrast, clahe, "
                          "sharpen, emboss, scale, translate, gamma, black_level probabilities; *_range).")
    options: Optional[dict[str, Any]] = Field(None, description="Any other training config field, e.g. "
                                                                "{warmup_epochs: 2}.")


class TrainSettings(TrainOverrides):
    """Trainer settings shared by every run; unset fields take the trainer's defaults
    (`xaug train --help`). Every run gets `steps` optimiser steps."""

    steps: int = Field(..., ge=1, description="Optimiser steps of every run (see docs/ablate.md: equal steps).")
    workers: Optional[int] = Field(None, ge=0, description="DataLoader workers (not part of the run's identity).")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Any other training config field, e.g. {warmup_epochs: 2}.")


Arm.model_rebuild()


class EvaluateSettings(_Strict):
    splits: list[Literal["val", "test"]] = Field(
        default_factory=lambda: ["val", "test"], min_length=1,
        description="val: the dataset's held-out validation persons; test: its labelled test split.")
    tta: Optional[Literal["hflip"]] = Field(None, description="Test-time augmentation.")

    @field_validator("splits")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each split at most once")
        return v


class BootstrapSettings(_Strict):
    resamples: int = Field(10_000, ge=100, description="Bootstrap resamples of the images.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the resampling.")


# More training seeds than any ablation runs (each seed is one training per arm).
MAX_SEEDS = 1000


class AblationSpec(_Strict):
    """An ablation: a baseline and candidates, trained over seeds with equal steps, compared on
    the same images (xaug ablate SPEC.yaml)."""

    name: str = Field(..., pattern=ARM_NAME, description="Name of the ablation (output folder, version names).")
    dataset: Optional[str] = Field(None, min_length=1,
                                   description="Imported or synthesised version whose validation persons and "
                                               "test split are scored; pipelines derive from it.")
    synth: Optional[SynthData] = Field(None, description="Synthesise the dataset instead of naming one.")
    baseline: Arm = Field(default_factory=lambda: Arm(name="baseline"))
    candidates: list[Arm] = Field(..., min_length=1)
    seeds: Union[int, list[int]] = Field(3, description="Training seeds: a count n (0..n-1) or a list.")
    train: TrainSettings
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)

    @model_validator(mode="after")
    def _check(self) -> "AblationSpec":
        if (self.dataset is None) == (self.synth is None):
            raise ValueError("give exactly one of 'dataset' (an existing version) and 'synth'")
        names = [self.baseline.name] + [c.name for c in self.candidates]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"arm names must be unique; repeated: {', '.join(dup)}")
        for i, c in enumerate(self.candidates):
            if c.version is None and c.pipeline is None and c.train is None:
                raise ValueError(f"candidates.{i} ({c.name}): give 'version', 'pipeline' or 'train' (this arm's "
                                 "trainer settings); with none it is the baseline again")
        count = self.seeds if isinstance(self.seeds, int) else len(self.seeds)
        if count > MAX_SEEDS:  # checked before the list is made: `seeds: 10**12` is a typo, not a plan
            raise ValueError(f"seeds: {count:,} seeds would be {count:,} trainings per arm; use at most "
                             f"{MAX_SEEDS} (3 to 5 give the spread over seeds)")
        seeds = self.seed_list()
        if not seeds or len(set(seeds)) != len(seeds) or any(seed_problem(s) for s in seeds):
            raise ValueError("seeds: a count >= 1 or a list of distinct seeds from 0 to 2**32 - 1")
        return self

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def arms(self) -> list[Arm]:
        return [self.baseline, *self.candidates]


def ablation_schema() -> dict[str, Any]:
    """The JSON schema of ablation specs (`xaug schema ablate`)."""
    schema = AblationSpec.model_json_schema()
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    schema["title"] = "xaug ablation"
    return schema


def parse_ablation(data: Any, where: str = "ablation", lines: dict[tuple, int] | None = None,
                   base_dir: Path | None = None) -> AblationSpec:
    """Validate a whole ablation document, inline pipelines included, before anything runs."""
    from xaug.pipeline import _problem_line

    if not isinstance(data, dict):
        raise BadInput("an ablation spec is a mapping with 'name', 'baseline', 'candidates', 'train', ...",
                       where=where)
    try:
        spec = AblationSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_problem_line(err, lines) for err in exc.errors()]
        noun = "problem" if len(problems) == 1 else "problems"
        raise BadInput(f"invalid ablation spec ({len(problems)} {noun}); nothing was run", where=where,
                       problems=problems) from None
    for key, arm in _arm_keys(spec):
        if arm.pipeline is not None:
            arm_pipeline(spec, arm, source_id="raw", where=f"{where}: {key}.pipeline", base_dir=base_dir)
    return spec


def load_ablation(path: Path | str) -> AblationSpec:
    """Read and validate an ablation YAML; problems name the file, key and line (read like a
    pipeline file: size and alias-expansion bounds, duplicate keys refused)."""
    from xaug.yamlio import read_yaml

    path = Path(path)
    data, lines = read_yaml(path, "ablation spec", "pipelines/ablate-demo.yaml")
    return parse_ablation(data, where=str(path), lines=lines, base_dir=path.parent)


def _arm_keys(spec: AblationSpec) -> list[tuple[str, Arm]]:
    return [("baseline", spec.baseline)] + [(f"candidates.{i}", c) for i, c in enumerate(spec.candidates)]


def arm_pipeline(spec: AblationSpec, arm: Arm, source_id: str, where: str, base_dir: Path | None = None):
    """The validated pipeline of an arm; unset source/split/name default to the ablation's."""
    from xaug.pipeline import load_pipeline, parse_pipeline, resolved_spec

    if isinstance(arm.pipeline, str):
        path = Path(arm.pipeline)
        if not path.is_absolute() and not path.exists() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        data = resolved_spec(load_pipeline(path))
        data["source"] = source_id  # a pipeline file names its own source; the ablation's dataset wins
        return parse_pipeline(data, where=where)
    data = dict(arm.pipeline or {})
    data.setdefault("source", source_id)
    data.setdefault("split", "train")
    data.setdefault("name", f"{spec.name}_{arm.name}"[:64])
    return parse_pipeline(data, where=where)


# ---------------------------------------------------------------- planning runs

def steps_per_epoch(images: int, batch: int) -> int:
    """Optimiser steps of one epoch over `images` (the trainer drops the last partial batch when
    there is more than one batch)."""
    return images // batch if images > batch else 1


def equal_epochs(images: int, batch: int, steps: int) -> tuple[int, int]:
    """(epochs, actual steps) closest to `steps` for a version of `images` images.

    >>> equal_epochs(50, 8, 360), equal_epochs(96, 8, 360), equal_epochs(114, 8, 360)
    ((60, 360), (30, 360), (26, 364))
    """
    per = steps_per_epoch(images, batch)
    epochs = max(1, int(math.floor(steps / per + 0.5)))
    return epochs, epochs * per


def exact_steps_hint(per_epoch: list[int], near: int, limit: int = 100_000) -> int | None:
    """The multiple of every arm's steps per epoch nearest to `near` (every run then gets exactly
    that many steps), or None when it would exceed `limit`."""
    lcm = 1
    for p in per_epoch:
        lcm = lcm * p // math.gcd(lcm, p)
        if lcm > limit:
            return None
    return max(lcm, int(round(near / lcm)) * lcm)


@dataclass
class ArmData:
    arm: Arm
    dataset: Any          # store Dataset
    built: str = ""       # "" (existing), "made", "cached"
    summary: str = ""


@dataclass
class PlannedRun:
    arm: str
    seed: int
    dataset: str          # version name
    dataset_id: str
    images: int
    epochs: int
    steps: int
    options: dict[str, Any]
    config_hash: str
    run_dir: Path
    state: str = "todo"   # todo | partial | done | reused
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"arm": self.arm, "seed": self.seed, "dataset": self.dataset, "dataset_id": self.dataset_id,
                "train_images": self.images, "epochs": self.epochs, "steps": self.steps,
                "config_hash": self.config_hash, "run_dir": str(self.run_dir), "state": self.state,
                "train_seconds": self.seconds}


def arm_settings(spec: AblationSpec, arm: Arm) -> TrainSettings:
    """The arm's trainer settings: the shared `train` block with the arm's `train` over it
    (`aug` and `options` merged key by key)."""
    if arm.train is None:
        return spec.train
    merged = spec.train.model_dump()
    for key, value in arm.train.model_dump(exclude_unset=True).items():
        if key in ("aug", "options") and (isinstance(value, dict) or value is None):
            merged[key] = {**(merged.get(key) or {}), **(value or {})}  # `aug: null`: the shared one, not none
        else:
            merged[key] = value
    return TrainSettings.model_construct(**merged)


# TrainConfig fields the trainer fills in, never settings
TRAINER_FILLS = {"dataset", "dataset_id", "val_dataset", "val_id", "train_images", "val_images", "world_size"}


def train_options(settings: TrainSettings, where: str = "train") -> dict[str, Any]:
    """TrainConfig fields of a `train` block (unset ones left to the trainer)."""
    opts = {k: v for k, v in settings.model_dump(exclude={"steps", "options", "workers"}).items() if v is not None}
    clash = sorted(set(settings.options or {}) & (set(TrainSettings.model_fields) | {"epochs", "seed", "val_every"}))
    if clash:
        raise BadInput(f"{where}.options must not set {', '.join(clash)}; the ablation sets them",
                       where=f"{where}.options")
    filled = sorted(set(settings.options or {}) & TRAINER_FILLS)  # in the run's identity, then overwritten
    if filled:
        raise BadInput(f"{where}.options must not set {', '.join(filled)}; the trainer fills them in from the "
                       "arm's data (and --nproc); remove them", where=f"{where}.options")
    opts.update(settings.options or {})
    return opts


def arm_options(spec: AblationSpec, key: str, arm: Arm, nproc: int = 1) -> tuple[dict[str, Any], str]:
    """(TrainConfig options of the arm's runs, the spec key its problems name)."""
    where = f"{key}.train" if arm.train else "train"
    opts = train_options(arm_settings(spec, arm), where=where)
    return ({**opts, "world_size": nproc} if nproc > 1 else opts), where


def check_training(spec: AblationSpec, nproc: int = 1) -> None:
    """Resolve every arm's trainer settings as its runs will (unknown arch or online augmentation,
    a size that 2**depth does not divide, ...): one line naming the arm's key, before anything is
    built or trained. Imports torch (the trainer's config)."""
    same_data: dict[bytes, tuple[str, str]] = {}  # arms on the dataset's own training persons
    for key, arm in _arm_keys(spec):
        opts, where = arm_options(spec, key, arm, nproc)
        identity = resolved_config(opts, 1, 0, where=where)
        if arm.version is None and arm.pipeline is None:
            _refuse_twin(same_data.setdefault(canonical_json(identity), (key, arm.name)), key, arm.name)


def _refuse_twin(first: tuple[str, str], key: str, name: str) -> None:
    """An arm that trains exactly what an earlier one does (`aug: {border: constant}` with zoom and
    shift off, a setting at its default) reported a difference of +0.0000 as a result."""
    if first[0] != key:
        raise BadInput(f"trains exactly what {first[0]} ({first[1]}) trains: the same images and settings once "
                       "the defaults are filled in (aug.border acts only with aug.scale or aug.translate on); "
                       "change its settings or remove it", where=f"{key} ({name})")


def resolved_config(options: dict[str, Any], epochs: int, seed: int, where: str = "train") -> dict[str, Any]:
    """The trainer's full resolved config identity for these options (defaults filled in)."""
    from trainer.config import TrainConfig
    from trainer.data import OnlineAug

    aug = options.get("aug")
    if isinstance(aug, dict):
        known = set(OnlineAug.__dataclass_fields__)
        bad = sorted(set(aug) - known)
        if bad:
            raise BadInput(f"unknown online augmentation {', '.join(bad)}; known: {', '.join(sorted(known))}",
                           where=f"{where}.aug")
    from trainer.config import _type_problem

    for f in fields(TrainConfig):  # `options: {blocks: "3"}` or `{compile: "no"}` would be taken as given
        if f.name in options and (problem := _type_problem(f, options[f.name])):
            key = f.name if f.name in TrainSettings.model_fields else f"options.{f.name}"
            raise BadInput(problem, where=f"{where}.{key}")
    try:
        # from_dict reads an old stored config; a new run gets the constructor's defaults
        default = TrainConfig()
        given = {"arch": default.arch, **options, "epochs": epochs, "seed": seed}
        if isinstance(aug, dict):
            given["aug"] = {**asdict(default.aug), **aug}
        cfg = TrainConfig.from_dict(given)
    except XaugError as exc:
        raise BadInput(exc.message, where=f"{where} ({exc.where})" if exc.where else where) from None
    return cfg.identity()


def config_hash(dataset_id: str, val_id: str, identity: dict[str, Any]) -> str:
    payload = {"train": dataset_id, "val": val_id, "config": identity}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def find_run(runs_dir: Path, name: str, digest: str) -> Path:
    """The run folder of `digest`: its own name, else any folder with that hash (renamed arm)."""
    own = runs_dir / name
    if own.exists() or not runs_dir.exists():
        return own
    tag = f"-{digest[:HASH_CHARS]}"
    for other in sorted(runs_dir.iterdir()):
        if other.name.endswith(tag) and (other / RUN_RECORD).exists():
            record = _read_json(other / RUN_RECORD)
            if record.get("config_hash") == digest:
                return other
    return own


# ---------------------------------------------------------------- scores

@dataclass
class Scores:
    """Per-image, per-class Dice of one run on one split."""

    images: list[str]
    dice: np.ndarray      # (images, 29)

    def in_order(self, images: list[str]) -> "Scores":
        """The same scores with rows in the order of `images` (the same names, perhaps reordered)."""
        if self.images == images:
            return self
        pos = {n: i for i, n in enumerate(self.images)}
        return Scores(list(images), self.dice[[pos[n] for n in images]])


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=1) + "\n").encode())  # a kill leaves the old file or the new one


def scores_path(run_dir: Path, split: str, tta: str | None) -> Path:
    return Path(run_dir) / (f"ablate_scores_{split}" + (f"_{tta}" if tta else "") + ".json")


def save_scores(path: Path, dataset_id: str, images: list[str], rows: list[np.ndarray]) -> None:
    _write_json(path, {"dataset_id": dataset_id, "classes": list(CLASSES), "images": list(images),
                       "dice": [[round(float(x), 7) for x in r] for r in rows]})


def load_scores(path: Path, dataset_id: str) -> Scores | None:
    data = _read_json(path)
    if data.get("dataset_id") != dataset_id or data.get("classes") != list(CLASSES):
        return None
    return Scores(list(data["images"]), np.asarray(data["dice"], np.float64).reshape(-1, len(CLASSES)))


def image_subsets(samples: list) -> dict[str, np.ndarray]:
    """Boolean masks of the subsets the recorded meta defines: all, wrist_rotated / upright, one per
    edge case, and no_edge_case; empty subsets are left out."""
    n = len(samples)
    metas = [s.meta or {} for s in samples]
    out: dict[str, np.ndarray] = {"all": np.ones(n, bool)}
    if any("wrist_rotated" in m for m in metas):
        rot = np.array([bool(m.get("wrist_rotated")) for m in metas])
        out["wrist_rotated"], out["upright"] = rot, ~rot
    if any("edge_cases" in m for m in metas):
        cases = [set(m.get("edge_cases") or ()) for m in metas]
        for case in sorted(set().union(*cases)):
            out[f"edge:{case}"] = np.array([case in c for c in cases])
        out["no_edge_case"] = np.array([not c for c in cases])
    return {k: v for k, v in out.items() if v.any()}


# ---------------------------------------------------------------- analysis (pure)

def analyse(scores: dict[str, dict[int, Scores]], arms: list[str], seeds: list[int],
            subsets: dict[str, np.ndarray], settings: BootstrapSettings) -> dict[str, Any]:
    """Per subset: each arm's mean Dice per seed and its spread; each candidate's paired difference
    to the baseline (arms[0]) with a bootstrap interval; the same per class.

    `scores[arm][seed]` hold the same images in the same order for every arm and seed.
    """
    base = arms[0]
    cube = {a: np.stack([_with_mean(scores[a][s].dice) for s in seeds]) for a in arms}  # (S, N, 30)
    columns = list(CLASSES) + [MEAN]
    result: dict[str, Any] = {}
    for si, (subset, mask) in enumerate(subsets.items()):
        idx = np.flatnonzero(mask)
        counts = resample_counts(len(idx), settings.resamples, settings.seed * 1000 + si)
        entry: dict[str, Any] = {"images": int(len(idx)), "arms": {}, "differences": {}}
        for a in arms:
            per_seed = cube[a][:, idx].mean(axis=1)  # (S, 30)
            entry["arms"][a] = {
                "per_seed": [round(float(v), 6) for v in per_seed[:, -1]],
                **{k: round(v, 6) if isinstance(v, float) else v
                   for k, v in seed_spread(per_seed[:, -1]).items()},
                "per_class": {c: round(float(v), 6) for c, v in zip(CLASSES, per_seed[:, :-1].mean(axis=0))},
                "per_class_std": {c: round(float(v), 6) for c, v in zip(
                    CLASSES, per_seed[:, :-1].std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros(len(CLASSES)))},
            }
        for a in arms[1:]:
            diff = cube[a][:, idx] - cube[base][:, idx]                    # (S, n, 30), paired
            iv = paired_bootstrap(diff, confidence=settings.confidence, counts=counts)
            iv2 = seeds_and_images_bootstrap(diff, confidence=settings.confidence, counts=counts,
                                             seed=settings.seed * 1000 + si)
            entry["differences"][a] = {
                **_interval_json(iv, -1), **_seeds_json(iv2, -1),
                "per_seed": [round(float(v), 6) for v in diff[:, :, -1].mean(axis=1)],
                "per_class": {c: {**_interval_json(iv, ci), **_seeds_json(iv2, ci)}
                              for ci, c in enumerate(columns[:-1])},
            }
        result[subset] = entry
    return result


def _with_mean(dice: np.ndarray) -> np.ndarray:
    return np.concatenate([dice, dice.mean(axis=1, keepdims=True)], axis=1)


def _seeds_json(iv: Interval, col: int) -> dict[str, Any]:
    return {"low_seeds": round(float(iv.low[col]), 6), "high_seeds": round(float(iv.high[col]), 6),
            "excludes_zero_seeds": bool(iv.excludes_zero()[col])}


def _interval_json(iv: Interval, col: int) -> dict[str, Any]:
    return {"diff": round(float(iv.estimate[col]), 6), "low": round(float(iv.low[col]), 6),
            "high": round(float(iv.high[col]), 6), "excludes_zero": bool(iv.excludes_zero()[col])}


# ---------------------------------------------------------------- running

@dataclass
class AblationResult:
    out_dir: Path
    report: dict[str, Any]
    json_path: Path
    csv_path: Path
    html_path: Path
    pngs: list[Path] = field(default_factory=list)


Log = Callable[[str], None]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def resolve_data(store, spec: AblationSpec, jobs: int | None, progress: bool, log: Log):
    """The dataset whose validation persons and test split are scored (synthesised if asked)."""
    if spec.synth is not None:
        from xaug.synth.generate import synthesize

        s = spec.synth
        log(f"dataset: synthesising {s.persons} + {s.test_persons or 'default'} test persons at {s.size} px "
            f"(seed {s.seed}; an identical earlier set is reused)")
        ds = synthesize(store, name=s.name, persons=s.persons, seed=s.seed, size=s.size,
                        test_persons=s.test_persons, rotated_train=s.rotated_train,
                        rotated_test=s.rotated_test, jobs=jobs, progress=progress)
    else:
        ds = store.open(spec.dataset)
    if ds.source_id is not None:
        raise BadInput(f"{ds.name} is a derived version; name the imported or synthesised dataset it comes "
                       "from (its validation persons and test split are what every arm is scored on)",
                       where="dataset")
    return ds


def resolve_arms(store, spec: AblationSpec, data, jobs: int | None, progress: bool, log: Log,
                 base_dir: Path | None = None) -> list[ArmData]:
    """Open or build each arm's training version (pipelines through the store's cache)."""
    from trainer.runs import lineage_root
    from xaug.pipeline import check_output_space, run_pipeline

    pipes = {key: arm_pipeline(spec, arm, source_id=data.id, where=f"{key}.pipeline", base_dir=base_dir)
             for key, arm in _arm_keys(spec) if arm.pipeline is not None}
    for pipe in pipes.values():  # as `xaug run`: refuse what the disk cannot hold, before building any
        check_output_space(store, pipe, data)
    arms = []
    for key, arm in _arm_keys(spec):
        if arm.pipeline is not None:
            pipe = pipes[key]
            log(f"{arm.name}: building pipeline {pipe.name} from {data.name}")
            res = run_pipeline(store, pipe, jobs=jobs, progress=progress)
            arms.append(ArmData(arm, res.dataset, "cached" if res.cached else "made", res.summary()))
            log(f"  {res.summary()}")
        else:
            ds = store.open(arm.version) if arm.version else data
            if lineage_root(store, ds).id != data.id:
                raise BadInput(f"{ds.name} does not derive from {data.name}; every arm must be built from the "
                               "scored dataset, so that its validation persons stay unseen", where=f"{key}.version")
            arms.append(ArmData(arm, ds))
    return arms


def plan_runs(spec: AblationSpec, arms: list[ArmData], data, runs_dir: Path, nproc: int = 1) -> list[PlannedRun]:
    """One run per (seed, arm), seed-major, with epochs that equalise the optimiser steps.

    With `nproc` > 1 (DistributedDataParallel) a step takes batch x nproc images; the runs are
    other runs (world_size is part of their identity)."""
    from trainer.runs import training_samples

    keys = [k for k, _ in _arm_keys(spec)]
    options, global_batch = {}, {}
    for key, a in zip(keys, arms):
        opts, where = arm_options(spec, key, a.arm, nproc)
        options[a.arm.name] = opts
        global_batch[a.arm.name] = int(resolved_config(opts, 1, 0, where=where)["batch"]) * nproc
    images = {a.arm.name: len(training_samples(a.dataset)) for a in arms}
    runs = []
    for seed in spec.seed_list():
        digests: dict[str, tuple[str, str]] = {}
        for key, a in zip(keys, arms):
            name = a.arm.name
            epochs, steps = equal_epochs(images[name], global_batch[name], spec.train.steps)
            identity = resolved_config(options[name], epochs, seed)
            digest = config_hash(a.dataset.id, data.id, identity)
            _refuse_twin(digests.setdefault(digest, (key, name)), key, name)  # e.g. `version:` the baseline's
            folder = f"{name}-s{seed}-{digest[:HASH_CHARS]}"
            runs.append(PlannedRun(name, seed, a.dataset.name, a.dataset.id, images[name],
                                   epochs, steps, options[name], digest, find_run(runs_dir, folder, digest)))
    return runs


# `xaug train` flags of the training options, for runs launched under torchrun (--nproc)
TRAIN_FLAGS = {"size": "--size", "batch": "--batch", "lr": "--lr", "arch": "--arch", "width": "--width",
               "depth": "--depth", "blocks": "--blocks", "norm": "--norm"}
AUG_FLAGS = {"hflip": "--hflip", "scale": "--scale", "translate": "--translate", "gamma": "--gamma",
             "black_level": "--black-level"}


def train_argv(store_home: Path, run: PlannedRun, val_id: str, device: str, workers: int | None,
               resume: bool) -> list[str]:
    """The `xaug train ...` arguments of one run: what `--nproc` runs under torchrun."""
    argv = ["train", "--home", str(store_home), "--dataset", run.dataset_id, "--val", val_id,
            "--run", _run_ref(run.run_dir), "--epochs", str(run.epochs), "--seed", str(run.seed),
            "--val-every", str(run.epochs), "--device", device, "-q"]
    for key, value in run.options.items():
        if key == "world_size":
            continue
        if key == "aug":
            for name, prob in dict(value).items():
                if name not in AUG_FLAGS:
                    raise BadInput(f"aug.{name} has no `xaug train` flag, so it cannot be used with --nproc; "
                                   f"with --nproc use {', '.join(AUG_FLAGS)}", where="train.aug")
                argv += [AUG_FLAGS[name], str(prob)]
            continue
        if key not in TRAIN_FLAGS:
            raise BadInput(f"{key} has no `xaug train` flag, so it cannot be used with --nproc", where="train")
        argv += [TRAIN_FLAGS[key], str(value)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if resume:
        argv.append("--resume")
    return argv


def _run_ref(path: Path) -> str:
    text = str(path)
    return text if ("/" in text or "\\" in text) else f"./{text}"  # a path, never a run name


def eval_samples_meta(data, split: str) -> list:
    """The images `evaluate_run` scores on `split`, in its order, with their meta (no labels)."""
    return data.samples(split="train", role="val", load=False) if split == "val" else data.samples(split="test", load=False)


def execute_run(store, run: PlannedRun, spec: AblationSpec, data, device: str, progress: bool,
                nproc: int = 1) -> dict[str, Scores]:
    """Train (or continue) one run and score it on each split; returns its scores per split."""
    from trainer.runs import evaluate_run, train_version

    run_dir = run.run_dir
    tta = spec.evaluate.tta
    record = _read_json(run_dir / RUN_RECORD)
    if record.get("config_hash") == run.config_hash:
        cached = {sp: load_scores(scores_path(run_dir, sp, tta), data.id) for sp in spec.evaluate.splits}
        if all(v is not None for v in cached.values()):
            run.state = "reused"
            run.seconds = record.get("train_seconds")
            return cached  # type: ignore[return-value]
    run.state = "partial" if (run_dir / "last.pt").exists() else "todo"
    t0 = time.perf_counter()
    resume = (run_dir / "last.pt").exists()
    if nproc > 1:  # `xaug train --nproc`'s way: the same command under torchrun
        import subprocess

        from trainer.distributed import launch_command

        env = dict(os.environ)  # as trainer.distributed.launch, with the ranks' output kept off stdout
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        argv = train_argv(store.home, run, data.id, device, spec.train.workers, resume)
        code = subprocess.call(launch_command(nproc, argv), env=env, stdout=sys.stderr)
        if code != 0:
            raise XaugError(f"training under torchrun ({nproc} processes) failed with exit status {code}; "
                            "run the same command again to continue", where=str(run_dir))
    else:
        kwargs = dict(run.options)
        if spec.train.workers is not None:
            kwargs["workers"] = spec.train.workers
        # validated once, at the end, so best.pt holds the last weights: every arm is scored after
        # exactly its steps, never at a checkpoint picked on the validation persons
        train_version(store, run.dataset_id, val=data.id, run=_run_ref(run_dir), resume=resume, device=device,
                      progress=progress, epochs=run.epochs, seed=run.seed, val_every=run.epochs, **kwargs)
    seconds = round(time.perf_counter() - t0, 1)
    out: dict[str, Scores] = {}
    for split in spec.evaluate.splits:
        path = scores_path(run_dir, split, tta)
        got = load_scores(path, data.id) if record.get("config_hash") == run.config_hash else None
        if got is None:
            ev = evaluate_run(store, _run_ref(run_dir), dataset=data.id, split=split, tta=tta, device=device,
                              progress=progress, workers=spec.train.workers)
            save_scores(path, data.id, list(ev.table.images), list(ev.table.rows))
            got = load_scores(path, data.id)
        out[split] = got
        _write_json(run_dir / RUN_RECORD, {**record, "config_hash": run.config_hash, "arm": run.arm,
                                           "seed": run.seed, "dataset_id": run.dataset_id,
                                           "epochs": run.epochs, "steps": run.steps,
                                           "train_seconds": record.get("train_seconds", seconds)})
        record = _read_json(run_dir / RUN_RECORD)
    run.state = "done"
    run.seconds = seconds
    return out


def run_ablation(store, spec: AblationSpec, *, out: Path, runs_dir: Path, device: str = "auto",
                 jobs: int | None = None, progress: bool = True, log: Log = _stderr,
                 base_dir: Path | None = None, nproc: int = 1) -> AblationResult:
    """Build what is missing, train every (arm, seed), score, analyse and write the report."""
    out, runs_dir = Path(out), Path(runs_dir)
    started = time.perf_counter()
    check_training(spec, nproc)  # a bad setting stops here, before any dataset is built
    from xaug.outputs import check_output_dir

    # so do the output folders: a file, or a folder inside the store, failed only after building
    # the arms' versions and training every run (--out inside the store was even written to)
    check_output_dir(out, "--out", store)
    check_output_dir(runs_dir, "--runs", store)
    data = resolve_data(store, spec, jobs, progress, log)
    arms = resolve_arms(store, spec, data, jobs, progress, log, base_dir)
    runs = plan_runs(spec, arms, data, runs_dir, nproc)
    _log_plan(runs, spec, log)

    seeds = spec.seed_list()
    names = [a.arm.name for a in arms]
    scores: dict[str, dict[str, dict[int, Scores]]] = {sp: {a: {} for a in names} for sp in spec.evaluate.splits}
    trained_s: list[float] = []
    try:
        for k, run in enumerate(runs, 1):
            left = sum(1 for r in runs[k - 1:] if not _finished(r, spec, data))
            eta = f", ~{_fmt_s(left * float(np.mean(trained_s)))} left" if trained_s and left else ""
            log(f"[{k}/{len(runs)}] {run.arm} seed {run.seed}: {run.epochs} epochs x {run.images} images = "
                f"{run.steps} steps -> {run.run_dir}{eta}")
            t0 = time.perf_counter()
            got = execute_run(store, run, spec, data, device, progress, nproc)
            if run.state == "reused":
                log("  finished earlier (same config hash): reused")
            else:
                trained_s.append(time.perf_counter() - t0)
            for split, sc in got.items():
                scores[split][run.arm][run.seed] = sc
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, a time limit: report what finished (said even with
        # --quiet: it is the command's outcome), then stop
        partial = partial_report(spec, data, arms, runs, scores, seeds)
        if partial is not None:
            partial["wall_seconds"] = round(time.perf_counter() - started, 1)
            write_report(partial, out)
            _stderr(f"interrupted: a PARTIAL report of the finished runs ({', '.join(partial['candidates'])} "
                f"against {partial['baseline']}, seeds {partial['seeds']}) is in {out}; run the same command "
                "again to finish the rest")
        raise

    report = build_report(spec, data, arms, runs, scores, seeds)
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    return write_report(report, out)


def partial_report(spec: AblationSpec, data, arms: list[ArmData], runs: list[PlannedRun],
                   scores: dict[str, dict[str, dict[int, Scores]]], seeds: list[int]) -> dict[str, Any] | None:
    """The report over what an interrupted ablation finished, or None when that is not even the
    baseline and one candidate on a common seed: the most seeds the baseline finished for which
    some candidate also finished them, and every candidate that did. Marked `partial`, with the
    runs it leaves out."""
    def done(arm: str, seed: int) -> bool:
        return all(seed in scores[sp][arm] for sp in spec.evaluate.splits)

    names = [a.arm.name for a in arms]
    base_seeds = [s for s in seeds if done(names[0], s)]
    for n in range(len(base_seeds), 0, -1):
        use = base_seeds[:n]
        cands = [a for a in names[1:] if all(done(a, s) for s in use)]
        if cands:
            break
    else:
        return None
    keep = [names[0], *cands]
    part_arms = [a for a in arms if a.arm.name in keep]
    part_runs = [r for r in runs if r.arm in keep and r.seed in use]
    report = build_report(spec, data, part_arms, part_runs, scores, use)
    report["partial"] = {"missing_runs": [f"{r.arm} seed {r.seed}" for r in runs if r not in part_runs],
                         "note": "interrupted before every run finished: only the arms and seeds listed "
                                 "here are analysed; run the same command again for the full report"}
    return report


def _finished(run: PlannedRun, spec: AblationSpec, data) -> bool:
    record = _read_json(run.run_dir / RUN_RECORD)
    return record.get("config_hash") == run.config_hash and all(
        scores_path(run.run_dir, sp, spec.evaluate.tta).exists() for sp in spec.evaluate.splits)


def _log_plan(runs: list[PlannedRun], spec: AblationSpec, log: Log) -> None:
    by_arm: dict[str, PlannedRun] = {}
    for r in runs:
        by_arm.setdefault(r.arm, r)
    steps = sorted({r.steps for r in by_arm.values()})
    own = {a.name: _settings_text(a.train.model_dump(exclude_unset=True)) for a in spec.arms if a.train}
    for r in by_arm.values():
        log(f"  {r.arm}: {r.dataset} ({r.images} training images) -> {r.epochs} epochs, {r.steps} steps"
            + (f"; {own[r.arm]}" if own.get(r.arm) else ""))
    if len(steps) > 1:
        per = [max(1, r.steps // r.epochs) for r in by_arm.values()]
        hint = exact_steps_hint(per, spec.train.steps)
        log(f"  note: steps differ by up to {steps[-1] - steps[0]} (whole epochs)"
            + (f"; train.steps: {hint} would make them exactly equal" if hint else ""))
    done = sum(1 for r in runs if (r.run_dir / RUN_RECORD).exists())
    n_seeds = len(spec.seed_list())
    log(f"{len(runs)} runs ({len(by_arm)} arms x {n_seeds} seed{'' if n_seeds == 1 else 's'}); "
        f"{done} with a finished record to check")


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def build_report(spec: AblationSpec, data, arms: list[ArmData], runs: list[PlannedRun],
                 scores: dict[str, dict[str, dict[int, Scores]]], seeds: list[int]) -> dict[str, Any]:
    """ablate.json's content: the resolved spec, data, runs and, per split, the analysis."""
    names = [a.arm.name for a in arms]
    splits: dict[str, Any] = {}
    for split in spec.evaluate.splits:
        samples = eval_samples_meta(data, split)
        ref = scores[split][names[0]][seeds[0]]
        by_name = {s.name: s for s in samples}
        if len(by_name) != len(samples) or set(ref.images) != set(by_name):
            raise XaugError(f"the scored images of {split} do not match {data.name}'s {split} images; "
                            "delete the runs' ablate_scores_*.json to rescore", where=str(runs[0].run_dir))
        ordered = [by_name[n] for n in ref.images]
        for a in names:
            for s in seeds:
                scores[split][a][s] = scores[split][a][s].in_order(ref.images)  # same images, maybe reordered
        subsets = image_subsets(ordered)
        splits[split] = {"images": len(ref.images), "subsets": analyse(scores[split], names, seeds, subsets,
                                                                       spec.bootstrap)}
    return {
        "name": spec.name,
        "spec": spec.model_dump(mode="json"),
        "dataset": {"name": data.name, "id": data.id},
        "baseline": names[0],
        "candidates": names[1:],
        "arms": {a.arm.name: {"version": a.dataset.name, "version_id": a.dataset.id, "built": a.built or "existing",
                              "train_images": next(r.images for r in runs if r.arm == a.arm.name),
                              "epochs": next(r.epochs for r in runs if r.arm == a.arm.name),
                              "steps": next(r.steps for r in runs if r.arm == a.arm.name),
                              "train": a.arm.train.model_dump(exclude_unset=True) if a.arm.train else {}}
                 for a in arms},
        "seeds": seeds,
        "equal_steps": len({r.steps for r in runs}) == 1,
        "nproc": int(runs[0].options.get("world_size", 1)),
        # the baseline's; an arm's own settings are its "train" above
        "train_config": {k: v for k, v in resolved_config(runs[0].options, runs[0].epochs, runs[0].seed).items()
                         if k not in ("epochs", "seed", "dataset", "dataset_id", "val_dataset", "val_id",
                                      "train_images", "val_images")},
        "runs": [r.to_json() for r in runs],
        "bootstrap": {**spec.bootstrap.model_dump(), "over": "images (paired by image and seed)"},
        "splits": splits,
    }


# ---------------------------------------------------------------- writing

def write_report(report: dict[str, Any], out: Path) -> AblationResult:
    from xaug.report.html import begin_report

    begin_report(out, ())  # index.html goes, and comes back last: a killed write shows no mixed report
    json_path = out / "ablate.json"
    _write_json(json_path, report)
    csv_path = out / "ablate.csv"
    atomic_write(csv_path, report_csv(report).encode())
    pngs = plot_report(report, out)
    html_path = write_html(report, out, pngs)
    return AblationResult(out, report, json_path, csv_path, html_path, pngs)


CSV_HEADER = ["split", "subset", "images", "class", "arm", "seeds", "mean", "std", "min", "max",
              "diff_vs_baseline", "ci_low", "ci_high", "excludes_zero",
              "ci_seeds_low", "ci_seeds_high", "excludes_zero_seeds", "per_seed"]


def report_csv(report: dict[str, Any]) -> str:
    """One row per (split, subset, class or mean, arm): mean/spread over seeds and, for candidates,
    the paired difference to the baseline with its interval."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for split, sd in report["splits"].items():
        for subset, e in sd["subsets"].items():
            for arm, a in e["arms"].items():
                d = e["differences"].get(arm)
                w.writerow([split, subset, e["images"], MEAN, arm, a["n"], _f(a["mean"]), _f(a["std"]),
                            _f(a["min"]), _f(a["max"]), *_diff_cells(d), " ".join(_f(v) for v in a["per_seed"])])
                for c in CLASSES:
                    w.writerow([split, subset, e["images"], c, arm, a["n"], _f(a["per_class"][c]),
                                _f(a["per_class_std"][c]), "", "", *_diff_cells(d["per_class"][c] if d else None), ""])
    return buf.getvalue()


def _diff_cells(d: dict[str, Any] | None) -> list[Any]:
    if d is None:
        return [""] * 7
    return [_f(d["diff"]), _f(d["low"]), _f(d["high"]), d["excludes_zero"], _f(d["low_seeds"]),
            _f(d["high_seeds"]), d["excludes_zero_seeds"]]


def _f(v: float) -> str:
    return f"{v:.6f}"


def plot_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Per split: differences to the baseline with intervals per subset, and per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = report["candidates"]
    level = int(round(100 * report["bootstrap"]["confidence"]))
    pngs = []
    for split, sd in report["splits"].items():
        subsets = list(sd["subsets"])
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(subsets) * max(1, len(cands)) * 0.6 + 1.6), dpi=100)
        y = np.arange(len(subsets))[::-1].astype(float)
        step = 0.7 / max(1, len(cands))
        for ci, cand in enumerate(cands):
            off = (ci - (len(cands) - 1) / 2) * step
            d = [sd["subsets"][s]["differences"][cand] for s in subsets]
            est = np.array([x["diff"] for x in d])
            lo, hi = np.array([x["low"] for x in d]), np.array([x["high"] for x in d])
            lo2, hi2 = np.array([x["low_seeds"] for x in d]), np.array([x["high_seeds"] for x in d])
            ax.errorbar(est, y - off, xerr=[np.maximum(est - lo2, 0), np.maximum(hi2 - est, 0)], fmt="none",
                        elinewidth=1, alpha=0.45, color=f"C{ci + 1}")
            ax.errorbar(est, y - off, xerr=[est - lo, hi - est], fmt="o", ms=4, capsize=3, elinewidth=2,
                        color=f"C{ci + 1}", label=cand)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y, [f"{s} ({sd['subsets'][s]['images']})" for s in subsets], fontsize=8)
        ax.set_xlabel(f"mean Dice minus {report['baseline']}: {level}% interval over images (thick), "
                      "over seeds and images (thin)")
        ax.set_title(f"{report['name']}: {split} split, paired differences per subset")
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        p = out / f"diff_subsets_{split}.png"
        save_figure(fig, p)
        plt.close(fig)
        pngs.append(p)

        e = sd["subsets"]["all"]
        fig, ax = plt.subplots(figsize=(14, 4.2), dpi=100)
        x = np.arange(len(CLASSES), dtype=float)
        for ci, cand in enumerate(cands):
            off = (ci - (len(cands) - 1) / 2) * step
            d = [e["differences"][cand]["per_class"][c] for c in CLASSES]
            est = np.array([v["diff"] for v in d])
            lo, hi = np.array([v["low"] for v in d]), np.array([v["high"] for v in d])
            ax.errorbar(x + off, est, yerr=[est - lo, hi - est], fmt="o", ms=3, capsize=2, color=f"C{ci + 1}",
                        label=cand)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, CLASSES, rotation=70, fontsize=8)
        ax.set_ylabel(f"Dice minus {report['baseline']}")
        ax.set_title(f"{report['name']}: {split} split, all {e['images']} images, per class ({level}% intervals)")
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        p = out / f"diff_classes_{split}.png"
        save_figure(fig, p)
        plt.close(fig)
        pngs.append(p)
    return pngs


def _settings_text(train: dict[str, Any]) -> str:
    """An arm's own trainer settings in one line: `arch=resunet, aug.scale=0.5`; '' for none."""
    parts = []
    for key, value in train.items():
        if isinstance(value, dict):
            parts += [f"{key}.{k}={v}" for k, v in value.items()]
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def write_html(report: dict[str, Any], out: Path, pngs: list[Path]) -> Path:
    from xaug.report import html as H

    level = int(round(100 * report["bootstrap"]["confidence"]))
    base, cands = report["baseline"], report["candidates"]
    arms_rows = [[name, a["version"], a["train_images"], a["epochs"], a["steps"], a["built"],
                  _settings_text(a.get("train") or {})] for name, a in report["arms"].items()]
    partial = report.get("partial")
    if partial:
        parts_head = [H.section("PARTIAL REPORT", H.note(f"{partial['note']}. Not run or not finished: "
                                                          f"{', '.join(partial['missing_runs'])}."))]
    else:
        parts_head = []
    parts = parts_head + [H.section("Setup", H.kpis([("dataset", report["dataset"]["name"]), ("seeds", len(report["seeds"])),
                                         ("runs", len(report["runs"])),
                                         ("equal steps", "yes" if report["equal_steps"] else "no")]),
                       H.table(["arm", "training version", "images", "epochs", "steps", "built",
                                "trainer settings (over the shared ones)"], arms_rows),
                       H.note(f"Differences are candidate minus {base}, paired by image and seed. [CI]: {level}% "
                              "percentile bootstrap over images (the trained models held fixed); "
                              "{seeds+images}: the same with the seeds resampled too, which also counts the "
                              f"seed-to-seed variation ({report['bootstrap']['resamples']} resamples). "
                              "* marks an interval that excludes 0. sd is the standard deviation of the "
                              "per-seed mean Dice; 'per seed' lists each seed's difference."))]
    for split, sd in report["splits"].items():
        header = ["subset", "images"] + [f"{a} (mean ± sd)" for a in [base, *cands]] + \
                 [f"{c} - {base} [{level}% CI] {{seeds+images}}; per seed" for c in cands]
        rows = []
        for subset, e in sd["subsets"].items():
            row = [subset, e["images"]] + [f"{e['arms'][a]['mean']:.4f} ± {e['arms'][a]['std']:.4f}"
                                           for a in [base, *cands]]
            row += [_diff_text(e["differences"][c], seeds=True) for c in cands]
            rows.append(row)
        e = sd["subsets"]["all"]
        cls_rows = []
        for c in CLASSES:
            row = [c] + [f"{e['arms'][a]['per_class'][c]:.4f}" for a in [base, *cands]]
            row += [_diff_text(e["differences"][k]["per_class"][c]) for k in cands]
            cls_rows.append(row)
        parts.append(H.section(
            f"{split} split ({sd['images']} images)",
            H.table(header, rows),
            H.plot(f"diff_subsets_{split}.png", f"differences per subset, {split}"),
            H.sub("per class, all images (mean over seeds)"),
            H.table(["class", *[base, *cands], *[f"{k} - {base}" for k in cands]], cls_rows),
            H.plot(f"diff_classes_{split}.png", f"differences per class, {split}"),
            anchor=split))
    run_rows = [[r["arm"], r["seed"], r["steps"], r["state"], r["run_dir"]] for r in report["runs"]]
    parts.append(H.section("Runs", H.table(["arm", "seed", "steps", "state", "run folder"], run_rows)))
    return H.write_page(out / "index.html", f"Ablation {report['name']}", parts,
                        subtitle=f"{base} vs {', '.join(cands)} on {report['dataset']['name']}: "
                                 f"{len(report['seeds'])} seeds, {report['spec']['train']['steps']} steps per run")


def _diff_text(d: dict[str, Any], seeds: bool = False) -> str:
    star = " *" if d["excludes_zero"] else ""
    text = f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]{star}"
    if seeds:
        star2 = " *" if d["excludes_zero_seeds"] else ""
        text += f" {{{d['low_seeds']:+.4f}, {d['high_seeds']:+.4f}}}{star2}"
        if d.get("per_seed"):
            text += "; " + " ".join(f"{v:+.4f}" for v in d["per_seed"])
    return text


__all__ = ["AblationSpec", "ablation_schema", "parse_ablation", "load_ablation", "run_ablation",
           "equal_epochs", "image_subsets", "analyse", "AblationResult"]
