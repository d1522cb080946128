"""Action-aware labelling of VISOR for ActionVOS (spec §5, §6; ActionVOS ``data_prepare_visor.py``
and ``copy_rf_actionvos_files.generate_meta_json``).

Expected input layout (as the reference script reads it)::

    {visor_root}/frame_mapping.json
        {video: {visor_frame_name: ek_frame_name}}, e.g. "P01_107_frame_0000000140.jpg" → "frame_0000000954.jpg"
    {visor_root}/GroundTruth-SparseAnnotations/annotations_corrected/{split}/{video}.json
        {"video_annotations": [{"image": {"name": visor_frame_name}, "annotations":
            [{"name": str, "class_id": int, "segments": [[[x, y], ...], ...]}, ...]}, ...]}   (1920×1080 px)
    {visor_root}/GroundTruth-SparseAnnotations/rgb_frames/{split}/{video}/{visor_frame_name}   (unzipped JPEGs)
    epic_csv: EPIC_100_train.csv and/or EPIC_100_validation.csv (header row; the reference concatenates both)
    hos_json: VISOR-HOS COCO json (``images[].file_name`` = VISOR frame name, ``annotations[]`` with
        ``category_id`` (2 = in-contact object, the only one used), ``bbox`` xywh px, ``segmentation`` polygons)

Output under ``out`` (all files written atomically)::

    JPEGImages_Sparse/{split}/{folder}/{ek_frame}.jpg     854×480, cv2 INTER_LINEAR
    Annotations_Sparse/{split}/{folder}/{ek_frame}.png    palette PNG of object colours, PIL NEAREST
    Weights_Sparse/{split}/{folder}/{ek_frame}.png        palette PNG of weight codes 1..4, PIL NEAREST
    ImageSets/{split}.json, {split}_meta_expressions_promptaction.json, {split}_objects_category.json

Deviations (robustness only; identical on well-formed data): HOS ``file_name`` is matched by base
name; HOS boxes are cast with ``int()`` per component and clamped at 0; the entity index map used
for the handbox test is uint16 (the reference's uint8 wraps past 255 entities); an entity with no
polygon at all is not drawn; a sparse frame without an annotation entry counts as having no entities.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from pathlib import Path
from typing import List

import cv2
import numpy as np
import typer
from PIL import Image

from ..card import OFFICIAL_FACTS  # the promptaction template of the released model (spec 4)
from ..errors import InputError
from ..io_utils import atomic_path, atomic_write_json
from ..render import PALETTE

__all__ = [
    "davis_palette", "read_epic_actions", "map_hos", "select_sparse_frames", "label_action",
    "build_meta_expressions", "prepare_visor", "prepare_visor_command", "CANVAS", "OUT_SIZE",
]

CANVAS = (1080, 1920)  # (H, W) of VISOR polygons
OUT_SIZE = (854, 480)  # (W, H) of the released frames
HANDS = ("left hand", "right hand")


def davis_palette() -> list[int]:
    """The 768-entry DAVIS/VOC palette (0 black, 1 (128,0,0), 2 (0,128,0), ...) as ``PIL.Image.putpalette`` takes it;
    the values are :data:`actionvos.render.PALETTE`."""
    return PALETTE.reshape(-1).tolist()


def _load_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist; check the VISOR layout in actionvos.training.visor_labels") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {path} is not valid JSON ({e})") from None


def read_epic_actions(paths: list[Path]) -> list[dict]:
    """Rows of EK-100 action CSVs (concatenated in order), as dicts with int frames/classes and
    ``all_noun_classes`` parsed to a list of ints. Raises :class:`InputError` on a missing file/column."""
    need = ["narration_id", "video_id", "start_frame", "stop_frame", "narration", "verb", "verb_class",
            "noun", "noun_class", "all_noun_classes"]
    rows = []
    for p in paths:
        try:
            with open(p, newline="") as f:
                reader = csv.DictReader(f)
                missing = set(need) - set(reader.fieldnames or [])
                if missing:
                    raise InputError(f"{p} lacks EK-100 columns {sorted(missing)}; pass EPIC_100_train/validation.csv")
                for r in reader:
                    rows.append({
                        "narration_id": r["narration_id"], "video_id": r["video_id"],
                        "start_frame": int(r["start_frame"]), "stop_frame": int(r["stop_frame"]),
                        "narration": r["narration"], "verb": r["verb"], "verb_class": int(r["verb_class"]),
                        "noun": r["noun"], "noun_class": int(r["noun_class"]),
                        "all_noun_classes": [int(x) for x in ast.literal_eval(r["all_noun_classes"])],
                    })
        except FileNotFoundError:
            raise InputError(f"EPIC CSV {p} does not exist; pass --epic-csv EPIC_100_train.csv") from None
        except (ValueError, SyntaxError) as e:
            raise InputError(f"EPIC CSV {p} has a malformed row ({e}); use the official EK-100 CSV") from None
    return rows


def _narration_key(row: dict) -> tuple[int, ...]:
    """``P01_101_7`` → ``(1, 101, 7)`` (reference ``cmp``)."""
    return tuple(int(x) for x in row["narration_id"][1:].split("_"))


def map_hos(coco: dict) -> dict[str, dict]:
    """VISOR-HOS COCO → ``{frame_name: {"bboxs": [[x,y,w,h],...], "masks": [segmentation,...]}}``,
    keeping only ``category_id == 2`` (in-contact objects)."""
    id2file = {img["id"]: os.path.basename(img["file_name"]) for img in coco.get("images", [])}
    res: dict[str, dict] = {}
    for ann in coco.get("annotations", []):
        if ann.get("category_id") != 2:
            continue
        if ann.get("image_id") not in id2file:
            raise InputError(f"VISOR-HOS annotation {ann.get('id')} refers to unknown image {ann.get('image_id')}")
        entry = res.setdefault(id2file[ann["image_id"]], {"bboxs": [], "masks": []})
        entry["bboxs"].append(ann["bbox"])
        entry["masks"].append(ann["segmentation"])
    return res


def select_sparse_frames(sorted_ek_frames: list[str], start: int, stop: int) -> list[str]:
    """EK frame names in ``[start, stop]`` (inclusive) among the annotated ones (reference searchsorted)."""
    arr = np.array(sorted_ek_frames)
    s_name, e_name = f"frame_{start:010d}.jpg", f"frame_{stop:010d}.jpg"
    s, e = int(np.searchsorted(arr, s_name)), int(np.searchsorted(arr, e_name))
    if s >= len(arr):
        return []
    if s == e:
        return [e_name] if arr[e] == e_name else []
    out = [str(x) for x in arr[s:e]]
    if e < len(arr) and arr[e] == e_name:
        out.append(e_name)
    return out


def _polys(entity: dict) -> list[np.ndarray]:
    return [np.array(p if p != [] else [[0.0, 0.0]], dtype=np.int32) for p in entity.get("segments", [])]


def _fill(canvas: np.ndarray, ps: list[np.ndarray], value: int) -> None:
    if ps:
        cv2.fillPoly(canvas, ps, (value, value, value))


def _box_slices(bbox) -> tuple[slice, slice]:
    x, y, w, h = (int(v) for v in bbox)
    x, y = max(x, 0), max(y, 0)
    return slice(y, y + h), slice(x, x + w)


def _hos_masks(hos: dict, shape) -> tuple[np.ndarray, np.ndarray]:
    """(HOS object mask painted 2, box map 1 inside any HOS box) as uint8 ``shape``."""
    obj = np.zeros(shape, np.uint8)
    box = np.zeros(shape, np.uint8)
    for seg in hos["masks"]:
        if not isinstance(seg, list):
            raise InputError("VISOR-HOS segmentation must be polygons (lists), got RLE; use the hos-mode COCO json")
        _fill(obj, [np.reshape(np.array(s, dtype=np.int32), (-1, 2)) for s in seg], 2)
    for b in hos["bboxs"]:
        box[_box_slices(b)] = 1
    return obj, box


def label_action(frames: list[list[dict]], hos: list[dict | None], all_noun_classes: list[int],
                 canvas: tuple[int, int] = CANVAS):
    """Action-aware labels of one action (spec §6) at full VISOR resolution.

    Args:
        frames: per sparse frame, the VISOR entity list (``name``, ``class_id``, ``segments``).
        hos: per sparse frame, its :func:`map_hos` entry or None when the frame has no HOS object.
        all_noun_classes: EK-100 noun class ids of the action.
        canvas: ``(H, W)`` of the polygon coordinates.
    Returns:
        None when no entity has segments, else ``(masks, object_classes, weights)``: lists of
        ``[H, W]`` uint8 colour maps and weight-code maps (1 other, 2 hand|narration, 3 negative,
        4 hand&narration), and ``{colour: {name, class_id, handbox, narration, positive}}``.
    """
    names, cls_id = set(), {}
    for ents in frames:
        for e in ents:
            if len(e.get("segments", [])) > 0:
                names.add(e["name"])
                cls_id[e["name"]] = e["class_id"]
    if not names:
        return None
    colour = {n: i + 1 for i, n in enumerate(sorted(names))}
    # handbox: hands that appear, plus entities with a pixel inside an HOS box
    hand_obj = set()
    for ents, h in zip(frames, hos):
        index = np.zeros(canvas, np.uint16)
        for i, e in enumerate(ents):
            _fill(index, _polys(e), i + 1)
            if e["name"] in HANDS:
                hand_obj.add(e["name"])
        if h is not None:
            for b in h["bboxs"]:
                for u in np.unique(index[_box_slices(b)]):
                    if u != 0:
                        hand_obj.add(ents[int(u) - 1]["name"])
    narr_obj = {n for n in colour if cls_id[n] in set(all_noun_classes)}
    flags = {}
    for n in colour:
        hb, nr = int(n in hand_obj), int(n in narr_obj)
        flags[n] = {"name": n, "class_id": cls_id[n], "handbox": hb, "narration": nr, "positive": int(hb or nr)}
    masks, weights = [], []
    for ents, h in zip(frames, hos):
        m = np.zeros(canvas, np.uint8)
        for e in ents:
            if e["name"] in colour:
                _fill(m, _polys(e), colour[e["name"]])
        masks.append(m)
        weights.append(_weight_codes(ents, h, colour, narr_obj, flags, canvas))
    return masks, {colour[n]: flags[n] for n in colour}, weights


def _weight_codes(ents, h, colour, narr_obj, flags, canvas) -> np.ndarray:
    w = np.zeros(canvas, np.uint8)
    if h is not None:
        hos_obj, hos_box = _hos_masks(h, canvas)
    for e in ents:
        ps = _polys(e)
        if e["name"] in narr_obj:
            _fill(w, ps, 2)
        elif e["name"] in colour:
            if h is not None:
                seg = np.zeros(canvas, np.uint8)
                _fill(seg, ps, 1)
                if not (seg * hos_box).any():
                    _fill(w, ps, 3)
            elif flags[e["name"]]["positive"] == 0:
                _fill(w, ps, 3)
    if h is not None:
        w = np.where(hos_box == 1, w * 2, w)
        w = np.where(w == 0, hos_obj, w)
    return np.where(w == 0, 1, w).astype(np.uint8)


def build_meta_expressions(seqs: list[dict]) -> tuple[dict, dict]:
    """Spec §5.2 ``(meta_expressions_promptaction, objects_category)`` from ImageSets entries."""
    meta, cats = {"videos": {}}, {"videos": {}}
    for s in seqs:
        folder = "{:08d}_{}_{}_{}".format(s["seq_id"], s["video"], s["verb"], s["noun"])
        exps, objs = {}, {}
        for i, (k, o) in enumerate(s["object_classes"].items()):
            exps[str(i)] = {"exp": OFFICIAL_FACTS["prompt_template"].format(object=o["name"], action=s["narration"]), "obj_id": str(k),
                            "positive": o["positive"], "class_id": o["class_id"]}
            objs[str(k)] = {"category": o["name"], "positive": o["positive"], "class_id": o["class_id"]}
        meta["videos"][folder] = {"expressions": exps, "frames": [f.replace(".jpg", "") for f in s["sparse_frames"]]}
        cats["videos"][folder] = {"objects": objs}
    return meta, cats


def _save_png(arr: np.ndarray, path: Path, palette: list[int]) -> None:
    im = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).resize(OUT_SIZE, Image.NEAREST)
    im.putpalette(palette)  # L -> P, indices unchanged
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def _save_jpg(src: Path, dst: Path) -> None:
    img = cv2.imread(str(src))
    if img is None:
        raise InputError(f"cannot read frame {src}; unzip VISOR rgb_frames to rgb_frames/{{split}}/{{video}}/")
    img = cv2.resize(img, OUT_SIZE, interpolation=cv2.INTER_LINEAR)
    with atomic_path(dst) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise InputError(f"cannot write {dst}; check that the output folder is writable")


def prepare_visor(visor_root: str | Path, epic_csv: str | Path | list, hos_json: str | Path,
                  out: str | Path, split: str) -> list[dict]:
    """Build the ActionVOS dataset for one split (spec §6). See the module docstring for layouts.

    Returns the ImageSets entries written to ``{out}/ImageSets/{split}.json``.
    Raises:
        InputError: a required input file is missing or malformed, or ``split`` is not train/val.
    """
    if split not in ("train", "val"):
        raise InputError(f"--split must be 'train' or 'val', got {split!r}")
    root, out = Path(visor_root), Path(out)
    csvs = [Path(p) for p in (epic_csv if isinstance(epic_csv, (list, tuple)) else [epic_csv])]
    mapping = _load_json(root / "frame_mapping.json", "VISOR frame mapping")
    actions = read_epic_actions(csvs)
    hos_map = map_hos(_load_json(Path(hos_json), "VISOR-HOS json"))
    sparse_root = root / "GroundTruth-SparseAnnotations"
    palette = davis_palette()
    seqs: list[dict] = []
    for video, v2e in mapping.items():
        acts = sorted((a for a in actions if a["video_id"] == video), key=_narration_key)
        ann_path = sparse_root / "annotations_corrected" / split / f"{video}.json"
        if not acts or not ann_path.is_file():
            continue
        e2v = {e: v for v, e in v2e.items()}
        by_name = {}
        for a in _load_json(ann_path, "VISOR annotation").get("video_annotations", []):
            by_name.setdefault(a["image"]["name"], a.get("annotations", []))
        ek_sorted = sorted(e2v)
        for act in acts:
            frames = select_sparse_frames(ek_sorted, act["start_frame"], act["stop_frame"])
            if len(frames) <= 1:
                continue
            visor_names = [e2v[f] for f in frames]
            res = label_action([by_name.get(n, []) for n in visor_names],
                               [hos_map.get(n) for n in visor_names], act["all_noun_classes"])
            if res is None:
                continue
            masks, objects, weights = res
            seq = {"seq_id": len(seqs) + 1, "video": video, "start": act["start_frame"],
                   "narration": act["narration"], "verb": act["verb"], "verb_class": act["verb_class"],
                   "noun": act["noun"], "noun_class": act["noun_class"], "end": act["stop_frame"],
                   "sparse_frames": frames, "object_classes": {str(k): v for k, v in objects.items()}}
            folder = "{:08d}_{}_{}_{}".format(seq["seq_id"], video, act["verb"], act["noun"])
            for f, vn, m, w in zip(frames, visor_names, masks, weights):
                png = f.replace("jpg", "png")
                _save_png(m, out / "Annotations_Sparse" / split / folder / png, palette)
                _save_png(w, out / "Weights_Sparse" / split / folder / png, palette)
                _save_jpg(sparse_root / "rgb_frames" / split / video / vn, out / "JPEGImages_Sparse" / split / folder / f)
            seqs.append(seq)
    meta, cats = build_meta_expressions(seqs)
    atomic_write_json(out / "ImageSets" / f"{split}.json", seqs)
    atomic_write_json(out / "ImageSets" / f"{split}_meta_expressions_promptaction.json", meta)
    atomic_write_json(out / "ImageSets" / f"{split}_objects_category.json", cats)
    return seqs


def prepare_visor_command(
    visor_root: Path = typer.Option(..., "--visor-root", help="VISOR root (holds frame_mapping.json)."),
    epic_csv: List[Path] = typer.Option(..., "--epic-csv", help="EK-100 action CSV; repeat for train + validation."),
    hos_json: Path = typer.Option(..., "--hos-json", help="VISOR-HOS COCO json of this split."),
    out: Path = typer.Option(..., "--out", help="Output dataset root."),
    split: str = typer.Option("train", "--split", help="train or val."),
) -> None:
    """Action-aware labelling of VISOR into the ActionVOS layout (spec 6)."""
    seqs = prepare_visor(visor_root, list(epic_csv), hos_json, out, split)
    typer.echo(f"wrote {len(seqs)} {split} sequences to {out}")
