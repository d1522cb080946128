"""Action-aware labelling (spec §6) on a synthetic VISOR tree with hand-worked flags and weight codes.

Scene (1920x1080 polygons, squares given as x0..x1, y0..y1):
  frame 100 (VISOR P01_01_frame_0000000010): onion(5) 100..300, right hand(301) 400..600,
      knife(7) 1000..1200 (both axes), plate(9) with no segments.
      HOS: in-contact object (cat 2) bbox xywh [90,90,250,250] over the onion; a hand box (cat 1)
      over the knife that must be ignored.
  frame 200 (..20): onion, right hand, knife as above, plate 1400..1600; no HOS.
  frame 300 (..30): knife, left hand(300) 700..900, sponge(11) x 1300..1500 y 100..300.
      HOS: bbox [1450,50,100,100] (x 1450..1549, y 50..149), object polygon = that box.
EPIC rows (CSV order 10, 5, 2, sorted numerically to 2, 5, 10):
  P01_01_2  "cut onion"  frames 90..210 -> [100, 200]  noun classes [5]  -> seq 1
  P01_01_5  frames 250..300 -> [300] only -> dropped
  P01_01_10 "wash knife" frames 150..300 -> [200, 300] noun classes [7] -> seq 2
"""

import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from actionvos.errors import InputError
from actionvos.training.visor_labels import prepare_visor, select_sparse_frames


def _sq(x0, y0, x1, y1):
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]]


def _ent(name, cid, segs):
    return {"name": name, "class_id": cid, "segments": segs}


ONION, HAND, KNIFE = _sq(100, 100, 300, 300), _sq(400, 400, 600, 600), _sq(1000, 1000, 1200, 1040)
PLATE, LHAND, SPONGE = _sq(1400, 100, 1600, 300), _sq(700, 700, 900, 900), _sq(1300, 100, 1500, 300)


def _write_tree(root):
    vis = root / "visor"
    frames = {"P01_01_frame_0000000010.jpg": "frame_0000000100.jpg",
              "P01_01_frame_0000000020.jpg": "frame_0000000200.jpg",
              "P01_01_frame_0000000030.jpg": "frame_0000000300.jpg"}
    vis.mkdir()
    (vis / "frame_mapping.json").write_text(json.dumps({"P01_01": frames, "P02_01": {"a.jpg": "frame_0000000001.jpg"}}))
    ann = {"video_annotations": [
        {"image": {"name": "P01_01_frame_0000000010.jpg"}, "annotations": [
            _ent("onion", 5, ONION), _ent("right hand", 301, HAND), _ent("knife", 7, KNIFE), _ent("plate", 9, [])]},
        {"image": {"name": "P01_01_frame_0000000020.jpg"}, "annotations": [
            _ent("onion", 5, ONION), _ent("right hand", 301, HAND), _ent("knife", 7, KNIFE), _ent("plate", 9, PLATE)]},
        {"image": {"name": "P01_01_frame_0000000030.jpg"}, "annotations": [
            _ent("knife", 7, KNIFE), _ent("left hand", 300, LHAND), _ent("sponge", 11, SPONGE)]},
    ]}
    sparse = vis / "GroundTruth-SparseAnnotations"
    (sparse / "annotations_corrected" / "train").mkdir(parents=True)
    (sparse / "annotations_corrected" / "train" / "P01_01.json").write_text(json.dumps(ann))
    rgb = sparse / "rgb_frames" / "train" / "P01_01"
    rgb.mkdir(parents=True)
    for i, name in enumerate(frames):
        cv2.imwrite(str(rgb / name), np.full((1080, 1920, 3), 40 * i, np.uint8))
    hos = {"images": [{"id": 1, "file_name": "P01_01_frame_0000000010.jpg"}, {"id": 3, "file_name": "P01_01_frame_0000000030.jpg"}],
           "annotations": [
               {"image_id": 1, "category_id": 2, "bbox": [90, 90, 250, 250], "segmentation": [[100, 100, 300, 100, 300, 300, 100, 300]]},
               {"image_id": 1, "category_id": 1, "bbox": [990, 990, 300, 60], "segmentation": [[990, 990, 1280, 990, 1280, 1050]]},
               {"image_id": 3, "category_id": 2, "bbox": [1450, 50, 100, 100], "segmentation": [[1450, 50, 1549, 50, 1549, 149, 1450, 149]]},
           ]}
    (root / "hos.json").write_text(json.dumps(hos))
    cols = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp", "stop_timestamp",
            "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"]
    rows = [["P01_01_10", "P01", "P01_01", "", "", "", 150, 300, "wash knife", "wash", 2, "knife", 7, "['knife']", "[7]"],
            ["P01_01_5", "P01", "P01_01", "", "", "", 250, 300, "dry hands", "dry", 3, "hand", 301, "['hand']", "[301]"],
            ["P01_01_2", "P01", "P01_01", "", "", "", 90, 210, "cut onion", "cut", 1, "onion", 5, "['onion']", "[5]"],
            ["P09_01_0", "P09", "P09_01", "", "", "", 0, 999, "x", "x", 0, "x", 0, "['x']", "[0]"]]
    with open(root / "epic.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    return vis


def _px(path, x, y):
    """Value of the 854x480 PNG at the position of VISOR pixel (x, y)."""
    arr = np.array(Image.open(path))
    assert arr.shape == (480, 854)
    return int(arr[int(y * 480 / 1080), int(x * 854 / 1920)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("visor")
    vis = _write_tree(root)
    out = root / "out"
    seqs = prepare_visor(vis, [root / "epic.csv"], root / "hos.json", out, "train")
    return seqs, out


def test_sparse_frame_selection():
    frames = ["frame_0000000100.jpg", "frame_0000000200.jpg", "frame_0000000300.jpg"]
    assert select_sparse_frames(frames, 90, 210) == frames[:2]
    assert select_sparse_frames(frames, 200, 300) == frames[1:]
    assert select_sparse_frames(frames, 250, 300) == frames[2:]
    assert select_sparse_frames(frames, 301, 400) == []


def test_sequences_and_flags(built):
    seqs, _ = built
    assert [s["seq_id"] for s in seqs] == [1, 2]
    s1, s2 = seqs
    assert (s1["narration"], s1["start"], s1["end"], s1["sparse_frames"]) == (
        "cut onion", 90, 210, ["frame_0000000100.jpg", "frame_0000000200.jpg"])
    flags = lambda s: {o["name"]: (k, o["handbox"], o["narration"], o["positive"]) for k, o in s["object_classes"].items()}
    # alphabetical colours; handbox: hands + objects in a cat-2 box (the cat-1 box over the knife is ignored)
    assert flags(s1) == {"knife": ("1", 0, 0, 0), "onion": ("2", 1, 1, 1), "plate": ("3", 0, 0, 0),
                         "right hand": ("4", 1, 0, 1)}
    assert flags(s2) == {"knife": ("1", 0, 1, 1), "left hand": ("2", 1, 0, 1), "onion": ("3", 0, 0, 0),
                         "plate": ("4", 0, 0, 0), "right hand": ("5", 1, 0, 1), "sponge": ("6", 1, 0, 1)}
    assert list(s1) == ["seq_id", "video", "start", "narration", "verb", "verb_class", "noun", "noun_class", "end",
                        "sparse_frames", "object_classes"]


def test_masks_and_weight_codes(built):
    _, out = built
    a1 = out / "Annotations_Sparse/train/00000001_P01_01_cut_onion"
    w1 = out / "Weights_Sparse/train/00000001_P01_01_cut_onion"
    w2 = out / "Weights_Sparse/train/00000002_P01_01_wash_knife"
    f1, f2, f3 = "frame_0000000100.png", "frame_0000000200.png", "frame_0000000300.png"
    assert [_px(a1 / f1, *p) for p in [(200, 200), (500, 500), (1100, 1020), (1500, 200), (50, 50)]] == [2, 4, 1, 0, 0]
    assert _px(a1 / f2, 1500, 200) == 3
    # seq 1, frame 100 (HOS): onion narration (2) inside box -> 4; hand and knife touch no box -> 3;
    # box ring outside the HOS object mask -> 1; background 1
    assert [_px(w1 / f1, *p) for p in [(200, 200), (500, 500), (1100, 1020), (95, 95), (1500, 200), (50, 50)]] == [4, 3, 3, 1, 1, 1]
    # seq 1, frame 200 (no HOS): onion 2; right hand positive -> 1; knife and plate negative -> 3
    assert [_px(w1 / f2, *p) for p in [(200, 200), (500, 500), (1100, 1020), (1500, 200)]] == [2, 1, 3, 3]
    # seq 2, frame 200 (no HOS): knife narration 2; onion/plate negative 3; right hand 1
    assert [_px(w2 / f2, *p) for p in [(1100, 1020), (200, 200), (1500, 200), (500, 500)]] == [2, 3, 3, 1]
    # seq 2, frame 300 (HOS): knife 2 (no box); left hand no box -> 3; sponge in box -> HOS mask 2;
    # sponge outside the box -> 1; HOS object mask above the sponge -> 2
    assert [_px(w2 / f3, *p) for p in [(1100, 1020), (800, 800), (1500, 120), (1350, 250), (1500, 75)]] == [2, 3, 2, 1, 2]
    with Image.open(w1 / f1) as im:
        assert im.mode == "P" and im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]


def test_images_and_meta_files(built):
    _, out = built
    img = cv2.imread(str(out / "JPEGImages_Sparse/train/00000002_P01_01_wash_knife/frame_0000000300.jpg"))
    assert img.shape == (480, 854, 3) and abs(int(img.mean()) - 80) <= 2
    meta = json.loads((out / "ImageSets/train_meta_expressions_promptaction.json").read_text())["videos"]
    v = meta["00000001_P01_01_cut_onion"]
    assert v["frames"] == ["frame_0000000100", "frame_0000000200"]
    assert v["expressions"]["0"] == {"exp": "knife used in the action of cut onion", "obj_id": "1", "positive": 0, "class_id": 7}
    assert v["expressions"]["3"]["exp"] == "right hand used in the action of cut onion"
    cats = json.loads((out / "ImageSets/train_objects_category.json").read_text())["videos"]
    assert cats["00000002_P01_01_wash_knife"]["objects"]["6"] == {"category": "sponge", "positive": 1, "class_id": 11}


def test_missing_inputs_raise(tmp_path):
    with pytest.raises(InputError, match="frame mapping"):
        prepare_visor(tmp_path, [tmp_path / "e.csv"], tmp_path / "h.json", tmp_path / "o", "train")
    with pytest.raises(InputError, match="split"):
        prepare_visor(tmp_path, [tmp_path / "e.csv"], tmp_path / "h.json", tmp_path / "o", "test")
