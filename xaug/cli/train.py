"""Training commands: train, evaluate, predict, compare (the bundled trainer in `trainer/`).

torch is imported inside the commands, never at module import, so other commands start fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from xaug.cli.common import HomeOption, QuietOption, open_store, out, print_json, print_table
from xaug.classes import CLASSES
from xaug.errors import BadInput


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
    app.command("compare")(compare_cmd)


DeviceOption = typer.Option("auto", "--device", help="auto, cpu or cuda.")


def train_cmd(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", help="Version to train on: name, name_vN or id prefix."),
    val: Optional[str] = typer.Option(None, "--val", help="Validate on this dataset's val persons "
                                      "(default: the root of the training version's lineage)."),
    run: Optional[str] = typer.Option(None, "--run", help="Run name (under runs/) or path; default: the dataset name."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    size: int = typer.Option(512, "--size", min=32, help="Training input side in pixels."),
    batch: int = typer.Option(8, "--batch", min=1),
    lr: float = typer.Option(2e-3, "--lr", help="AdamW peak learning rate."),
    arch: Optional[str] = typer.Option(None, "--arch", help="unet (classic U-Net), resunet (ResNet-encoder "
                                       "U-Net) or smp:<Architecture>:<encoder> (needs segmentation_models_pytorch); "
                                       "default: the measured choice, see docs/training.md.", show_default=False),
    width: int = typer.Option(32, "--width", min=1, help="unet: channels at full resolution; resunet: stem and "
                              "first stage channels (doubling per stage)."),
    depth: int = typer.Option(5, "--depth", min=1, help="Downsamplings (the input side divides by 2**depth)."),
    blocks: int = typer.Option(2, "--blocks", min=1, help="resunet: BasicBlocks per encoder stage (2: ResNet-18-like)."),
    norm: str = typer.Option("batch", "--norm", help="batch, group, instance or none."),
    hflip: float = typer.Option(0.5, "--hflip", min=0.0, max=1.0, help="Online horizontal flip probability."),
    scale_p: Optional[float] = typer.Option(None, "--scale", min=0.0, max=1.0, show_default=False,
                                            help="Online zoom probability (x0.85-1.15); default: on, the "
                                            "measured choice (docs/training.md); 0 switches it off."),
    translate_p: Optional[float] = typer.Option(None, "--translate", min=0.0, max=1.0, show_default=False,
                                                help="Online shift probability (up to 10% of the side); default: "
                                                "on, like --scale; 0 switches it off."),
    gamma_p: float = typer.Option(0.0, "--gamma", min=0.0, max=1.0, help="Online gamma probability (0.7-1.5)."),
    black_p: float = typer.Option(0.0, "--black-level", min=0.0, max=1.0,
                                  help="Online black-level probability (black point raised by 0-40 of 255)."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes (GPUs) to train on with DistributedDataParallel: "
                              "runs this command under torchrun; --batch is per process."),
    disk_cache: bool = typer.Option(True, "--disk-cache/--no-disk-cache", help="Keep resized images in the "
                                    "store's cache/trainer between runs."),
    seed: int = typer.Option(0, "--seed"),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="DataLoader workers."),
    val_every: int = typer.Option(1, "--val-every", min=1, help="Validate every N epochs."),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", min=1, help="Validate on at most N images."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (CUDA)."),
    device: str = DeviceOption,
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from its last.pt."),
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Train a segmentation model on a dataset version; validate with the competition Dice."""
    from trainer.config import TrainConfig
    from trainer.data import OnlineAug
    from trainer.distributed import dist_env, launch
    from trainer.model import DEFAULT_ARCH
    from trainer.runs import train_version

    store = open_store(home)
    options = dict(epochs=epochs, size=size, batch=batch, lr=lr, width=width, depth=depth,
                   arch=DEFAULT_ARCH if arch is None else arch,  # `--arch ''` is refused, not the default
                   blocks=blocks, norm=norm, seed=seed, workers=workers, val_every=val_every,
                   val_limit=val_limit, compile=compile_,
                   aug=OnlineAug(hflip=hflip, gamma=gamma_p, black_level=black_p,
                                 **{k: v for k, v in (("scale", scale_p), ("translate", translate_p)) if v is not None}))
    env = dist_env()
    if nproc > 1 and not env.distributed:
        TrainConfig(**options)  # a bad option fails here, once, before any process starts
        store.open(dataset)
        raise typer.Exit(launch(nproc, ["train", *command_argv(ctx, drop={"nproc"})]))
    result = train_version(store, dataset, val=val, run=run, resume=resume, device=device,
                           progress=not quiet, disk_cache=disk_cache, **options)
    if not env.is_main:
        return  # rank 0 reports
    best = f"{result.best_dice:.4f} (epoch {result.best_epoch})" if result.best_dice is not None else "n/a"
    procs = f" on {env.world} processes" if env.distributed else ""
    out.print(f"run {result.run_dir}: {result.epochs_done} epochs{procs}, best val Dice {best}")


def command_argv(ctx: typer.Context, drop: set[str] = frozenset()) -> list[str]:
    """The command's options as a command line again (values that differ from the defaults),
    for re-running it under torchrun."""
    argv: list[str] = []
    for param in ctx.command.params:  # typer's own click copy: options known by their kind, not class
        if getattr(param, "param_type_name", None) != "option" or param.name in drop or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        if value is None or value == param.default:
            continue
        if getattr(param, "is_flag", False):
            names = param.opts if value else param.secondary_opts
            if names:
                argv.append(names[0])
            continue
        argv += [param.opts[0], str(value)]
    return argv


def _dice_table(title: str, columns: list[str], rows: list[list[float]], delta: bool = False):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("class")
    for c in columns:
        table.add_column(c, justify="right")
    for name, vals in rows:
        cells = []
        for i, v in enumerate(vals):
            if delta and i and i % 2 == 0:
                cells.append(f"[{'green' if v > 0 else 'red' if v < 0 else 'default'}]{v:+.4f}[/]")
            else:
                cells.append(f"{v:.4f}")
        table.add_row(name, *cells)
    return table


def evaluate_cmd(
    run: str = typer.Option(..., "--run", help="Run name (under runs/) or path."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset to score on (default: the run's validation dataset)."),
    split: str = typer.Option("val", "--split", help="val (held-out persons) or test (needs labels)."),
    tta: Optional[str] = typer.Option(None, "--tta", help="Test-time augmentation: hflip."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score at most N images."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    device: str = DeviceOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Per-class competition Dice of a run at the original resolution (table, CSV, JSON)."""
    from trainer.runs import evaluate_run

    ev = evaluate_run(open_store(home), run, dataset=dataset, split=split, tta=tta, device=device,
                      limit=limit, progress=not (json_out or quiet))
    summary = {"run": str(ev.run_dir), "dataset": ev.dataset, "dataset_id": ev.dataset_id, "split": split,
               "tta": tta, **ev.table.summary(), "subsets": summary_subsets(ev.json_path),
               "csv": str(ev.csv_path), "json": str(ev.json_path)}
    if json_out:
        print_json(summary)
        return
    per = ev.table.per_class()
    rows = [[c, [float(d)]] for c, d in zip(CLASSES, per)] + [["mean", [ev.table.mean()]]]
    print_table(_dice_table(f"{ev.run_dir.name} on {ev.dataset} {split} ({len(ev.table)} images)", ["Dice"], rows))
    for key, sub in summary_subsets(ev.json_path).items():
        out.print(f"{key}: {sub['images']} images, mean Dice {sub['mean_dice']:.4f}")
    out.print(f"mean Dice {ev.table.mean():.4f}; written {ev.csv_path} and {ev.json_path}")


def summary_subsets(path: Path) -> dict:
    import json

    return json.loads(Path(path).read_text()).get("subsets") or {}


def predict_cmd(
    run: str = typer.Option(..., "--run", help="Run name (under runs/) or path."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset to predict (default: the run's validation dataset)."),
    split: str = typer.Option("test", "--split", help="test or val."),
    out_path: Path = typer.Option(Path("submission.csv"), "--out", help="Submission CSV to write."),
    tta: Optional[str] = typer.Option(None, "--tta", help="Test-time augmentation: hflip."),
    device: str = DeviceOption,
    quiet: bool = QuietOption,
    home: Optional[Path] = HomeOption,
) -> None:
    """Write the competition submission CSV (image_name,class,rle) at the original resolution."""
    from trainer.runs import predict_to_csv

    path = predict_to_csv(open_store(home), run, out_path, dataset=dataset, split=split, tta=tta, device=device,
                          progress=not quiet)
    out.print(f"written {path}")


def compare_cmd(
    runs: List[str] = typer.Argument(..., help="Run names or paths; the first is the baseline."),
    split: Optional[str] = typer.Option(None, "--split", help="Use each run's evaluation of this split (default: newest)."),
    png: Optional[Path] = typer.Option(None, "--png", help="PNG to write (default: compare.png beside the first run)."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    home: Optional[Path] = HomeOption,
) -> None:
    """Per-class Dice of runs side by side, with the difference to the first run."""
    from trainer.compare import compare, plot_comparison
    from trainer.runs import load_evaluation, run_path

    from xaug.outputs import check_output_file

    for r in runs:
        run_path(r, flag="RUNS")
    png_path = png or run_path(runs[0]).parent / "compare.png"
    if png_path.suffix.lower() != ".png":  # matplotlib picks the format by the suffix
        raise BadInput("is not a .png file name; give one such as compare.png", where=f"--png {png_path}")
    check_output_file(png_path, "--png", open_store(home), example="compare.png")  # before reading any run
    evals = [load_evaluation(r, split) for r in runs]
    names = [run_path(r).name for r in runs]
    comp = compare(evals, names)
    png_path = plot_comparison(comp, png_path)
    if json_out:
        print_json({**comp.to_json(), "png": str(png_path)})
        return
    cols = [names[0]]
    for n in names[1:]:
        cols += [n, "diff"]
    rows = []
    for ci, c in enumerate(CLASSES + ("mean",)):
        vals = comp.dice[:, ci] if ci < len(CLASSES) else comp.means
        row = [float(vals[0])]
        for i in range(1, len(names)):
            row += [float(vals[i]), float(vals[i] - vals[0])]
        rows.append([c, row])
    splits = ", ".join(f"{n}: {d} {s}" for n, d, s in zip(names, comp.datasets, comp.splits))
    print_table(_dice_table(f"per-class Dice ({splits})", cols, rows, delta=True))
    out.print(f"written {png_path}")
