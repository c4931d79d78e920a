"""Odd store states and flags at their limits, as a careless user or a hostile test tries them: each
is one `error: ...` line naming the file or flag, exit 2, and the store left as it was."""
from __future__ import annotations

import json
import threading
import time

import pytest
from filelock import FileLock

from _hardening import refused, snapshot, unchanged, xaug
from xaug.store import Store


@pytest.mark.parametrize("under", ["versions", "versions/{id}", "versions/{id}/data", "staging", "anything"])
def test_home_inside_another_store_is_refused(store_copy, under):
    """`--home` pointing into a store's versions/ folder: synth wrote a whole second store (refs.json,
    versions/, lock) into raw_v1's folder, which `xaug verify raw` then reported as dozens of extra files."""
    home = store_copy / under.format(id=Store(store_copy).open("raw").id)
    before = snapshot(store_copy)
    for command in (["synth", "--persons", "1", "--test-persons", "0", "--size", "64", "-q"], ["datasets"],
                    ["show", "raw"], ["flip", "-q"]):
        refused(xaug(*command, "--home", home),
                f"{home}: is inside the store {store_copy}; give that store's own folder as --home")
    unchanged(store_copy, before)


def test_a_name_listed_with_no_version(store_copy):
    """refs.json edited to `"raw": []`: the error was "unknown dataset 'raw' (did you mean raw?)"."""
    (store_copy / "refs.json").write_text('{"raw": []}')
    before = snapshot(store_copy)
    refused(xaug("show", "raw", "--home", store_copy),
            f"{store_copy}/refs.json: 'raw' is listed with no version; remove the entry or restore refs.json")
    assert snapshot(store_copy) == before


def test_persons_below_one_is_one_problem(tmp_path):
    """--persons -1 also printed 'error: --label-swaps counts training persons: 0 to -1, got 0'."""
    res = xaug("synth", "--persons", "-1", "--home", tmp_path / "h")
    refused(res, "synth: --persons must be at least 1, got -1")
    assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("lock", ["lock", "staging"])
def test_a_lock_held_by_another_command_is_waited_for_then_one_line(store_copy, monkeypatch, lock):
    """Another live process holding the store's lock (or the plan's staging lock): the command waited
    silently for 10 (60) minutes, then died with a filelock.Timeout traceback. A lock left by a killed
    process is released by the system and does not block (see the second half)."""
    import xaug.store.store as store_module

    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.3)
    monkeypatch.setattr(store_module, "STAGING_WAIT_S", 0.3)
    args = ["synth", "--persons", "1", "--test-persons", "0", "--size", "64", "-q", "--jobs", "1",
            "--home", store_copy]
    if lock == "lock":
        path = store_copy / "lock"
    else:  # the plan's own staging lock: learn the plan key from a first build elsewhere
        other = store_copy.parent / "other"
        assert xaug(*args[:-1], other).exit_code == 0
        path = store_copy / "staging" / next(p.name for p in (other / "staging").glob("synth-*.lock"))
    before = snapshot(store_copy)
    holder = FileLock(str(path))
    holder.acquire()
    try:
        res = xaug(*args)
    finally:
        holder.release()
    line = refused(res, f"{path}: another xaug command has held this lock for ")
    assert line.endswith("let it finish (or stop it) and run the same command again")
    assert res.stderr.startswith(f"waiting for {path}: another xaug command is writing to this store")
    # nothing published; staging/ may keep the finished images for the next run (as after a kill)
    assert {k: v for k, v in snapshot(store_copy).items() if not k.startswith("staging/")} == before
    assert Store(store_copy).verify("raw") == []
    # the lock file is still there (as a killed process leaves it) but nobody holds it: no wait
    assert path.exists()
    t0 = time.monotonic()
    res = xaug(*args)
    assert res.exit_code == 0 and "waiting" not in res.stderr, res.output
    assert time.monotonic() - t0 < 30


def test_a_lock_released_while_waiting_lets_the_command_finish(store_copy, monkeypatch):
    import xaug.store.store as store_module

    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 30.0)
    taken = threading.Event()

    def hold():
        with FileLock(str(store_copy / "lock")):
            taken.set()
            time.sleep(3.0)

    threading.Thread(target=hold).start()
    assert taken.wait(10)
    res = xaug("synth", "--persons", "1", "--test-persons", "0", "--size", "64", "-q", "--jobs", "1",
               "--home", store_copy)
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith(f"waiting for {store_copy}/lock")
    assert [r["name"] for r in json.loads(xaug("datasets", "--json", "--home", store_copy).stdout)] == \
        ["raw_v1", "raw_v2"]


def test_a_too_long_name_says_the_limit(tmp_path):
    """A 300-character --name was echoed whole, and the message did not say names stop at 64."""
    res = xaug("synth", "--persons", "1", "--name", "x" * 300, "--home", tmp_path / "h")
    line = refused(res, "'" + "x" * 40 + "'... (300 characters): dataset names are plain identifiers")
    assert "at most 64 characters" in line and len(line) < 300
    assert not (tmp_path / "h").exists()


def test_a_version_folder_deleted_by_hand_is_rebuilt_by_the_command_that_made_it(make_store):
    """The error for a deleted version says 'or rebuild the version', but rebuilding was refused with
    that same error (the plan cache and the name still listed it). Now the same command puts the
    identical version back under its old name and number, and what derives from it reads again."""
    import shutil

    home = make_store(persons=2, test_persons=1, size=64)
    synth = ["synth", "--persons", "2", "--test-persons", "1", "--size", "64", "--seed", "0", "-q", "--home", home]
    rotate = ["rotate", "--angles", "10", "--from", "raw", "-q", "--home", home]
    assert xaug(*rotate).exit_code == 0
    store = Store(home)
    raw, rot = store.open("raw"), store.open("rotate")
    refs = json.loads((home / "refs.json").read_text())
    for gone, command in ((rot, rotate), (raw, synth)):
        shutil.rmtree(home / "versions" / gone.id)
        refused(xaug("verify", gone.name, "--home", home), f"{home / 'versions' / gone.id / 'manifest.json'}: "
                "version listed in refs.json has no manifest")
        res = xaug(*command)
        assert res.exit_code == 0, res.output
        again = Store(home).open(gone.name)
        assert again.id == gone.id and again.name == gone.name
        assert json.loads((home / "refs.json").read_text()) == refs  # no new version number
    for name in ("raw_v1", "rotate_v1"):  # rotate_v1's items by reference read raw's rebuilt files
        res = xaug("verify", name, "--home", home)
        assert res.exit_code == 0 and f"{name}: OK" in res.output, res.output


def test_versions_that_refs_json_does_not_name_are_reported(store_copy):
    """refs.json emptied by hand (or a build killed between publishing and naming its version):
    `datasets` said only 'no datasets yet' while versions/ held every version."""
    (store_copy / "refs.json").write_text("{}")
    before = snapshot(store_copy)
    res = xaug("datasets", "--home", store_copy)
    assert res.exit_code == 0 and "no datasets yet" in res.output
    assert f"warning: {store_copy / 'versions'}: 1 version(s) that refs.json does not name" in res.output
    assert snapshot(store_copy) == before
