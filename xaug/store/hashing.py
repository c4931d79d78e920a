"""Canonical JSON, content hashes, and the incremental hash cache (size + mtime + inode).

The cache's rule (the import fast path): a file whose absolute path, size, mtime_ns and inode all
equal the cached ones is taken to hold the cached bytes. A change in place that keeps the size and
restores the mtime defeats it; `xaug import --rehash` reads everything again. `xaug verify` and the
read-time checks never use the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """The only bytes xaug ever hashes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """sha256 of files keyed by absolute path, trusted while size, mtime_ns and inode are unchanged.

    `hashed` and `reused` count what happened, so callers (and tests) can see that an unchanged
    folder is not re-hashed. A file can also be marked `checked` (it decoded / parsed cleanly):
    an unchanged checked file need not be checked again; a changed file loses the mark.
    """

    def __init__(self, db_path: Path, trust: bool = True):
        """With `trust=False` (`xaug import --rehash`) every file is read and hashed again (and
        loses its `checked` mark until checked again); the fresh results replace the cached ones."""
        self.trust = trust
        db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(db_path)
        except sqlite3.DatabaseError:  # a damaged cache is only a cache: start a new one
            self._db = None
            db_path.replace(db_path.with_name(db_path.name + ".damaged"))
            self._db = self._open(db_path)
        self._lock = threading.Lock()
        self.hashed = 0
        self.reused = 0

    @staticmethod
    def _open(db_path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(db_path), timeout=60, check_same_thread=False)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER,"
                       " mtime_ns INTEGER, inode INTEGER, sha256 TEXT, checked INTEGER DEFAULT 0)")
            db.execute("SELECT size, mtime_ns, inode, sha256, checked FROM files LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def lookup(self, path: Path) -> tuple[str | None, bool, os.stat_result]:
        st = os.stat(path)
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, inode, sha256, checked FROM files WHERE path=?",
                                   (str(path),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns and row[2] == st.st_ino:
            return row[3], bool(row[4]), st
        return None, False, st

    def digest(self, path: Path) -> tuple[str, int, bool]:
        """(sha256, size, checked) for one file; `checked` only for an unchanged, checked file."""
        path = Path(path).resolve()
        cached, checked, st = self.lookup(path)
        if cached is not None and self.trust:
            with self._lock:
                self.reused += 1
            return cached, st.st_size, checked
        sha = sha256_file(path)
        with self._lock:
            self.hashed += 1
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,0)",
                             (str(path), st.st_size, st.st_mtime_ns, st.st_ino, sha))
        return sha, st.st_size, False

    def trusted(self, path: Path) -> tuple[str | None, bool, os.stat_result]:
        """(sha256, checked, stat) of a file the cache may vouch for (counted as reused), else
        (None, False, stat): the import's driver asks this, and only the files it cannot vouch for
        are read (by `record`'s caller, wherever the reading runs)."""
        cached, checked, st = self.lookup(Path(path).resolve())
        if cached is not None and self.trust:
            with self._lock:
                self.reused += 1
            return cached, checked, st
        return None, False, st

    def record(self, path: Path, st: os.stat_result, sha: str, checked: bool = False) -> None:
        """The sha256 of a file hashed elsewhere (a worker that read it after `trusted` gave `st`)."""
        with self._lock:
            self.hashed += 1
            self._db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)",
                             (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino, sha, int(checked)))

    def mark_checked(self, path: Path, checked: bool = True) -> None:
        """Mark a file as checked (or, `checked=False`, as to be checked again)."""
        with self._lock:
            self._db.execute("UPDATE files SET checked=? WHERE path=?", (int(checked), str(Path(path).resolve())))

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()
