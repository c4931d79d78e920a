"""Manifests: what a version holds and how it was made; its canonical hash is the version id.

Everything in the manifest is hashed except the `info` block (creation time, the name it was
first registered under, library versions), so the id depends only on content and recipe: not
on file order, absolute paths, timestamps or worker count.
"""
from __future__ import annotations

import platform
import time
from typing import Any

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
