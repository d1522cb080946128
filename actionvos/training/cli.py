"""``actionvos prepare-visor | train | evaluate | extract-dense-frames``: thin typer wrappers over the training library.

Wire into the main app with ``from actionvos.training import cli as training_cli; training_cli.register(app)``.
Multi-GPU / multi-process: ``torchrun --nproc_per_node N -m actionvos train ...`` (see
:mod:`actionvos.training.distributed`).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError

__all__ = ["register", "train_command", "evaluate_command", "parse_milestones", "METRIC_KEYS", "write_metrics_json"]

log = logging.getLogger(__name__)

#: Keys of the evaluation JSON, in percent (spec §10).
METRIC_KEYS = ("p_mIoU", "n_mIoU", "p_cIoU", "n_cIoU", "gIoU", "Acc")


def parse_milestones(values: list[str]) -> tuple[int, ...]:
    """``["3", "5"]`` or ``["3,5"]`` → ``(3, 5)``.

    Raises:
        ConfigError: a value that is not an integer.
    """
    out = []
    for v in values:
        for part in str(v).replace(",", " ").split():
            try:
                out.append(int(part))
            except ValueError:
                raise ConfigError(f"--lr-drop takes epoch numbers, got {part!r}") from None
    return tuple(out)


def train_command(
    data: Path = typer.Option(..., "--data", help="Dataset root (ImageSets/, JPEGImages_Sparse/, Annotations_Sparse/, Weights_Sparse/)."),
    output: Path = typer.Option(..., "--output", help="Folder for checkpoints and metrics.jsonl."),
    preset: str = typer.Option("rf_r101_actionvos", "--preset", help="Model preset (e.g. rf_r101_actionvos, demo_small)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="RoBERTa-format tokenizer directory (vocab.json + merges.txt)."),
    init: Optional[Path] = typer.Option(None, "--init", help="ReferFormer checkpoint to start from (class_embed dropped)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Training checkpoint to continue."),
    split: str = typer.Option("train", "--split", help="Dataset split to train on."),
    epochs: int = typer.Option(6, "--epochs"),
    lr_drop: List[str] = typer.Option(["3", "5"], "--lr-drop", help="LR milestones (epochs): --lr-drop 3,5 or repeat the option."),
    lr: float = typer.Option(1e-4, "--lr"),
    lr_backbone: float = typer.Option(5e-5, "--lr-backbone"),
    weight_decay: float = typer.Option(5e-4, "--weight-decay"),
    clip_max_norm: float = typer.Option(0.1, "--clip-max-norm"),
    batch_size: int = typer.Option(1, "--batch-size", help="Clips per process."),
    num_frames: int = typer.Option(5, "--num-frames"),
    max_size: int = typer.Option(512, "--max-size", help="Longest side of the training resize, pixels."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision: bf16 autocast on CPU, fp16 + GradScaler on CUDA."),
    seed: int = typer.Option(42, "--seed", help="Seed; each process uses seed + rank."),
    save_interval: int = typer.Option(3, "--save-interval", help="Also keep checkpoint{epoch:04d}.pth every N epochs."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Stop after N minutes of wall clock."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads per process."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    train_stem: bool = typer.Option(False, "--train-stem", help="Also train the ResNet stem (for training from scratch)."),
    no_weights: bool = typer.Option(False, "--no-weights", help="Plain mask loss instead of the action-guided weights."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Trained checkpoint that pseudo-labels the dense frames."),
    dense_frames: Optional[Path] = typer.Option(None, "--dense-frames", help="{DIR}/{split}/{sequence}/{frame}.jpg unlabelled frames."),
    pseudo_hi: float = typer.Option(0.9, "--pseudo-hi", help="Teacher probability above which a pixel is object."),
    pseudo_lo: float = typer.Option(0.1, "--pseudo-lo", help="Teacher probability below which a pixel is background."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide progress bars."),
) -> None:
    """Train ActionVOS (spec 8): AdamW, MultiStepLR, clipping 0.1, action-guided weights, positive head."""
    from .trainer import TrainConfig, train

    cfg = TrainConfig(
        data=str(data), output=str(output), preset=preset, init=str(init) if init else None,
        resume=str(resume) if resume else None, tokenizer=str(tokenizer) if tokenizer else None, split=split,
        epochs=epochs, lr_drop=parse_milestones(lr_drop), lr=lr, lr_backbone=lr_backbone, weight_decay=weight_decay,
        clip_max_norm=clip_max_norm, batch_size=batch_size, num_frames=num_frames, max_size=max_size, amp=amp,
        seed=seed, save_interval=save_interval, max_steps=max_steps, max_minutes=max_minutes, workers=workers,
        threads=threads, device=device, train_stem=train_stem, use_weights=not no_weights,
        teacher=str(teacher) if teacher else None, dense_frames=str(dense_frames) if dense_frames else None,
        pseudo_hi=pseudo_hi, pseudo_lo=pseudo_lo, progress=not no_progress,
    )
    result = train(cfg)
    if result.checkpoint is not None:
        typer.echo(f"trained {result.steps} steps ({result.epochs_completed} epochs complete) in "
                   f"{result.wall_s:.0f} s; last checkpoint {result.checkpoint}; metrics {output / 'metrics.jsonl'}")


def write_metrics_json(path: Path, metrics: dict) -> None:
    """Write the metrics atomically: :data:`METRIC_KEYS` first (percent; NaN as null), then the counts."""
    from ..io_utils import atomic_write_json

    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    out = {k: clean(metrics[k]) for k in METRIC_KEYS}
    out.update({k: clean(v) for k, v in metrics.items() if k not in METRIC_KEYS})
    atomic_write_json(path, out)


def evaluate_command(
    pred: Path = typer.Option(..., "--pred", help="Predictions {pred}/{sequence}/{frame}.png (palette PNGs)."),
    gt: Path = typer.Option(..., "--gt", help="Ground truth, e.g. DATA/Annotations_Sparse/val."),
    split_json: Path = typer.Option(..., "--split-json", help="ImageSets/{split}.json (or val_human.json)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
) -> None:
    """Score predictions with the ActionVOS metrics (spec 10): p/n-mIoU, p/n-cIoU, gIoU, Acc in percent."""
    from rich.console import Console
    from rich.table import Table

    from .metrics import evaluate_folder

    from ..errors import InputError

    if not pred.is_dir():
        raise InputError(f"--pred {str(pred)!r} is not a folder of {{sequence}}/{{frame}}.png predictions")
    if json_path is not None:  # fail before the (long) evaluation, not after it
        if json_path.is_dir():
            raise InputError(f"--json {str(json_path)!r} is a folder; pass a file path such as "
                             f"{str(json_path / 'metrics.json')!r}")
        parent = json_path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise InputError(f"--json {str(json_path)!r}: {str(parent)!r} is a file, not a folder")
    m = evaluate_folder(pred, gt, split_json)
    table = Table(title=f"ActionVOS metrics ({m['num_sequences']} sequences, {m['num_pairs']} object-frame pairs)")
    for k in METRIC_KEYS:
        table.add_column(k + (" (lower is better)" if k.startswith("n_") else ""), justify="right")
    table.add_row(*[f"{m[k]:.2f}" for k in METRIC_KEYS])
    Console().print(table)
    if m.get("missing_predictions"):
        typer.echo(f"warning: {m['missing_predictions']} prediction PNG(s) missing, scored as empty", err=True)
    if json_path is not None:
        write_metrics_json(json_path, m)
        typer.echo(f"wrote {json_path}")


def extract_dense_frames_command(
    data: Path = typer.Option(..., "--data", help="Dataset root with ImageSets/{split}.json."),
    videos: Path = typer.Option(..., "--videos", help="Folder with {video}.mp4 source videos."),
    out: Path = typer.Option(..., "--out", help="Dense frame root (pass it to train --dense-frames)."),
    split: str = typer.Option("train", "--split"),
) -> None:
    """Write every decoded frame start..end of each sequence as {out}/{split}/{sequence}/frame_{index:010d}.jpg."""
    from .pseudo_labels import extract_dense_frames

    n = extract_dense_frames(data, videos, split, out)
    typer.echo(f"wrote {n} dense frames to {out / split}")


def register(app: typer.Typer) -> None:
    """Add ``prepare-visor``, ``train``, ``evaluate`` and ``extract-dense-frames`` to the ``actionvos`` app."""
    from .visor_labels import prepare_visor_command

    app.command("prepare-visor")(prepare_visor_command)
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("extract-dense-frames")(extract_dense_frames_command)
