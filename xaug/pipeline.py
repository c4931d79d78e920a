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
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Literal, Sequence, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from xaug import __version__
from xaug.errors import BadInput, XaugError
from xaug.store.hashing import canonical_json

if TYPE_CHECKING:  # the store is only needed when a pipeline runs
    from xaug.store import Dataset, Store

NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
# Items per task handed to a worker: a few images, so memory stays bounded by ~CHUNK decoded
# images per worker while the per-task overhead (pickling plans and polygons) stays small.
CHUNK = 4
# Decoded source images a worker keeps (rotate --per-image K decodes each source once).
IMAGE_CACHE = 4


# ---------------------------------------------------------------- the spec

class PipelineBase(BaseModel):
    """The fields every pipeline has; `steps` is added by `pipeline_model()` from the ops registry."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("augment", description="Base name of the version to write; the store appends _v<N>.")
    source: str = Field("raw", min_length=1,
                        description="Source version: a name ('raw', newest), 'raw_v2', or a hash prefix.")
    split: Literal["train", "test"] = Field(
        "train", description="Split to read. From train only persons outside the validation fold are used.")
    seed: int = Field(0, ge=0, description="Seed of every random draw; another seed makes another version.")
    include_source: bool = Field(
        False, description="Also list the source items used, by reference (no bytes copied).")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not re.fullmatch(NAME_PATTERN, v) or re.search(r"_v\d+$", v):
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
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = tuple(loc) + ("op",)
        msg = _op_message(err.get("input"))
    key = ".".join(str(p) for p in loc) or "(top level)"
    return f"{key}: {msg}{_at(loc, lines)}"


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
    import yaml

    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput("no such pipeline file; give a YAML file such as pipelines/rotate.yaml",
                       where=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the pipeline file ({exc.__class__.__name__}: {exc})", where=where) from None
    if len(text) > MAX_YAML_BYTES:
        raise BadInput(f"pipeline file is {len(text):,} characters, more than {MAX_YAML_BYTES:,}; "
                       "a pipeline is a short file", where=where)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_yaml_nodes(node, where)  # before anything walks or builds the aliased tree
        data = yaml.SafeLoader("").construct_document(node) if node is not None else None
        lines = _key_lines(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        at = f"{where}:{mark.line + 1}" if mark is not None else where
        raise BadInput(f"not valid YAML: {problem}" + (f" (column {mark.column + 1})" if mark else ""),
                       where=at) from None
    except RecursionError:
        raise BadInput("not valid YAML: nested too deeply", where=where) from None
    if data is None:
        raise BadInput("the pipeline file is empty", where=where)
    return parse_pipeline(data, where=where, lines=lines)


# A pipeline file is a few dozen nodes. Aliases (*a) re-use an anchored (&a) subtree, so a small file
# can stand for an exponentially large document ("billion laughs"): its size once expanded is
# counted, without expanding it, and refused beyond this bound.
MAX_YAML_NODES = 10_000
MAX_YAML_BYTES = 1 << 20


def _check_yaml_nodes(root, where: str) -> None:
    """Refuse a composed YAML document that expands beyond MAX_YAML_NODES nodes, refers to itself,
    or repeats a key in one mapping (the later one would silently win); each names the line."""
    import yaml

    expanded: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in active:
            raise BadInput("an alias refers to its own anchor (a document that never ends)",
                           where=f"{where}:{node.start_mark.line + 1}")
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in seen:
                        raise BadInput(f"duplicate key {k.value!r} (first at line {seen[k.value]}); keep one",
                                       where=f"{where}:{k.start_mark.line + 1}")
                    seen[k.value] = k.start_mark.line + 1
                total += size(k) + size(v)
                if total > MAX_YAML_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += size(v)
                if total > MAX_YAML_NODES:
                    break
        if total > MAX_YAML_NODES:
            raise BadInput(f"document expands to more than {MAX_YAML_NODES:,} values (anchors and aliases "
                           "re-used many times?); a pipeline is a short file",
                           where=f"{where}:{node.start_mark.line + 1}")
        active.discard(key)
        expanded[key] = total
        return total

    if root is not None:
        size(root)


def _key_lines(node, path: tuple = ()) -> dict[tuple, int]:
    """Key path -> 1-based line of a composed YAML node tree."""
    import yaml

    out: dict[tuple, int] = {}
    if node is None:
        return out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            out.update(_key_lines(value, sub))
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out.update(_key_lines(value, path + (i,)))
    return out


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
    labels: dict[str, str | None]      # source relpath -> its label file, where it has one
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


def label_paths(ds: "Dataset", samples: Sequence) -> dict[str, str | None]:
    """Where each sample's label JSON is (own or referenced bytes); None without a label."""
    items = {it["image"]["path"]: it for it in ds.items}
    out: dict[str, str | None] = {}
    for s in samples:
        it = items[s.relpath]
        out[s.relpath] = str(ds.file_path(it["label"], it.get("stored_in"))) if it.get("label") else None
    return out


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
    return Plan(spec, key, ds, by_rel, label_paths(ds, samples), tasks, refs)


# ---------------------------------------------------------------- execution

@dataclass
class RunResult:
    dataset: "Dataset"
    cached: bool                  # an identical earlier run made it: nothing was done
    made: int = 0                 # items produced by this run
    resumed: int = 0              # items an earlier, interrupted run had already staged
    referenced: int = 0           # source items listed by reference

    def summary(self) -> str:
        ds = self.dataset
        n = len(ds.manifest.get("items", ())) if isinstance(ds.manifest, dict) else 0
        head = f"{ds.name} ({ds.id[:8]}…) {n} items"
        if self.cached:
            return f"{head}; up to date (same spec, source and seed), nothing to do"
        parts = [f"{self.made} made"]
        if self.resumed:
            parts.append(f"{self.resumed} resumed")
        if self.referenced:
            parts.append(f"{self.referenced} by reference")
        return f"{head} ({', '.join(parts)})"


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


def run_pipeline(store: "Store", spec, jobs: int | None = None, progress: bool = True) -> RunResult:
    """Plan, then (unless the plan already ran) make every item in parallel and commit a version."""
    from xaug.ops import get_op

    for step in spec.steps:  # fail on an unknown op before touching the store
        get_op(step.op)
    source = store.open(spec.source)
    existing = store.find_plan(plan_key(spec, source.id))
    if existing is not None:  # decided before a single label or pixel is read
        return RunResult(existing, cached=True)
    plan = make_plan(store, spec, source)
    jobs = default_jobs() if not jobs or jobs < 1 else int(jobs)
    with store.build(name=spec.name, kind=plan.kind, plan_key=plan.key, source=plan.source,
                     spec=resolved_spec(spec), seed=spec.seed) as b:
        todo = [t for t in plan.tasks if not b.has_item(t.relpath)]
        resumed = len(plan.tasks) - len(todo)
        for sample in plan.references:
            b.reference(sample)
        records = _execute(b.staging, plan, todo, jobs, progress, done=resumed)
        if hasattr(b, "adopt"):
            for record in records:
                b.adopt(record)
        b.set_persons(_persons(plan))
        ds = b.commit()
    return RunResult(ds, cached=False, made=len(todo), resumed=resumed, referenced=len(plan.references))


def _persons(plan: Plan) -> dict:
    from xaug.layout import PersonMeta

    known = plan.source.persons or {}
    used = {t.person for t in plan.tasks} | {s.person for s in plan.references}
    return {p: known.get(p) or PersonMeta(p) for p in sorted(used)}


def _chunks(tasks: list[Task], size: int) -> Iterator[list[Task]]:
    for i in range(0, len(tasks), size):
        yield tasks[i:i + size]


def _execute(staging: Path, plan: Plan, todo: list[Task], jobs: int, progress: bool, done: int) -> list[dict]:
    """Make the items of `todo`, `jobs` workers, a few images per task; returns staged records."""
    total = len(plan.tasks)
    records: list[dict] = []
    if not todo:
        return records
    chunks = list(_chunks(todo, CHUNK))

    def payload(chunk: list[Task]) -> dict[str, tuple]:
        rels = sorted({r for t in chunk for r in t.plan.sources})
        return {r: (str(plan.samples[r].image_path), plan.labels[r]) for r in rels}

    with _progress_bar(progress, total, done, plan.spec.name) as advance:
        if jobs == 1 or len(chunks) == 1:  # in this process, one stream (sources are only paths)
            records = _Worker().run(Path(staging), todo, payload(todo), on_done=advance)
        else:
            from joblib import Parallel, delayed

            # pre_dispatch bounds how many chunks (and their decoded images) are in flight.
            parallel = Parallel(n_jobs=jobs, return_as="generator", pre_dispatch="2*n_jobs",
                                batch_size=1)
            for out in parallel(delayed(_run_chunk)(str(staging), chunk, payload(chunk)) for chunk in chunks):
                records += out
                advance(len(out))
    return records


def _run_chunk(staging: str, chunk: list[Task], sources: dict[str, tuple]) -> list[dict]:
    """A joblib task: make and stage each item of the chunk (one image at a time)."""
    import cv2

    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend
    return _Worker().run(Path(staging), chunk, sources)


class _Worker:
    """Applies plans one image at a time. Keeps the last few decoded sources (rotate -K decodes
    each source once) and hands each finished item to one writer thread, so writing and hashing
    item i overlaps computing item i+1 (at most one finished item waits: memory stays bounded)."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple] = {}

    def load(self, sources: dict[str, tuple]) -> Callable[[str], tuple]:
        from xaug.layout import parse_annotation_doc, read_image

        def load(relpath: str):
            image_path, label_path = sources[relpath]
            hit = self.cache.get(image_path)
            if hit is None:
                image = read_image(image_path)
                image.setflags(write=False)  # ops must not modify a cached source in place
                annotations: list = []
                if label_path is not None:
                    annotations, _, problems, _ = parse_annotation_doc(Path(label_path).read_bytes(), label_path)
                    if problems:
                        raise BadInput(problems[0], problems=problems[1:])
                if len(self.cache) >= IMAGE_CACHE:
                    self.cache.pop(next(iter(self.cache)))
                hit = self.cache[image_path] = (image, annotations)
            return hit[0], list(hit[1])

        return load

    def run(self, staging: Path, chunk: list[Task], sources: dict[str, tuple],
            on_done: Callable[[int], None] | None = None) -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor

        from xaug.layout import encode_png
        from xaug.ops import get_op

        load = self.load(sources)
        records: list[dict] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaug-write") as writer:
            pending = None
            for task in chunk:
                image, annotations, provenance = get_op(task.op).apply(task.plan, load)
                h, w = image.shape[:2]
                png = encode_png(image)
                del image
                if pending is not None:
                    records.append(pending.result())
                    if on_done:
                        on_done(1)
                # the label JSON is built, and the files hashed and written, while the next
                # image decodes and warps (OpenCV releases the GIL there)
                pending = writer.submit(_write_item, staging, task, png, annotations, provenance, h, w)
            if pending is not None:
                records.append(pending.result())
                if on_done:
                    on_done(1)
        return records


def _write_item(staging: Path, task: Task, png: bytes, annotations: list, provenance: dict,
                height: int, width: int) -> dict:
    """The label JSON (competition format, height/width metadata) and both files, staged atomically."""
    from xaug.layout import annotation_bytes, annotation_doc
    from xaug.store import stage_item

    doc = annotation_doc(annotations, None, filename=Path(task.relpath).name, person=task.person,
                         height=height, width=width)
    provenance = {"op": task.op, "step": task.step, **_jsonable(provenance)}
    return stage_item(staging, task.relpath, png, annotation_bytes(doc), person=task.person, side=task.side,
                      split=task.split, fold=task.fold, provenance=provenance, meta={})


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


class _progress_bar:
    """A rich progress bar on stderr (silent when disabled); yields an `advance(n)` function."""

    def __init__(self, enabled: bool, total: int, done: int, label: str):
        self.enabled, self.total, self.done, self.label = enabled, total, done, label
        self.bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=False)
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
