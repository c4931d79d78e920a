"""Declarative augmentation pipelines: the pydantic spec, planning with per-item seeds, and
parallel execution into a new store version.

A pipeline reads one split of a source version (from `train`, only the persons outside the
validation fold), runs each step on it independently and writes every step's outputs, plus the
source items by reference when `include_source` is set, into ONE new version:

>>> spec = parse_pipeline({"name": "rotate", "steps": [{"op": "rotate"}]})   # doctest: +SKIP
>>> result = run_pipeline(Store(home), spec, jobs=2)                          # doctest: +SKIP
>>> result.dataset.name                                                        # doctest: +SKIP
'rotate_v1'

Same resolved spec + same source version + same seed + same xaug version = same plan key: the
store finds the version that plan made and nothing is done. Planning (drawing every random
parameter) happens in the main process from `SeedSequence(seed, spawn_key=(step, item))`, and
applying a plan is a pure function of the plan and the source bytes, so 1 and N workers write
identical bytes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Sequence, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from xaug import __version__
from xaug.errors import BadInput, XaugError
from xaug.seeds import SEED_MAX
from xaug.store.execute import CHUNK, BuildRequest, BuildResult, MadeItem, build, default_jobs, run_tasks  # noqa: F401
from xaug.store.hashing import canonical_json
# the safe YAML reading is shared with ablation specs; these names stay importable from here
from xaug.yamlio import MAX_YAML_BYTES, MAX_YAML_NODES, _check_yaml_nodes, _key_lines  # noqa: F401

if TYPE_CHECKING:  # the store is only needed when a pipeline runs
    from xaug.store import Dataset, Store

# Decoded source images a worker keeps (rotate --per-image K decodes each source once).
IMAGE_CACHE = 4


# ---------------------------------------------------------------- the spec

class PipelineBase(BaseModel):
    """The fields every pipeline has; `steps` is added by `pipeline_model()` from the ops registry."""

    model_config = ConfigDict(extra="forbid", strict=True)  # `seed: true` or `include_source: 1` are mistakes

    name: str = Field("augment", description="Base name of the version to write; the store appends _v<N>.")
    source: str = Field("raw", min_length=1,
                        description="Source version: a name ('raw', newest), 'raw_v2', or a hash prefix.")
    split: Literal["train", "test"] = Field(
        "train", description="Split to read. From train only persons outside the validation fold are used.")
    seed: int = Field(0, ge=0, le=SEED_MAX,
                      description="Seed of every random draw; another seed makes another version.")
    include_source: bool = Field(
        False, description="Also list the source items used, by reference (no bytes copied).")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        from xaug.store.store import is_plain_name

        if not is_plain_name(v):
            raise ValueError(f"{v!r} is not a plain name: letters, digits, '_' or '-', starting with a "
                             "letter, at most 64 characters, not ending in _v<N> (the store numbers versions)")
        return v


_MODELS: dict[tuple, type[BaseModel]] = {}


def pipeline_model() -> type[BaseModel]:
    """The Pipeline model: PipelineBase + `steps`, a list discriminated on `op` over every
    registered op's spec class (rebuilt when an op is registered later)."""
    from xaug.ops import spec_classes

    classes = tuple(spec_classes())
    if not classes:  # pragma: no cover - the registry always has rotate/mosaic/flip
        raise XaugError("no augmentation ops are registered")
    model = _MODELS.get(classes)
    if model is None:
        step = (Annotated[Union[classes], Field(discriminator="op")] if len(classes) > 1  # type: ignore[valid-type]
                else classes[0])
        model = create_model(
            "Pipeline", __base__=PipelineBase,
            steps=(list[step], Field(min_length=1, description="Ops run on the source; outputs collected.")),
        )
        _MODELS[classes] = model
    return model


def pipeline_schema() -> dict[str, Any]:
    """The JSON schema of a pipeline file (for editors: `xaug schema > pipeline.schema.json`)."""
    schema = pipeline_model().model_json_schema()
    schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
    schema["title"] = "xaug pipeline"
    return schema


def parse_pipeline(data: Any, where: str = "pipeline", lines: dict[tuple, int] | None = None):
    """Validate a whole pipeline document; errors become one `key.path: message` line each.

    `lines` maps key paths to 1-based YAML line numbers, so problems also name their line.
    """
    if not isinstance(data, dict):
        raise BadInput("a pipeline is a mapping with 'name', 'source', 'steps', ...", where=where)
    try:
        return pipeline_model().model_validate(data)
    except ValidationError as exc:
        problems = [_problem_line(err, lines) for err in exc.errors()]
    noun = "problem" if len(problems) == 1 else "problems"
    raise BadInput(f"invalid pipeline ({len(problems)} {noun}); nothing was run", where=where,
                   problems=problems)


def _problem_line(err: dict, lines: dict[tuple, int] | None) -> str:
    loc = _clean_loc(err.get("loc", ()))
    msg = err.get("msg", "invalid")
    kind = err.get("type")
    if kind == "value_error" and msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "extra_forbidden":
        msg = "unknown key; remove it (see `xaug schema`)"
    elif kind in _TYPE_ERRORS:  # strict types: say what was given (`n: true` is not a count)
        msg = f"{msg}, got {_shown(err.get('input'))}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = tuple(loc) + ("op",)
        msg = _op_message(err.get("input"))
    key = ".".join(str(p) for p in loc) or "(top level)"
    return f"{key}: {msg}{_at(loc, lines)}"


_TYPE_ERRORS = {"int_type", "float_type", "bool_type", "string_type", "int_from_float"}


def _shown(value: Any) -> str:
    """A value as its YAML spelling would read (true, null, 'text'), cut to a few characters."""
    import json

    try:
        text = json.dumps(value, default=repr)
    except ValueError:  # a circular structure
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _op_message(step: Any) -> str:
    """The registry's message for a step's bad or missing `op` (known ops + a close match)."""
    from xaug.ops import get_op, op_names

    op = step.get("op") if isinstance(step, dict) else None
    if op is None:
        return f"missing 'op'; one of: {', '.join(op_names())}"
    try:
        get_op(str(op))
    except XaugError as exc:
        return exc.message
    return f"unknown op {op!r}"  # pragma: no cover


def _clean_loc(loc: Sequence) -> tuple:
    """Drop the union tag pydantic inserts after a step index: steps.0.rotate.x -> steps.0.x."""
    loc = tuple(loc)
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int) and _is_op_tag(loc[2]):
        return loc[:2] + loc[3:]
    return loc


def _is_op_tag(part: Any) -> bool:
    from xaug.ops import op_names

    return isinstance(part, str) and part in set(op_names())


def _at(loc: Sequence, lines: dict[tuple, int] | None) -> str:
    if not lines:
        return ""
    loc = tuple(loc)
    while loc and loc not in lines:  # a missing key: point at its parent
        loc = loc[:-1]
    line = lines.get(loc)
    return f" (line {line})" if line else ""


def load_pipeline(path: Path | str):
    """Read and validate a pipeline YAML file; every problem names the file (and line)."""
    from xaug.yamlio import read_yaml

    data, lines = read_yaml(path, "pipeline file", "pipelines/rotate.yaml")
    return parse_pipeline(data, where=str(path), lines=lines)


def estimate_output(store: "Store", spec, source: "Dataset | None" = None) -> tuple[int, int]:
    """(items, bytes) a pipeline would write, from the source's manifest and one PNG header: no
    plan is drawn and no pixel read, so a request too big for the disk is refused at once.

    An output item is taken to be as large as the mean source item (image + label), scaled by the
    pixel area when a step sets its own `size`.
    """
    from xaug.layout import image_size

    ds = source or store.open(spec.source)
    samples = source_samples(ds, spec.split)
    by_rel = {e.relpath: e for e in ds.entries}
    sizes = [sum(f.size for f in by_rel[s.relpath].files()) for s in samples]
    per_item = sum(sizes) / len(sizes)
    h, w, _ = image_size(samples[0].image_path)
    items = total = 0
    for step in spec.steps:
        count = getattr(step, "n", None) or len(samples) * int(getattr(step, "per_image", 1) or 1)
        size = getattr(step, "size", None)
        scale = (size[0] * size[1]) / max(1, h * w) if size else 1.0
        items += int(count)
        total += int(count * per_item * scale)
    return items, total


def check_output_space(store: "Store", spec, source: "Dataset | None" = None) -> None:
    """Refuse a pipeline whose estimated output does not fit the free disk space (unless the same
    plan was already made: then nothing will be written)."""
    ds = source or store.open(spec.source)
    if store.find_plan(plan_key(spec, ds.id)) is not None:
        return
    items, nbytes = estimate_output(store, spec, ds)
    store.ensure_space(nbytes, f"{items:,} new items", "free space, or ask for fewer items "
                       "(--n, --per-image) or a smaller size")
    need, free = items * PLAN_BYTES_PER_ITEM, _available_memory()
    if free is not None and need > free // 2:
        from xaug.store.store import human_bytes

        raise BadInput(f"planning {items:,} items needs about {human_bytes(need)} of memory but only "
                       f"{human_bytes(free)} is available; ask for fewer items (--n, --per-image) or run "
                       "several smaller pipelines", where=spec.name)


# Memory a planned item holds until its version is committed (measured: a 2x2 mosaic ~2.2 KB,
# a rotation ~0.9 KB; see docs/store.md).
PLAN_BYTES_PER_ITEM = 2500


def _available_memory() -> int | None:
    """MemAvailable of /proc/meminfo (free + reclaimable cache), in bytes; None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return None


# ---------------------------------------------------------------- planning

def resolved_spec(spec) -> dict[str, Any]:
    """The spec with every default filled in, as JSON (what the manifest records)."""
    return spec.model_dump(mode="json")


def plan_key(spec, source_id: str) -> str:
    """Hash of (resolved spec with the source resolved to its version id, seed, xaug version)."""
    resolved = resolved_spec(spec)
    resolved["source"] = source_id  # 'raw', 'raw_v1' and a hash prefix of one version: one plan
    payload = {"spec": resolved, "source": source_id, "seed": spec.seed, "xaug": __version__}
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def item_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of output item `index` of step `step`: a child of SeedSequence(seed)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(step, index)))


@dataclass
class Task:
    """One output item to make: which op, its plan, where it goes."""

    step: int
    op: str
    plan: Any            # the op's ItemPlan
    relpath: str         # train/DCM/<person>/<stem>.png
    person: str
    side: str | None
    split: str
    fold: int | None = None   # the source person's fold when the output keeps that person


@dataclass
class Plan:
    """Everything a run will do, decided before any pixel is read."""

    spec: Any
    key: str
    source: "Dataset"
    samples: dict[str, Any]            # source relpath -> Sample (labels are parsed by the workers)
    tasks: list[Task]
    references: list[Any] = field(default_factory=list)   # source Samples listed by reference

    @property
    def kind(self) -> str:
        ops = {t.op for t in self.tasks}
        return ops.pop() if len(ops) == 1 and not self.references else "pipeline"


def source_samples(ds: "Dataset", split: str) -> list:
    """The samples a pipeline may read: one split; from train only non-validation persons."""
    role = "train" if split == "train" else None
    samples = ds.samples(split=split, role=role, load=False)
    if not samples:
        extra = " outside the validation fold" if role else ""
        raise BadInput(f"no {split} images{extra} in {ds.name}; choose another split or source",
                       where="source")
    return sorted(samples, key=lambda s: s.relpath)


def source_infos(samples: Sequence) -> list:
    """SourceInfo for each sample, sizes from the PNG header only (no decoding)."""
    from xaug.layout import image_size
    from xaug.ops import SourceInfo

    infos = []
    for s in samples:
        h, w, _ = image_size(s.image_path)
        infos.append(SourceInfo(relpath=s.relpath, person=s.person, side=s.side, split=s.split,
                                height=h, width=w, fold=s.fold))
    return infos


def make_plan(store: "Store", spec, source: "Dataset | None" = None) -> Plan:
    """Resolve the source, compute the plan key and draw every item's parameters (no pixels read)."""
    from xaug.layout import image_relpath
    from xaug.ops import get_op
    from xaug.ops.base import split_side

    ds = source or store.open(spec.source)
    key = plan_key(spec, ds.id)
    samples = source_samples(ds, spec.split)
    infos = source_infos(samples)
    by_rel = {s.relpath: s for s in samples}
    taken: set[str] = set(by_rel) if spec.include_source else set()
    tasks: list[Task] = []
    for step_index, step in enumerate(spec.steps):
        op = get_op(step.op)
        plans = op.plan(step, infos, lambda i, _s=step_index: item_rng(spec.seed, _s, i))
        for item in plans:
            rel = image_relpath(item.split, item.person, item.stem)
            if rel in taken:  # the same op twice in one pipeline: keep stems unique per step
                base, side = split_side(item.stem)  # the side suffix stays last
                item = replace(item, stem=f"{base}_s{step_index}{side}")
                rel = image_relpath(item.split, item.person, item.stem)
            if rel in taken:
                raise XaugError(f"two outputs would both be written to {rel}",
                                where=f"steps.{step_index}")
            missing = [r for r in item.sources if r not in by_rel]
            if missing:  # pragma: no cover - an op planning outside its sources is a bug
                raise XaugError(f"plan names unknown source {missing[0]}", where=f"steps.{step_index}")
            taken.add(rel)
            first = by_rel[item.sources[0]] if item.sources else None
            fold = item.fold
            if fold is None and first is not None and first.person == item.person:
                fold = first.fold  # the output keeps the source's person, so it keeps its fold
            tasks.append(Task(step_index, step.op, item, rel, item.person, item.side, item.split, fold))
    refs = list(samples) if spec.include_source else []
    return Plan(spec, key, ds, by_rel, tasks, refs)


# ---------------------------------------------------------------- execution

RunResult = BuildResult  # what run_pipeline returns: the version, cached or made, and counts


@dataclass(frozen=True)
class SourceFile:
    """A source file a task reads: where its bytes are, its path in the layout, and the sha256
    and size the source manifest promises."""

    path: str
    relpath: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class SourcedTask:
    """A Task with the files of its sources: what a worker needs, nothing else of the plan."""

    task: Task
    sources: tuple[tuple[str, SourceFile, SourceFile | None], ...]   # (relpath, image, label)
    dataset: str = "the source"                                     # name for `xaug verify`

    @property
    def relpath(self) -> str:
        return self.task.relpath


def sourced_tasks(plan: Plan, tasks: Sequence[Task]) -> list[SourcedTask]:
    entries = {e.relpath: e for e in plan.source.entries}

    def file_of(f) -> SourceFile | None:
        return None if f is None else SourceFile(str(plan.source.file_path(f)), f.path, f.sha256, f.size)

    out = []
    for t in tasks:
        srcs = tuple((rel, file_of(entries[rel].image), file_of(entries[rel].label)) for rel in t.plan.sources)
        out.append(SourcedTask(t, srcs, plan.source.name))
    return out


class PipelineMaker:
    """The engine's `make_item` for pipeline ops: decode the task's sources (checking their bytes
    against the source manifest), apply the op's plan, encode the PNG and the label JSON.

    Keeps the last few decoded sources (rotate --per-image K decodes each source once); the cache
    is not pickled, so each worker chunk starts empty and memory stays bounded.
    """

    def __init__(self) -> None:
        self.cache: dict[str, tuple] = {}

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.cache = {}

    def _load(self, st: SourcedTask, extras: dict[str, dict]) -> Callable[[str], tuple]:
        """The op's loader: (image, annotations) of a source; its label's other top-level keys go
        to `extras`."""
        from xaug.layout import decode_image, parse_annotation_doc

        files = {rel: (img, lab) for rel, img, lab in st.sources}

        def load(relpath: str):
            img_file, label_file = files[relpath]
            hit = self.cache.get(img_file.path)
            if hit is None:
                image = decode_image(read_checked(img_file, st.dataset), img_file.path)
                image.setflags(write=False)  # ops must not modify a cached source in place
                annotations: list = []
                extra: dict = {}
                if label_file is not None:
                    data = read_checked(label_file, st.dataset)
                    annotations, extra, problems, _ = parse_annotation_doc(data, label_file.path)
                    if problems:
                        raise BadInput(problems[0], problems=problems[1:])
                if len(self.cache) >= IMAGE_CACHE:
                    self.cache.pop(next(iter(self.cache)))
                hit = self.cache[img_file.path] = (image, annotations, extra)
            extras[relpath] = hit[2]
            return hit[0], list(hit[1])

        return load

    def __call__(self, st: SourcedTask) -> MadeItem:
        from xaug.layout import annotation_bytes, annotation_doc, carried_label_keys, encode_png
        from xaug.ops import get_op

        task = st.task
        extras: dict[str, dict] = {}
        image, annotations, provenance = get_op(task.op).apply(task.plan, self._load(st, extras))
        h, w = image.shape[:2]
        png = encode_png(image)
        del image
        carried = carried_label_keys(extras.get(task.plan.sources[0], {})) if len(task.plan.sources) == 1 else None
        doc = annotation_doc(annotations, carried, filename=Path(task.relpath).name, person=task.person,
                             height=h, width=w)
        provenance = {"op": task.op, "step": task.step, **_jsonable(provenance)}
        return MadeItem(task.relpath, png, annotation_bytes(doc), person=task.person, split=task.split,
                        side=task.side, fold=task.fold, provenance=provenance, meta={})


def read_checked(f: SourceFile, dataset: str) -> bytes:
    """The bytes of a source file, refused (naming it and `xaug verify`) if they are not the ones
    its manifest lists: the store's one read-time check."""
    from xaug.store import read_verified

    return read_verified(f.path, f.sha256, where=f.relpath, name=dataset, size=f.size)


def run_pipeline(store: "Store", spec, jobs: int | None = None, progress: bool = True,
                 backend: Any = None) -> RunResult:
    """Plan, then (unless the plan already ran) make every item with the store's build engine."""
    from xaug.ops import get_op

    for step in spec.steps:  # fail on an unknown op before touching the store
        get_op(step.op)
    source = store.open(spec.source)
    existing = store.find_plan(plan_key(spec, source.id))
    if existing is not None:  # decided before a single label or pixel is read
        return RunResult(existing, cached=True)
    check_output_space(store, spec, source)  # before planning: what the disk or memory cannot hold
    from xaug.store.backends import get_backend

    backend = get_backend(backend)
    backend.warm(jobs, ("xaug.ops",))  # the pool starts (and imports the ops) while this process plans
    plan = make_plan(store, spec, source)
    request = BuildRequest(spec.name, plan.kind, plan.key, plan.source, resolved_spec(spec), spec.seed)
    return build(store, request, sourced_tasks(plan, plan.tasks), PipelineMaker(), persons=_persons(plan),
                 references=plan.references, jobs=jobs, progress=progress, label=spec.name, backend=backend)


def _persons(plan: Plan) -> dict:
    from xaug.layout import PersonMeta

    known = plan.source.persons or {}
    used = {t.person for t in plan.tasks} | {s.person for s in plan.references}
    return {p: known.get(p) or PersonMeta(p) for p in sorted(used)}


def _execute(staging: Path, plan: Plan, todo: list[Task], jobs: int, progress: bool, done: int) -> int:
    """Make the items of `todo` into `staging` with the engine (a building block for tests)."""
    return run_tasks(Path(staging), sourced_tasks(plan, todo), PipelineMaker(), jobs=jobs, progress=progress,
                     label=plan.spec.name, total=len(plan.tasks), done=done)


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and tuples in provenance -> plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
