"""Reading the project's YAML files (pipelines, ablation specs) safely, with line numbers.

A spec file is a few dozen nodes. Aliases (*a) re-use an anchored (&a) subtree, so a small file
can stand for an exponentially large document ("billion laughs"): its size once expanded is
counted, without expanding it, and refused beyond a bound; a key repeated in one mapping (the later
one would silently win) and an alias that refers to itself are refused too, each naming its line.

>>> import tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "p.yaml"
>>> _ = f.write_text("name: a\\nsteps:\\n  - op: flip\\n")
>>> read_yaml(f, "pipeline file", "pipelines/rotate.yaml")[1][("steps", 0, "op")]
3
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from xaug.errors import BadInput

MAX_YAML_NODES = 10_000
MAX_YAML_BYTES = 1 << 20


def read_yaml(path: Path | str, what: str, example: str) -> tuple[Any, dict[tuple, int]]:
    """(data, {key path: line}) of a YAML file, refused with one line naming the file (and line)
    when it is missing, unreadable, too large, expands beyond the bound, repeats a key or is empty."""
    import yaml

    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"no such {what}; give a YAML file such as {example}", where=where) from None
    except IsADirectoryError:
        raise BadInput(f"is a folder; give {_a(what)} (a YAML file such as {example})", where=where) from None
    except UnicodeDecodeError as exc:  # a binary file, or text saved in another encoding
        raise BadInput(f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                       f"{_a(what)} is YAML text: save it as UTF-8", where=where) from None
    except OSError as exc:
        raise BadInput(f"cannot read the {what} ({exc.__class__.__name__}: {exc})", where=where) from None
    if len(text) > MAX_YAML_BYTES:
        raise BadInput(f"{what} is {len(text):,} characters, more than {MAX_YAML_BYTES:,}; "
                       f"{_a(what)} is only a few kilobytes", where=where)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_yaml_nodes(node, where, what)  # before anything walks or builds the aliased tree
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
        raise BadInput(f"the {what} is empty", where=where)
    return data, lines


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


def _check_yaml_nodes(root, where: str, what: str = "pipeline file") -> None:
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
                           f"re-used many times?); {_a(what)} is only a few dozen values",
                           where=f"{where}:{node.start_mark.line + 1}")
        active.discard(key)
        expanded[key] = total
        return total

    if root is not None:
        size(root)


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun
