"""ActionVOS training loop (spec §7–§8; ReferFormer ``main.py`` / ``engine.train_one_epoch``).

One :class:`TrainConfig` (frozen, validated once, saved as ``args`` in every checkpoint) drives :func:`train`:

* model: a preset built with ``torch.manual_seed(seed)``, optionally initialised from a ReferFormer checkpoint
  with ``class_embed.*`` dropped (the positive head is absent there) — :func:`load_init_weights` logs what was
  not loaded; the text encoder stays frozen (its dropout still runs), the ResNet stem too unless ``train_stem``;
* data: :class:`~actionvos.training.dataset.ActionVOSDataset` (+ teacher pseudo-labels,
  :mod:`~actionvos.training.pseudo_labels`), a ``DistributedSampler`` (also for one process) seeded with
  ``seed``, batches padded by :func:`~actionvos.training.dataset.collate`; captions tokenised per batch with
  the RoBERTa-format tokenizer given by ``tokenizer``;
* optimisation: AdamW groups of :mod:`~actionvos.training.optim`, ``MultiStepLR(lr_drop, 0.1)`` per epoch,
  gradient clipping at ``clip_max_norm`` (0.1), optional mixed precision (bf16 autocast on CPU, fp16 autocast
  + ``GradScaler`` on CUDA; losses are computed in float32);
* multi-process: under ``torchrun`` the model is wrapped in DDP (see :mod:`~actionvos.training.distributed`);
* outputs in ``output``: ``checkpoint.pth`` after every epoch (and when ``max_steps`` / ``max_minutes`` stop
  the run), ``checkpoint{epoch:04d}.pth`` every ``save_interval`` epochs — official format (``model``,
  ``optimizer``, ``lr_scheduler``, ``epoch``, ``args``) plus ``config``, ``global_step``, ``epoch_complete``,
  written atomically — and ``metrics.jsonl``: one JSON object per step (``kind: "step"``) and per epoch
  (``kind: "epoch"``), appended and flushed line by line.

Resume (``resume``): weights, optimizer, scheduler and step counter are restored; training continues at
``epoch + 1``, or re-runs ``epoch`` from its start when the checkpoint was written mid-epoch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputError
from .distributed import DistInfo, barrier, cleanup_distributed, init_distributed, reduce_mean

__all__ = ["TrainConfig", "TrainResult", "TrainForward", "InitReport", "load_init_weights", "train"]

log = logging.getLogger(__name__)

_DROP_ON_INIT = ("class_embed.",)  # pre_trained_model_to_finetune: ReferFormer's class head is re-learned
_LEGACY = ("text_encoder.embeddings.position_ids",)


@dataclass(frozen=True)
class TrainConfig:
    """Every training option (CLI ``actionvos train`` flags with ``-`` for ``_``). Defaults are spec §8's.

    Paths are strings. ``lr_drop`` are epoch milestones (0-based epoch counter, as ``MultiStepLR``).
    ``max_steps`` / ``max_minutes`` stop early (optimizer steps / wall-clock minutes, all ranks together).
    ``max_size`` caps the long side of the training resize (512 in the reference; smaller for CPU runs).
    ``threads`` sets ``torch.set_num_threads`` (None: torch's default). ``train_stem`` also trains the ResNet stem
    (conv1 + layer1, frozen in the reference) — meant for training from random initialisation.
    ``extra_checkpoint`` entries are added to every checkpoint (e.g. a note on what the weights are).
    ``teacher`` + ``dense_frames``: rank 0 pseudo-labels the dense frames into ``{output}/pseudo_labels`` with the
    teacher checkpoint (its own embedded config; prompts tokenised with ``tokenizer``, so the teacher must share
    the student's tokenizer) before training; thresholds ``pseudo_hi`` / ``pseudo_lo``.
    """

    data: str
    output: str
    preset: str = "rf_r101_actionvos"
    init: str | None = None
    resume: str | None = None
    tokenizer: str | None = None
    split: str = "train"
    epochs: int = 6
    lr_drop: tuple[int, ...] = (3, 5)
    lr: float = 1e-4
    lr_backbone: float = 5e-5
    lr_text_encoder: float = 1e-5
    lr_linear_proj_mult: float = 1.0
    weight_decay: float = 5e-4
    clip_max_norm: float = 0.1
    batch_size: int = 1
    num_frames: int = 5
    max_size: int = 512
    amp: bool = False
    seed: int = 42
    save_interval: int = 3
    max_steps: int | None = None
    max_minutes: float | None = None
    workers: int = 0
    threads: int | None = None
    device: str = "auto"
    train_stem: bool = False
    use_weights: bool = True
    teacher: str | None = None
    dense_frames: str | None = None
    pseudo_hi: float = 0.9
    pseudo_lo: float = 0.1
    progress: bool = True
    extra_checkpoint: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        """Check option values and combinations; returns ``self``.

        Raises:
            ConfigError: a bad value or combination (one line naming the option).
            InputError: the data root does not exist.
        """
        if not Path(self.data).is_dir():
            raise InputError(f"--data {self.data!r} is not a folder; pass the dataset root (ImageSets/, JPEGImages_Sparse/, ...)")
        if self.tokenizer is None:
            raise ConfigError("--tokenizer is required: a directory with the RoBERTa-format vocab.json and merges.txt")
        for name in ("epochs", "batch_size", "num_frames", "save_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "lr_backbone", "lr_text_encoder", "weight_decay", "clip_max_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if list(self.lr_drop) != sorted(self.lr_drop) or any(m < 1 for m in self.lr_drop):
            raise ConfigError(f"--lr-drop milestones must be increasing epochs >= 1, got {list(self.lr_drop)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"--max-minutes must be > 0, got {self.max_minutes}")
        if self.max_size < 64:
            raise ConfigError(f"--max-size must be >= 64 pixels, got {self.max_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if (self.teacher is None) != (self.dense_frames is None):
            raise ConfigError("--teacher and --dense-frames go together: the teacher labels the dense frames")
        if self.init and self.resume:
            raise ConfigError("pass either --init (start from pretrained weights) or --resume (continue a run), not both")
        from .pseudo_labels import PseudoLabelConfig

        PseudoLabelConfig(self.pseudo_hi, self.pseudo_lo)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (stored as ``args`` in checkpoints)."""
        d = dataclasses.asdict(self)
        d["lr_drop"] = list(self.lr_drop)
        return d


@dataclass
class TrainResult:
    """What :func:`train` did: last checkpoint path, completed epochs, optimizer steps, mean weighted loss and
    per-term unweighted losses of the last epoch (final decoder layer), wall-clock seconds, and the trained
    (unwrapped) model, in train mode on the training device."""

    checkpoint: Path | None
    epochs_completed: int
    steps: int
    last_loss: float | None
    last_losses: dict[str, float]
    wall_s: float
    model: nn.Module | None = None


@dataclass
class InitReport:
    """Outcome of :func:`load_init_weights`: keys loaded, dropped on purpose, missing (fresh init), unexpected."""

    loaded: list[str]
    dropped: list[str]
    missing: list[str]
    unexpected: list[str]


def _prefix_counts(keys: list[str]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for k in keys:
        counts[k.split(".")[0]] += 1
    return ", ".join(f"{p}.* ({n})" for p, n in sorted(counts.items())) or "none"


def load_init_weights(model: nn.Module, path: str | Path, drop: tuple[str, ...] = _DROP_ON_INIT) -> InitReport:
    """Initialise ``model`` from a ReferFormer/ActionVOS checkpoint, non-strictly (spec §8 initialisation).

    Keys starting with ``drop`` (``class_embed.``), the legacy ``position_ids`` buffer and thop counters are
    discarded; keys the checkpoint lacks (the positive head ``positive_cls_embed.*`` of a ReferFormer
    checkpoint) keep their fresh initialisation. What was not loaded is logged, grouped by top-level module.

    Raises:
        CheckpointError: unreadable file (see :func:`~actionvos.model.checkpoint.read_checkpoint`), a tensor
            whose shape differs from the model's (wrong preset), or no key in common with the model.
    """
    from actionvos.model.checkpoint import read_checkpoint

    state, _ = read_checkpoint(path)
    dropped = [k for k in state if k.startswith(drop) or k in _LEGACY or k.endswith(("total_ops", "total_params"))]
    state = {k: v for k, v in state.items() if k not in set(dropped)}
    expected = model.state_dict()
    shape = [f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    if shape:
        raise CheckpointError(f"--init {path}: {len(shape)} tensors have another shape than the model "
                              f"(first: {shape[0]}); pass the --preset this checkpoint was trained with")
    loaded = [k for k in state if k in expected]
    if not loaded:
        raise CheckpointError(f"--init {path} shares no key with the model; it is not a ReferFormer/ActionVOS checkpoint")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    log.info("init from %s: loaded %d/%d tensors; dropped on purpose: %s; not in the checkpoint (fresh init): %s; "
             "unexpected (ignored): %s", path, len(loaded), len(expected), _prefix_counts(dropped),
             _prefix_counts(missing), _prefix_counts(unexpected))
    return InitReport(loaded, dropped, missing, unexpected)


class TrainForward(nn.Module):
    """The training forward as one module (so DDP sees a ``forward`` call): B clips, one expression each.

    ``forward(imgs [B,T,3,H,W] float32, pad_mask [B,T,H,W] bool (True = padding), image_sizes [B,2] (H, W)
    unpadded pixels, input_ids [B,L] int64, attention_mask [B,L] int64)`` returns the output dict of
    :meth:`~actionvos.model.actionvos.ActionVOS.decode` with batch dimension B.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, imgs, pad_mask, image_sizes, input_ids, attention_mask) -> dict:
        m = self.model
        frames = m.encode_frames(imgs, pad_mask.flatten(0, 1), image_sizes)
        return m.decode(frames, m.encode_text(input_ids, attention_mask))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _to_device(targets: list[dict], device) -> list[dict]:
    return [{k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in t.items()}
            for t in targets]


def _to_float(x):
    if isinstance(x, torch.Tensor):
        return x.float()
    if isinstance(x, dict):
        return {k: _to_float(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_to_float(v) for v in x]
    return x


class _JsonlLog:
    """Append-only JSONL metrics log: one ``json.dumps`` line per record, flushed at once (main rank only)."""

    def __init__(self, path: Path | None):
        self.f = open(path, "a", encoding="utf-8") if path is not None else None

    def write(self, record: dict) -> None:
        if self.f is not None:
            self.f.write(json.dumps(record, allow_nan=True) + "\n")
            self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _build_datasets(cfg: TrainConfig, info: DistInfo, tokenizer) -> list:
    from .dataset import ActionVOSDataset
    from .transforms import make_train_transforms

    ds = ActionVOSDataset(cfg.data, cfg.split, num_frames=cfg.num_frames,
                          transforms=make_train_transforms(max_size=cfg.max_size), use_weights=cfg.use_weights,
                          seed=cfg.seed)
    parts = [ds]
    if cfg.teacher:
        from actionvos.artifacts import read_checkpoint_artifact

        from .pseudo_labels import PseudoLabelConfig, PseudoLabelDataset, label_dense_frames

        pseudo_root = Path(cfg.output) / "pseudo_labels"
        if info.is_main:
            art = read_checkpoint_artifact(cfg.teacher, tokenizer=cfg.tokenizer, device=info.device)
            teacher = art.model
            stats = label_dense_frames(teacher, art.tokenizer, art.card, cfg.data, cfg.dense_frames, cfg.split, pseudo_root,
                                       PseudoLabelConfig(cfg.pseudo_hi, cfg.pseudo_lo), device=info.device,
                                       progress=cfg.progress)
            log.info("teacher pseudo-labels: %s", stats)
            del teacher
        barrier()
        parts.append(PseudoLabelDataset(cfg.data, cfg.dense_frames, pseudo_root, cfg.split,
                                        num_frames=cfg.num_frames,
                                        transforms=make_train_transforms(max_size=cfg.max_size), seed=cfg.seed))
    return parts


def _save(path: Path, model, card, tokenizer, optimizer, scheduler, epoch: int, step: int, complete: bool,
          cfg: TrainConfig, scaler=None) -> None:
    """Write a training checkpoint: the weights with their model card and tokenizer (a self-contained artifact:
    ``actionvos run --checkpoint`` needs no ``--tokenizer``), plus optimizer / scheduler state for ``--resume``."""
    import dataclasses

    from actionvos.artifacts import checkpoint_extras
    from actionvos.io_utils import atomic_path
    from actionvos.model.checkpoint import weights_sha256

    state = model.state_dict()
    card = dataclasses.replace(card, checkpoint_sha256=weights_sha256(state))
    obj = {"model": state, **checkpoint_extras(card, tokenizer),
           "optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(), "epoch": epoch,
           "args": cfg.to_dict(), "global_step": step, "epoch_complete": complete}
    if scaler is not None:
        obj["scaler"] = scaler.state_dict()
    obj.update(cfg.extra_checkpoint)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(cfg: TrainConfig) -> TrainResult:
    """Run training as configured (spec §8); see the module docstring for outputs.

    Returns:
        :class:`TrainResult` (on every rank; only rank 0 writes files).
    Raises:
        ConfigError / InputError: bad options, dataset or tokenizer (before any step runs).
        CheckpointError: an unusable ``init``, ``resume`` or ``teacher`` checkpoint.
        FloatingPointError: the loss became NaN or infinite.
    """
    cfg.validate()
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # 1 is much faster on a busy 2-core CPU (no OpenMP spin contention)
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, info, t_start)
    finally:
        cleanup_distributed(info)
        torch.set_num_threads(prev_threads)


def _train(cfg: TrainConfig, info: DistInfo, t_start: float) -> TrainResult:
    from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler
    from tqdm import tqdm

    from actionvos.model.builder import build_model
    from actionvos.model.checkpoint import load_state_dict_strict, read_checkpoint
    from actionvos.model.config import get_preset
    from actionvos.card import card_for_checkpoint
    from actionvos.tokenizer import load_tokenizer

    from .dataset import collate
    from .losses import ActionVOSCriterion
    from .optim import build_optimizer, build_scheduler

    try:
        mcfg = get_preset(cfg.preset)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    output = Path(cfg.output)
    device = torch.device(info.device)
    cuda = device.type == "cuda"

    tokenizer = load_tokenizer(cfg.tokenizer)
    if tokenizer.vocab_size > mcfg.text.vocab_size:
        raise ConfigError(f"tokenizer {cfg.tokenizer} has {tokenizer.vocab_size} tokens but preset {mcfg.name} has a "
                          f"{mcfg.text.vocab_size}-token text vocabulary; use a matching tokenizer or preset")
    # the card every checkpoint of this run carries: the released model's deployment facts (spec 3.1, 3.9, 4)
    card = card_for_checkpoint(mcfg, "", tokenizer_sha256=tokenizer.sha256)

    _seed_all(cfg.seed)  # identical initial weights on every rank
    model = build_model(mcfg)
    if cfg.train_stem:
        for n, p in model.backbone.named_parameters():
            p.requires_grad_(True)
    if cfg.init:
        load_init_weights(model, cfg.init)
    _seed_all(cfg.seed + info.rank)  # spec §8: seed + rank

    parts = _build_datasets(cfg, info, tokenizer)
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True, collate_fn=collate,
                        num_workers=cfg.workers, pin_memory=cuda, persistent_workers=cfg.workers > 0)
    if len(loader) == 0:
        raise ConfigError(f"{len(dataset)} samples cannot fill one batch of {cfg.batch_size} per process "
                          f"({info.world_size} processes); lower --batch-size")

    model.to(device).train()
    net: nn.Module = TrainForward(model)
    if info.distributed:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if cuda else None)
    optimizer = build_optimizer(model, cfg.lr, cfg.lr_backbone, cfg.weight_decay, cfg.lr_text_encoder,
                                cfg.lr_linear_proj_mult)
    scheduler = build_scheduler(optimizer, cfg.lr_drop)
    criterion = ActionVOSCriterion(use_weights=cfg.use_weights)
    scaler = torch.amp.GradScaler("cuda") if (cfg.amp and cuda) else None
    amp_dtype = (torch.float16 if cuda else torch.bfloat16) if cfg.amp else None

    start_epoch, step = 0, 0
    if cfg.resume:
        state, meta = read_checkpoint(cfg.resume)
        load_state_dict_strict(model, state)
        missing = [k for k in ("optimizer", "lr_scheduler", "epoch") if k not in meta]
        if missing:
            raise CheckpointError(f"--resume {cfg.resume} lacks {missing}; it holds weights only, use --init instead")
        try:
            optimizer.load_state_dict(meta["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"--resume {cfg.resume}: optimizer state does not fit this model ({err})") from None
        scheduler.load_state_dict(meta["lr_scheduler"])
        if scaler is not None and "scaler" in meta:
            scaler.load_state_dict(meta["scaler"])
        step = int(meta.get("global_step", 0))
        start_epoch = int(meta["epoch"]) + (1 if meta.get("epoch_complete", True) else 0)
        log.info("resumed from %s: epoch %d, step %d", cfg.resume, start_epoch, step)

    if info.is_main:
        output.mkdir(parents=True, exist_ok=True)
    logger = _JsonlLog(output / "metrics.jsonl" if info.is_main else None)
    last_ckpt: Path | None = None
    last_loss, last_losses = None, {}
    epochs_done = start_epoch
    deadline = t_start + cfg.max_minutes * 60 if cfg.max_minutes else None
    stop = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.set_epoch(epoch)
            for part in parts:
                part.set_epoch(epoch)
            sums: dict[str, float] = defaultdict(float)
            n_batches = 0
            bar = tqdm(loader, desc=f"epoch {epoch}", disable=not (cfg.progress and info.is_main), leave=False)
            for batch in bar:
                t0 = time.perf_counter()
                targets = _to_device(batch["targets"], device)
                ids, am = (torch.from_numpy(a) for a in tokenizer.encode_for([t["caption"] for t in targets], card))
                sizes = torch.stack([t["size"] for t in targets]).to(device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    outputs = net(batch["imgs"].to(device, non_blocking=True),
                                  batch["pad_mask"].to(device, non_blocking=True), sizes, ids.to(device), am.to(device))
                losses = criterion(_to_float(outputs), targets)
                total = criterion.total(losses)
                if not math.isfinite(total.item()):
                    raise FloatingPointError(f"loss is {total.item()} at epoch {epoch}, step {step}; "
                                             f"terms: { {k: float(v) for k, v in losses.items()} }")
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.unscale_(optimizer)
                else:
                    total.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_max_norm) \
                    if cfg.clip_max_norm > 0 else torch.tensor(0.0)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                step += 1
                n_batches += 1
                vals = {k: float(v.detach()) for k, v in losses.items()}
                vals["loss"] = float(total.detach())
                vals = reduce_mean(vals, device)
                for k, v in vals.items():
                    sums[k] += v
                logger.write({"kind": "step", "epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                              "grad_norm": float(grad_norm), "time_s": round(time.perf_counter() - t0, 4), **vals})
                bar.set_postfix(loss=f"{vals['loss']:.3f}")
                if (cfg.max_steps is not None and step >= cfg.max_steps) or \
                        (deadline is not None and _any_rank(time.perf_counter() >= deadline, device)):
                    stop = True
                    break
            bar.close()
            complete = not stop
            means = {k: v / max(n_batches, 1) for k, v in sums.items()}
            last_loss = means.get("loss")
            last_losses = {k: v for k, v in means.items() if k != "loss" and not k.rsplit("_", 1)[-1].isdigit()}
            logger.write({"kind": "epoch", "epoch": epoch, "step": step, "batches": n_batches, "complete": complete,
                          "lr": optimizer.param_groups[0]["lr"],
                          "elapsed_s": round(time.perf_counter() - t_start, 2), **means})
            if complete:
                scheduler.step()
                epochs_done = epoch + 1
            if info.is_main:
                last_ckpt = output / "checkpoint.pth"
                _save(last_ckpt, model, card, tokenizer, optimizer, scheduler, epoch, step, complete, cfg, scaler)
                if complete and (epoch + 1) % cfg.save_interval == 0:
                    _save(output / f"checkpoint{epoch:04d}.pth", model, card, tokenizer, optimizer, scheduler, epoch, step,
                          complete, cfg, scaler)
            if stop:
                break
    finally:
        logger.close()
    barrier()
    return TrainResult(last_ckpt, epochs_done, step, last_loss, last_losses, time.perf_counter() - t_start, model)


def _any_rank(flag: bool, device) -> bool:
    """True when ``flag`` holds on any rank (so every rank stops at the same step)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
