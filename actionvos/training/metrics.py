"""ActionVOS evaluation metrics (spec §10; ActionVOS ``actionvos_metrics.py``, adapted from GRES).

Every (object colour k, sparse frame) pair of every kept sequence is one entry. With
``p = (pred == k)``, ``g = (gt == k)``, ``I = Σ p·g`` and ``U = Σp + Σg − I``:

* U = 0 (positive or negative): gIoU 1, TN; not counted in mIoU/cIoU.
* positive, U > 0: p-mIoU list += I/U, ΣI_pos += I, ΣU_pos += U; g empty → FP, gIoU 0;
  else gIoU I/U and TP (p non-empty) or FN (p empty).
* negative, U > 0: n-mIoU list += I/U, ΣI_neg += I, ΣU_neg += U; g empty → FP, gIoU 0;
  p empty → TN, gIoU 1; otherwise FP, gIoU 0.

Results are percentages under ``p_mIoU n_mIoU p_cIoU n_cIoU gIoU Acc``. A value whose denominator
is empty (e.g. no negative entry with U > 0) is ``nan``; the official script would divide by zero.

Missing prediction PNGs are treated as an empty prediction (all background), counted in
``missing_predictions`` and warned about once; a missing or unreadable GT PNG raises
:class:`~actionvos.errors.InputError`. A prediction of a different size than the GT raises too. So do inputs that
would only produce a table of ``nan`` or of an all-background prediction: a split that lists no sequences (``[]``),
one whose sequences are all skipped as flagged, one without a single (object, frame) pair, and a prediction folder
that holds no PNG for any of the split's frames (the wrong ``--pred``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError

__all__ = ["PairResult", "score_pair", "MetricAccumulator", "evaluate_folder", "sequence_folder_name", "load_split"]


@dataclass(frozen=True)
class PairResult:
    """Outcome of one (object, frame) pair: ``intersection``, ``union`` (pixels), ``giou`` ∈ [0,1],
    ``outcome`` ∈ {"TP","TN","FP","FN"}, ``positive`` flag, ``in_miou`` (U > 0)."""

    intersection: float
    union: float
    giou: float
    outcome: str
    positive: bool
    in_miou: bool


def score_pair(pred: np.ndarray, gt: np.ndarray, positive: bool) -> PairResult:
    """Score one binary prediction against one binary GT (spec §10).

    Args:
        pred: ``[H, W]`` bool/0-1 array, ``pred_label == k``.
        gt: ``[H, W]`` bool/0-1 array of the same shape, ``gt_label == k``.
        positive: the object's (human) ``positive`` flag.
    Raises:
        ValueError: shapes differ.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    p, g = pred.astype(bool), gt.astype(bool)
    inter = float(np.logical_and(p, g).sum())
    union = float(p.sum()) + float(g.sum()) - inter
    if union <= 0:
        return PairResult(inter, union, 1.0, "TN", positive, False)
    if not g.any():
        return PairResult(inter, union, 0.0, "FP", positive, True)
    if positive:
        return PairResult(inter, union, inter / union, "TP" if p.any() else "FN", positive, True)
    if not p.any():
        return PairResult(inter, union, 1.0, "TN", positive, True)
    return PairResult(inter, union, 0.0, "FP", positive, True)


@dataclass
class MetricAccumulator:
    """Accumulates :class:`PairResult` entries; :meth:`result` gives the six metrics in percent."""

    miou_pos: list = field(default_factory=list)
    miou_neg: list = field(default_factory=list)
    ci_pos: float = 0.0
    cu_pos: float = 0.0
    ci_neg: float = 0.0
    cu_neg: float = 0.0
    gious: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"TP": 0, "TN": 0, "FP": 0, "FN": 0})

    def add(self, r: PairResult) -> None:
        self.gious.append(r.giou)
        self.counts[r.outcome] += 1
        if not r.in_miou:
            return
        iou = r.intersection / r.union
        if r.positive:
            self.miou_pos.append(iou)
            self.ci_pos += r.intersection
            self.cu_pos += r.union
        else:
            self.miou_neg.append(iou)
            self.ci_neg += r.intersection
            self.cu_neg += r.union

    def update(self, pred: np.ndarray, gt: np.ndarray, positive: bool) -> PairResult:
        """Score and add one pair (see :func:`score_pair`)."""
        r = score_pair(pred, gt, positive)
        self.add(r)
        return r

    def result(self) -> dict[str, float]:
        """``{p_mIoU, n_mIoU, p_cIoU, n_cIoU, gIoU, Acc}`` in percent (nan when undefined) plus
        ``TP TN FP FN`` counts and ``num_pairs``."""
        def pct(num: float, den: float) -> float:
            return 100.0 * num / den if den > 0 else float("nan")

        c = self.counts
        out = {
            "p_mIoU": pct(sum(self.miou_pos), len(self.miou_pos)),
            "n_mIoU": pct(sum(self.miou_neg), len(self.miou_neg)),
            "p_cIoU": pct(self.ci_pos, self.cu_pos),
            "n_cIoU": pct(self.ci_neg, self.cu_neg),
            "gIoU": pct(sum(self.gious), len(self.gious)),
            "Acc": pct(c["TN"] + c["TP"], sum(c.values())),
        }
        out.update({k: int(v) for k, v in c.items()})
        out["num_pairs"] = len(self.gious)
        return out


def sequence_folder_name(seq: dict) -> str:
    """``'{seq_id:08d}_{video}_{verb}_{noun}'`` (spec §5.1)."""
    return "{:08d}_{}_{}_{}".format(seq["seq_id"], seq["video"], seq["verb"], seq["noun"])


def load_split(split_json: str | Path) -> list[dict]:
    """Read a spec §5.1 split list. Raises :class:`InputError` when missing or malformed."""
    path = Path(split_json)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"split file {path} does not exist; pass ImageSets/{{split}}.json of the dataset") from None
    except json.JSONDecodeError as e:
        raise InputError(f"split file {path} is not valid JSON ({e}); regenerate it with prepare-visor") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read split file {path} ({type(e).__name__}: {e}); pass ImageSets/{{split}}.json") from None
    if not isinstance(data, list) or not all(isinstance(s, dict) for s in data):
        raise InputError(f"split file {path} must be a JSON list of sequence dicts (spec 5.1)")
    if not data:
        raise InputError(f"split file {path} lists no sequences ([]); pass a split with sequences, e.g. ImageSets/val.json")
    for s in data:
        missing = {"seq_id", "video", "verb", "noun", "sparse_frames", "object_classes"} - s.keys()
        if missing:
            raise InputError(f"split file {path}: an entry lacks keys {sorted(missing)}; use the ImageSets json format")
    return data


def _read_labels(path: Path) -> np.ndarray:
    """``[H, W]`` uint8 labels of a palette (P) or grey (L) PNG.

    Raises:
        InputError: not an image, unreadable, or another mode (e.g. RGB).
    """
    from PIL import UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise InputError(f"{path} is a {im.mode} image; masks must be palette (P) or grey (L) label PNGs")
            return np.array(im)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"cannot read mask {path} ({type(err).__name__}: {err}); it must be a palette (P) or "
                         "grey (L) label PNG") from None


def evaluate_folder(pred: str | Path, gt: str | Path, split_json: str | Path, skip_flagged: bool = True) -> dict:
    """Evaluate ``{pred}/{sequence}/{frame}.png`` against ``{gt}/{sequence}/{frame}.png`` (spec §10).

    Sequences flagged ``redundant``, ``other`` or ``missing`` (when ``skip_flagged``) are skipped.
    Returns the :meth:`MetricAccumulator.result` dict plus ``num_sequences`` and
    ``missing_predictions`` (missing prediction PNGs, scored as empty predictions).

    Raises:
        InputError: the split file, a GT PNG, or the GT folder is missing or unreadable, or a
            prediction's size differs from its GT; the split lists no sequences, or none is left after skipping
            flagged ones, or they have no (object, frame) pair; no prediction PNG exists for any frame of the split;
            a sequence or frame name would lead outside ``pred`` / ``gt``.
    """
    from ..io_utils import safe_child

    pred, gt = Path(pred), Path(gt)
    if not gt.is_dir():
        raise InputError(f"ground-truth folder {gt} does not exist; pass Annotations_Sparse/{{split}}")
    acc = MetricAccumulator()
    n_seq, n_missing, n_frames, n_flagged = 0, 0, 0, 0
    fix = f"fix that entry of {split_json}"
    seqs = load_split(split_json)
    for seq in seqs:
        if skip_flagged and (seq.get("redundant") or seq.get("other") or seq.get("missing")):
            n_flagged += 1
            continue
        n_seq += 1
        folder = sequence_folder_name(seq)
        safe_child(gt, folder, what="sequence", fix=fix)
        for frame in seq["sparse_frames"]:
            name = frame.replace("jpg", "png")
            safe_child(gt, name, what=f"sequence {folder}: frame", fix=fix)
            n_frames += 1
            gt_path = gt / folder / name
            if not gt_path.is_file():
                raise InputError(f"ground-truth mask {gt_path} is missing; check --gt and the split file")
            g = _read_labels(gt_path)
            pred_path = pred / folder / name
            if pred_path.is_file():
                p = _read_labels(pred_path)
                if p.shape != g.shape:
                    raise InputError(f"prediction {pred_path} is {p.shape[::-1]} but GT is {g.shape[::-1]}; "
                                     "save predictions at the original frame size")
            else:
                n_missing += 1
                p = np.zeros_like(g)
            for k, obj in seq["object_classes"].items():
                color = int(k)
                acc.update(p == color, g == color, bool(obj["positive"]))
    if n_seq == 0:
        raise InputError(f"split file {split_json}: all {n_flagged} sequences are flagged redundant/other/missing and "
                         "skipped, so there is nothing to evaluate; pass a split with unflagged sequences")
    if not acc.gious:
        raise InputError(f"split file {split_json}: its {n_seq} sequence(s) have no (object, frame) pair to score "
                         "(empty sparse_frames or object_classes); pass a split with annotated frames")
    if n_missing == n_frames:
        seq0 = next(s for s in seqs if s["sparse_frames"] and not (
            skip_flagged and (s.get("redundant") or s.get("other") or s.get("missing"))))
        example = pred / sequence_folder_name(seq0) / seq0["sparse_frames"][0].replace("jpg", "png")
        raise InputError(f"no prediction PNG found under {pred} for any of the {n_frames} frames of the split "
                         f"(expected e.g. {example}); check --pred (for actionvos run outputs pass {{output}}/{{split}})")
    if n_missing:
        warnings.warn(f"{n_missing} prediction PNG(s) missing under {pred}; scored as empty predictions", stacklevel=2)
    out = acc.result()
    out["num_sequences"] = n_seq
    out["missing_predictions"] = n_missing
    return out
