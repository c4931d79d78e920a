"""`xaug ablate`: the paired bootstrap (known answers), step equalising, the spec, and a tiny
ablation end to end that is killed midway and resumed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from trainer.ablate import (BootstrapSettings, PlannedRun, Scores, analyse, equal_epochs, exact_steps_hint,
                            image_subsets, load_ablation, parse_ablation, train_argv)
from trainer.bootstrap import paired_bootstrap, resample_counts, seed_spread, seeds_and_images_bootstrap
from xaug.cli import app
from xaug.classes import CLASSES
from xaug.errors import BadInput
from xaug.model import Sample

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- bootstrap (pure)

def test_bootstrap_two_images_gives_the_exact_percentiles():
    # d = (0, 1): a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% percentiles are exactly 0 and 1, and the estimate is 1/2
    iv = paired_bootstrap(np.array([[0.0, 1.0]]), resamples=20_000, seed=3)
    assert iv.estimate[0] == pytest.approx(0.5)
    assert (iv.low[0], iv.high[0]) == (0.0, 1.0)
    assert not iv.excludes_zero()[0]


def test_bootstrap_interval_matches_the_normal_theory_width():
    # for n images with population sd s, the bootstrap sd of the mean is s / sqrt(n) (ddof=0)
    rng = np.random.default_rng(0)
    d = rng.normal(0.03, 0.1, size=(1, 400))
    iv = paired_bootstrap(d, resamples=20_000, seed=0)
    half = 1.959964 * d.std() / np.sqrt(d.shape[1])
    assert iv.estimate[0] == pytest.approx(d.mean())
    assert iv.low[0] == pytest.approx(d.mean() - half, abs=0.08 * half)
    assert iv.high[0] == pytest.approx(d.mean() + half, abs=0.08 * half)
    assert iv.excludes_zero()[0]


def test_bootstrap_is_paired_by_image_and_seed():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.95, size=(3, 60))       # images differ a lot, seeds too
    cand = base + 0.01                                 # every (seed, image) pair gains exactly 0.01
    iv = paired_bootstrap(cand - base, resamples=2000, seed=0)
    assert iv.low[0] == pytest.approx(0.01) and iv.high[0] == pytest.approx(0.01)
    # opposite effects under two seeds cancel per image: a resampled image brings both seeds
    x = rng.uniform(0, 0.2, size=60)
    iv = paired_bootstrap(np.stack([x, -x]), resamples=2000, seed=0)
    assert abs(iv.low[0]) < 1e-12 and abs(iv.high[0]) < 1e-12


def test_seed_level_bootstrap_widens_only_when_seeds_disagree():
    # two seeds whose differences are 0.01 and 0.05 on every image: a resample's mean is 0.01,
    # 0.03 or 0.05 with probabilities 1/4, 1/2, 1/4, so the interval is exactly [0.01, 0.05],
    # while over images alone (models fixed) it has no width at all
    d = np.stack([np.full(30, 0.01), np.full(30, 0.05)])
    both = seeds_and_images_bootstrap(d, resamples=4000, seed=0)
    assert (both.low[0], both.high[0]) == pytest.approx((0.01, 0.05))
    images = paired_bootstrap(d, resamples=4000, seed=0)
    assert images.low[0] == pytest.approx(0.03) and images.high[0] == pytest.approx(0.03)
    # seeds that agree: both intervals are about the same
    rng = np.random.default_rng(2)
    x = rng.normal(0.02, 0.05, size=200)
    d = np.stack([x, x, x])
    a, b = paired_bootstrap(d, 4000, seed=1), seeds_and_images_bootstrap(d, 4000, seed=1)
    assert b.low[0] == pytest.approx(a.low[0], abs=1e-3) and b.high[0] == pytest.approx(a.high[0], abs=1e-3)


def test_bootstrap_columns_share_draws_and_reject_bad_input():
    counts = resample_counts(5, 300, seed=0)
    assert counts.shape == (300, 5) and (counts.sum(axis=1) == 5).all()
    d = np.arange(10.0).reshape(1, 5, 2)
    iv = paired_bootstrap(d, counts=counts)
    assert iv.estimate.tolist() == [4.0, 5.0]
    assert iv.high[1] - iv.high[0] == pytest.approx(1.0)  # same draws: shifted by exactly 1
    with pytest.raises(ValueError, match="no images"):
        paired_bootstrap(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="counts are for 5 images"):
        paired_bootstrap(np.zeros((1, 4)), counts=counts)


def test_seed_spread():
    assert seed_spread([0.5, 0.7]) == {"mean": 0.6, "std": pytest.approx(0.141421356), "min": 0.5, "max": 0.7,
                                       "n": 2}
    assert seed_spread([0.5])["std"] == 0.0


# ---------------------------------------------------------------- planning and analysis

def test_equal_epochs_and_exact_steps():
    assert equal_epochs(50, 8, 288) == (48, 288)
    assert equal_epochs(150, 8, 288) == (16, 288)
    assert equal_epochs(114, 8, 288) == (21, 294)   # 14 steps per epoch: nearest whole epoch
    assert equal_epochs(5, 8, 10) == (10, 10)        # one (partial) batch per epoch
    assert exact_steps_hint([6, 12, 14], 300) == 336  # lcm 84: 4 x 84 is nearest
    assert exact_steps_hint([6, 12, 18], 10) == 36   # never below one common multiple


def test_nproc_runs_are_xaug_train_commands(tmp_path):
    opts = {"size": 64, "batch": 2, "arch": "unet", "aug": {"hflip": 0.0}, "world_size": 2}
    run = PlannedRun("wrist", 1, "w_v1", "ab12", 16, 3, 12, opts, "f" * 64, tmp_path / "r")
    argv = train_argv(Path("home"), run, "cd34", "cpu", 0, resume=True)
    text = " ".join(argv)
    assert argv[0] == "train" and "--dataset ab12 --val cd34" in text and "--epochs 3 --seed 1" in text
    assert "--val-every 3" in text and "--hflip 0.0" in text and "--arch unet" in text
    assert argv[-1] == "--resume" and "--workers 0" in text and "world_size" not in text
    run.options = {**opts, "aug": {"clahe": 0.2}}
    with pytest.raises(BadInput, match="aug.clahe has no `xaug train` flag"):
        train_argv(Path("home"), run, "cd34", "cpu", None, resume=False)


def _sample(i: int, meta: dict) -> Sample:
    return Sample(relpath=f"test/DCM/ID{i:03d}/im{i}.png", image_path=Path("x"), person=f"ID{i:03d}",
                  split="test", meta=meta)


def test_image_subsets_follow_the_recorded_meta():
    samples = [_sample(0, {"wrist_rotated": True, "edge_cases": ["ring"]}),
               _sample(1, {"wrist_rotated": False, "edge_cases": []}),
               _sample(2, {"wrist_rotated": True, "edge_cases": ["implant", "ring"]})]
    subsets = {k: v.tolist() for k, v in image_subsets(samples).items()}
    assert subsets == {"all": [True, True, True], "wrist_rotated": [True, False, True],
                       "upright": [False, True, False], "edge:implant": [False, False, True],
                       "edge:ring": [True, False, True], "no_edge_case": [False, True, False]}
    assert list(image_subsets([_sample(0, {})])) == ["all"]  # imported data records nothing


def test_analyse_reports_differences_that_match_the_means():
    rng = np.random.default_rng(0)
    images = [f"im{i}.png" for i in range(6)]
    seeds = [0, 1]
    scores = {a: {s: Scores(images, rng.uniform(0.3, 0.9, size=(6, len(CLASSES)))) for s in seeds}
              for a in ("base", "cand")}
    subsets = {"all": np.ones(6, bool), "first": np.arange(6) < 2}
    res = analyse(scores, ["base", "cand"], seeds, subsets, BootstrapSettings(resamples=500))
    for name, mask in subsets.items():
        e = res[name]
        assert e["images"] == int(mask.sum())
        means = {a: np.mean([scores[a][s].dice[mask].mean() for s in seeds]) for a in ("base", "cand")}
        d = e["differences"]["cand"]
        assert d["diff"] == pytest.approx(means["cand"] - means["base"], abs=2e-6)
        assert d["low"] <= d["diff"] <= d["high"]
        assert e["arms"]["base"]["mean"] == pytest.approx(means["base"], abs=2e-6)
        assert len(d["per_seed"]) == 2 and set(d["per_class"]) == set(CLASSES)



def test_tables_keep_every_number_whole_on_a_narrow_non_terminal(monkeypatch):
    """A log is 80 columns to rich; the table once read `wrist 0.0350 0.0055 +0.01…` there."""
    import io

    from rich.console import Console

    import xaug.cli.ablate as cli_ablate
    import xaug.cli.common as common

    rng = np.random.default_rng(0)
    images, seeds = [f"im{i}.png" for i in range(8)], [0, 1, 2]
    base = {s: rng.uniform(0.3, 0.9, size=(8, len(CLASSES))) for s in seeds}
    shift = {"baseline": (0.0, 0.0), "wrist": (0.0123, 0.002), "mosaic": (0.0, 0.05), "combined": (0.0456, 0.002)}
    scores = {a: {s: Scores(images, np.clip(base[s] + d + rng.normal(0, sd, base[s].shape), 0, 1))
                  for s in seeds} for a, (d, sd) in shift.items()}
    subsets = {"all": np.ones(8, bool), "wrist_rotated": np.arange(8) < 5, "no_edge_case": np.arange(8) >= 5}
    analysis = analyse(scores, list(shift), seeds, subsets, BootstrapSettings(resamples=200))
    report = {"name": "a-long-ablation-name", "baseline": "baseline", "candidates": ["wrist", "mosaic", "combined"],
              "seeds": seeds, "bootstrap": {"confidence": 0.95},
              "arms": {a: {"steps": 96, "epochs": 12, "train_images": 64} for a in shift},
              "splits": {"test": {"images": 8, "subsets": analysis}}}
    for width in (80, 40):
        log = io.StringIO()
        narrow = Console(file=log, width=width, highlight=False, soft_wrap=True)
        monkeypatch.setattr(common, "out", narrow)
        monkeypatch.setattr(cli_ablate, "out", narrow)
        cli_ablate.print_tables(report)
        text = log.getvalue()
        assert "…" not in text
        lines, marks = text.splitlines(), []
        for subset, e in analysis.items():
            assert any(subset in line for line in lines), subset
            for arm, a in e["arms"].items():
                row = next(line for line in lines if f" {arm} " in line and f"{a['mean']:.4f}" in line)
                assert f"{a['std']:.4f}" in row
                d = e["differences"].get(arm)
                if d is not None:
                    mark = ("**" if d["excludes_zero_seeds"] else "*") if d["excludes_zero"] else ""
                    assert f"{d['diff']:+.4f}" in row and f"[{d['low']:+.4f}, {d['high']:+.4f}]" in row
                    assert row.rstrip().endswith(mark or "]"), row
                    marks.append(mark)
        assert "**" in marks and "" in marks  # the data has intervals that exclude 0 and some that do not


# ---------------------------------------------------------------- the spec

def _tiny_spec(**over) -> dict:
    spec = {
        "name": "tiny",
        "dataset": "raw",
        "candidates": [
            {"name": "wrist", "pipeline": {"include_source": True, "steps": [
                {"op": "rotate", "pivot": "wrist", "angles": [-40, 40], "per_image": 1}]}},
            {"name": "flip", "pipeline": {"include_source": True, "steps": [{"op": "flip"}]},
             "train": {"width": 6}},   # data and trainer both: the arm's settings reach its runs
        ],
        "seeds": 2,
        "train": {"steps": 4, "size": 64, "batch": 4, "width": 4, "depth": 3, "workers": 0,
                  "aug": {"hflip": 0.0}},
        "bootstrap": {"resamples": 200},
    }
    spec.update(over)
    return spec


def test_spec_problems_are_one_line_each_and_name_the_key(tmp_path):
    bad = _tiny_spec(seeds=[1, 1], extra_key=1)
    bad["candidates"][0]["version"] = "raw"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(BadInput) as exc:
        load_ablation(path)
    text = "\n".join(exc.value.lines())
    assert "extra_key: unknown key" in text and "(line" in text
    assert "either 'version' or 'pipeline'" in text
    with pytest.raises(BadInput, match="invalid pipeline") as exc:
        parse_ablation(_tiny_spec(candidates=[{"name": "x", "pipeline": {"steps": [{"op": "rotte"}]}}]))
    assert any("steps.0.op" in p and "rotate" in p for p in exc.value.problems)
    result = runner.invoke(app, ["ablate", str(path), "--check"])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    schema = json.loads(runner.invoke(app, ["schema", "ablate"]).output)
    assert schema["title"] == "xaug ablation" and "candidates" in schema["properties"]


@pytest.mark.parametrize("seeds", [10**12, list(range(1001))])
def test_an_absurd_seed_count_is_one_line_before_any_list_is_made(seeds):
    with pytest.raises(BadInput) as exc:
        parse_ablation(_tiny_spec(seeds=seeds))
    text = "\n".join(exc.value.lines())
    assert len(exc.value.problems) == 1 and "seeds" in text and "at most 1000" in text


def test_an_arm_may_change_the_trainer_settings_only(tiny_dataset, tmp_path):
    """A candidate with its own `train` (no version, no pipeline): same data, its settings over the
    shared block (aug and options merged key by key), other runs (hash), the same steps."""
    from trainer.ablate import ArmData, arm_settings, plan_runs

    spec = parse_ablation(_tiny_spec(candidates=[
        {"name": "res", "train": {"arch": "resunet", "aug": {"scale": 0.5}, "options": {"warmup_epochs": 0}}},
        {"name": "wide", "train": {"width": 8, "batch": 2}}]))
    res = arm_settings(spec, spec.candidates[0])
    assert res.arch == "resunet" and res.aug == {"hflip": 0.0, "scale": 0.5} and res.steps == 4
    assert res.options == {"warmup_epochs": 0} and res.width == 4  # unset: the shared block's
    assert arm_settings(spec, spec.baseline) is spec.train
    arms = [ArmData(a, tiny_dataset) for a in spec.arms]
    runs = plan_runs(spec, arms, tiny_dataset, tmp_path / "runs")
    by_arm = {r.arm: r for r in runs if r.seed == 0}
    assert len({r.config_hash for r in runs}) == len(runs) == 6
    assert by_arm["res"].options["arch"] == "resunet" and by_arm["res"].options["aug"]["scale"] == 0.5
    assert "arch" not in by_arm["baseline"].options
    # the identity (hash) is of what trains: the arm's arch and aug over today's defaults
    from trainer.ablate import resolved_config
    from trainer.config import TrainConfig

    res_id = resolved_config(by_arm["res"].options, 1, 0)
    assert res_id["arch"] == "resunet" and res_id["aug"]["scale"] == 0.5 and res_id["aug"]["hflip"] == 0.0
    unet_id = resolved_config({**by_arm["res"].options, "arch": "unet", "aug": {"hflip": 0.0}}, 1, 0)
    assert unet_id["arch"] == "unet" and unet_id["aug"]["scale"] == TrainConfig().aug.scale
    # 12 images minus the 2 validation persons' 4 -> 8 training images: batch 4 -> 2 steps per
    # epoch, batch 2 -> 4; each arm gets the ablation's 4 steps
    assert {r.steps for r in runs} == {4} and by_arm["wide"].epochs == 1 and by_arm["baseline"].epochs == 2

    with pytest.raises(BadInput) as exc:
        parse_ablation(_tiny_spec(candidates=[{"name": "same"}]))
    assert any("'version', 'pipeline' or 'train'" in p for p in exc.value.problems)
    with pytest.raises(BadInput) as exc:
        parse_ablation(_tiny_spec(candidates=[{"name": "x", "train": {"steps": 8}}]))
    assert any("candidates.0.train.steps" in p for p in exc.value.problems)
    bad = parse_ablation(_tiny_spec(candidates=[{"name": "x", "train": {"aug": {"zoom": 0.5}}}]))
    with pytest.raises(BadInput, match="unknown online augmentation zoom") as exc:
        plan_runs(bad, [ArmData(a, tiny_dataset) for a in bad.arms], tiny_dataset, tmp_path / "runs")
    assert exc.value.where == "candidates.0.train.aug"
    clash = parse_ablation(_tiny_spec(candidates=[{"name": "x", "train": {"options": {"seed": 3}}}]))
    with pytest.raises(BadInput, match="candidates.0.train.options must not set seed"):
        plan_runs(clash, [ArmData(a, tiny_dataset) for a in clash.arms], tiny_dataset, tmp_path / "runs")


@pytest.mark.parametrize("where, train", [
    ("candidates.1.train (--arch)", {"arch": "bogus"}),
    ("candidates.1.train.aug", {"aug": {"zoom": 0.5}}),
    ("candidates.1.train (--size)", {"size": 100}),
])
def test_bad_trainer_settings_stop_the_check_and_the_run_before_anything_is_built(store_copy, tmp_path, where, train):
    """An arm's (or the shared) trainer settings are resolved by --check and before the first
    pipeline is built: `arch: bogus` used to pass --check, build every arm's version, then stop."""
    from trainer.ablate import run_ablation
    from xaug.store import Store

    spec = _tiny_spec()
    spec["candidates"][1]["train"] = train
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    res = runner.invoke(app, ["ablate", str(path), "--check", "--home", str(store_copy)])
    assert res.exit_code == 2 and res.output.startswith(f"error: {where}"), res.output
    before = sorted(v.name for v in Store(store_copy).datasets())
    with pytest.raises(BadInput, match=where.replace("(", r"\(").replace(")", r"\)")):
        run_ablation(Store(store_copy), load_ablation(path), out=tmp_path / "out", runs_dir=tmp_path / "runs",
                     device="cpu", progress=False, log=lambda text: None)
    assert sorted(v.name for v in Store(store_copy).datasets()) == before and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "pipelines").glob("ablate-*.yaml")))
def test_the_ablation_specs_in_pipelines_are_valid(path):
    spec = load_ablation(REPO / "pipelines" / path)
    assert len(spec.seed_list()) == 3 and spec.candidates


# ---------------------------------------------------------------- end to end, killed and resumed

def _ablate_cmd(spec: Path, home: Path, tmp: Path) -> list[str]:
    return ["ablate", str(spec), "--home", str(home), "--runs", str(tmp / "runs"), "--out",
            str(tmp / "report"), "--device", "cpu", "--jobs", "1"]


def test_ablate_end_to_end_resumes_after_a_kill(tmp_path):
    spec = tmp_path / "tiny.yaml"
    synth = {"name": "raw", "persons": 6, "test_persons": 2, "size": 128, "seed": 0}
    spec.write_text(yaml.safe_dump(_tiny_spec(dataset=None, synth=synth), sort_keys=False))
    args = _ablate_cmd(spec, tmp_path / "home", tmp_path)
    runs = tmp_path / "runs"

    # killed (SIGKILL, nothing to clean up) as soon as the first run is trained and scored
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "xaug", *args, "-q"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 240
    try:
        while not list(runs.glob("*/ablate_scores_test.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the first run did not finish in time"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = next(runs.glob("*/ablate_scores_test.json")).parent
    before = (first / "last.pt").stat().st_mtime_ns
    assert not (tmp_path / "report" / "ablate.json").exists()

    result = runner.invoke(app, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    states = {Path(r["run_dir"]).name: r["state"] for r in report["runs"]}
    assert states[first.name] == "reused" and len(states) == 6
    assert (first / "last.pt").stat().st_mtime_ns == before

    # equal steps, every arm, both splits, subsets from the recorded meta
    assert report["equal_steps"] and {a["steps"] for a in report["arms"].values()} == {4}
    assert report["arms"]["wrist"]["epochs"] == 1 and report["arms"]["baseline"]["epochs"] == 2
    assert report["baseline"] == "baseline" and report["candidates"] == ["wrist", "flip"]
    test = report["splits"]["test"]["subsets"]
    assert {"all", "wrist_rotated", "upright"} <= set(test)
    for subset in test.values():
        for cand in ("wrist", "flip"):
            d = subset["differences"][cand]
            means = subset["arms"]
            assert d["diff"] == pytest.approx(means[cand]["mean"] - means["baseline"]["mean"], abs=1e-5)
            assert d["low"] <= d["diff"] + 1e-9 and d["diff"] <= d["high"] + 1e-9
            assert d["low_seeds"] <= d["diff"] + 1e-9 <= d["high_seeds"] + 2e-9
            assert len(d["per_seed"]) == 2
    out = tmp_path / "report"
    rows = (out / "ablate.csv").read_text().splitlines()
    assert rows[0].startswith("split,subset,images,class,arm")
    assert len(rows) - 1 == sum(len(s["subsets"]) for s in report["splits"].values()) * 3 * 30
    assert "<table" in (out / "index.html").read_text() and "width=6" in (out / "index.html").read_text()
    assert report["arms"]["flip"]["train"] == {"width": 6} and report["arms"]["wrist"]["train"] == {}
    for r in report["runs"]:
        stored = json.loads((Path(r["run_dir"]) / "config.json").read_text())
        assert stored["width"] == (6 if r["arm"] == "flip" else 4), r["run_dir"]
    for split in ("val", "test"):
        for kind in ("subsets", "classes"):
            assert (out / f"diff_{kind}_{split}.png").stat().st_size > 5_000

    # a third call trains nothing and prints the same numbers as a table
    again = runner.invoke(app, [*args, "-q"])
    assert again.exit_code == 0, again.output
    assert "test split" in again.stdout and "baseline" in again.stdout
    report2 = json.loads((out / "ablate.json").read_text())
    assert all(r["state"] == "reused" for r in report2["runs"])
    assert report2["splits"] == report["splits"]


def test_an_interrupted_ablation_writes_a_partial_report_then_finishes(tmp_path, monkeypatch):
    """Ctrl-C, SIGTERM or a time limit during the third run: the finished baseline and wrist runs of
    seed 0 are reported (marked partial, the missing runs named), the command still stops with
    the interrupt, and a rerun reuses them and writes the full report."""
    import trainer.ablate as A

    spec = tmp_path / "tiny.yaml"
    synth = {"name": "raw", "persons": 6, "test_persons": 2, "size": 128, "seed": 0}
    spec.write_text(yaml.safe_dump(_tiny_spec(dataset=None, synth=synth), sort_keys=False))
    args = _ablate_cmd(spec, tmp_path / "home", tmp_path)
    real = A.execute_run
    calls = []

    def interrupted_third(store, run, *a, **k):
        calls.append((run.arm, run.seed))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(store, run, *a, **k)

    monkeypatch.setattr(A, "execute_run", interrupted_third)
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 130, result.output
    assert calls == [("baseline", 0), ("wrist", 0), ("flip", 0)]
    assert "PARTIAL report" in result.output and "interrupted" in result.output
    out = tmp_path / "report"
    part = json.loads((out / "ablate.json").read_text())
    assert part["seeds"] == [0] and part["baseline"] == "baseline" and part["candidates"] == ["wrist"]
    assert set(part["arms"]) == {"baseline", "wrist"} and len(part["runs"]) == 2
    assert part["partial"]["missing_runs"] == ["flip seed 0", "baseline seed 1", "wrist seed 1", "flip seed 1"]
    d = part["splits"]["test"]["subsets"]["all"]["differences"]["wrist"]
    assert d["low"] <= d["diff"] <= d["high"] and len(d["per_seed"]) == 1
    assert "PARTIAL REPORT" in (out / "index.html").read_text()

    monkeypatch.setattr(A, "execute_run", real)
    result = runner.invoke(app, [*args, "--json", "-q"])
    assert result.exit_code == 0, result.output
    full = json.loads(result.stdout)
    assert "partial" not in full and full["candidates"] == ["wrist", "flip"] and full["seeds"] == [0, 1]
    states = [r["state"] for r in full["runs"]]
    assert states.count("reused") == 2 and states.count("done") == 4
    assert "PARTIAL" not in (out / "index.html").read_text()
