"""Manifests, hashing, names and versions, locks, verify, export.

>>> from xaug.store import Store
>>> store = Store("xaug-data")            # doctest: +SKIP
>>> ds = store.open("raw")                # newest version of "raw"  # doctest: +SKIP
>>> [s.relpath for s in ds.samples(split="train", role="val")][:1]  # doctest: +SKIP
"""
from xaug.store.hashing import canonical_json, sha256_bytes, sha256_file
from xaug.store.manifest import FileEntry, ItemEntry, manifest_id
from xaug.store.store import (Builder, Dataset, Store, atomic_write, check_image_relpath, check_manifest, check_name,
                              check_relpath, read_sample_image, read_verified, sample_bytes, stage_item)

__all__ = ["Store", "Dataset", "Builder", "ItemEntry", "FileEntry", "stage_item", "check_name", "canonical_json", "sha256_bytes",
           "sha256_file", "manifest_id", "read_verified", "read_sample_image", "sample_bytes", "check_relpath",
           "check_image_relpath", "check_manifest", "atomic_write"]
