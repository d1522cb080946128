"""Accuracy report: clips disjoint from calibration, worst clip / 5th percentile / --min-clip-iou, narrow Markdown
with units, worst-clip pictures, progress bars, lazy clip reading and output-folder permissions.

The model has random weights: agreement numbers are pipeline checks; the metric arithmetic is checked on crafted
outputs (test_metrics_on_crafted_masks).
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from actionvos.calibration.common import atomic_dir, load_graph_dir
from actionvos.calibration.npz_store import load_calibration, save_calibration
from actionvos.errors import InputError


def _table_rows(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[i:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_report_excludes_calibration_clips(fp32_dir, int8_dir, calib_file, tmp_path):
    from actionvos.calibration.report import accuracy_report

    g = load_graph_dir(int8_dir)
    used = g.calibration["calibration_frames"]
    data = load_calibration(calib_file)
    overlap = data.overlaps(used)
    assert 0 < overlap.sum() < len(data)  # the INT8 directory calibrated on part of the file (holdout)
    assert g.calibration["calibration_clips"] == 6 and g.calibration["heldout_clips"] >= 1
    rep = accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, json_path=tmp_path / "r.json",
                          md_path=tmp_path / "r.md")
    ev = rep["evaluation"]
    assert ev["excluded_calibration_clips"] == int(overlap.sum()) and ev["disjoint_checked"]
    assert ev["clips"] == len(data) - int(overlap.sum()) == rep["data"]["clips"]
    calibrated = {data.clip_name(i) for i in np.flatnonzero(overlap)}
    evaluated = {c["name"] for c in rep["candidates"]["int8"]["per_clip"]}
    assert evaluated and not evaluated & calibrated
    assert "disjoint from the calibration clips" in (tmp_path / "r.md").read_text()

    # a file holding only calibration clips is refused with one line
    only = save_calibration(tmp_path / "only_calib.npz", data.subset(np.flatnonzero(overlap)))
    with pytest.raises(InputError, match="were used to calibrate int8") as err:
        accuracy_report(fp32_dir, {"int8": int8_dir}, only)
    assert "\n" not in str(err.value)


def test_worst_clip_p5_and_min_clip_iou(fp32_dir, int8_dir, calib_file, tmp_path):
    from actionvos.calibration.report import AccuracyThresholdError, accuracy_report

    rep = accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, max_clips=4)
    m = rep["candidates"]["int8"]["metrics"]["all"]
    per_clip = rep["candidates"]["int8"]["per_clip"]
    ious = [c["mask_iou"] for c in per_clip]
    assert m["mask_iou_worst_clip"] == pytest.approx(min(ious))
    assert m["mask_iou_p5"] == pytest.approx(np.percentile(ious, 5))
    assert m["worst_clip"] == per_clip[int(np.argmin(ious))]["name"]
    assert m["mask_iou_worst_clip"] <= m["mask_iou_p5"] <= max(ious)
    worst = m["mask_iou_worst_clip"]
    ok = accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, min_clip_iou=worst, max_clips=4)
    assert ok["failures"] == []
    if worst >= 1.0:  # pragma: no cover - INT8 masks equal FP32 masks on every clip
        pytest.skip("no clip differs; nothing to bound")
    with pytest.raises(AccuracyThresholdError, match="int8: worst clip .* < --min-clip-iou") as err:
        accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, min_clip_iou=min(1.0, worst + 1e-3),
                        min_mask_iou=0.0, max_clips=4)
    assert err.value.exit_code == 3


def test_metrics_on_crafted_masks(calib_file):
    """IoU, differing pixels, worst clip and 5th percentile on outputs whose answers are known."""
    from actionvos.calibration.metrics import Comparison

    data = load_calibration(calib_file).subset([0, 1, 2])

    def out(mask_px: list[tuple[int, int]]) -> dict[str, np.ndarray]:
        masks = np.full((1, 1, 2, 4, 4), -10.0, np.float32)  # P=1, T=1, Q=2 queries, 4x4 mask
        for y, x in mask_px:
            masks[0, 0, 0, y, x] = 10.0
        logits = np.array([[[[5.0], [-5.0]]]], np.float32)  # query 0 selected
        return {"pred_logits": logits, "pred_boxes": np.zeros((1, 1, 2, 4), np.float32), "pred_masks": masks,
                "pred_positives": np.array([[2.0]], np.float32)}

    ref = out([(0, 0), (0, 1), (1, 0), (1, 1)])
    cmp = Comparison(data, pos_thres=0.75, mask_threshold=0.5)
    cmp.add_clip(0, ref, ref)
    cmp.add_clip(1, ref, out([(0, 0), (0, 1), (3, 3), (3, 2)]))  # 2 shared, 4 differ: IoU 2/6
    cand = out([(0, 0), (0, 1), (1, 0), (1, 1)])
    cand["pred_positives"] = np.array([[0.5]], np.float32)  # sigmoid 0.62 < 0.75: gate flips
    cmp.add_clip(2, ref, cand)
    m = cmp.result()["all"]
    assert m["mask_iou_worst_clip"] == pytest.approx(1 / 3) and m["worst_clip"] == data.clip_name(1)
    assert m["mask_iou_mean"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert m["mask_iou_p5"] == pytest.approx(np.percentile([1, 1 / 3, 1], 5))
    assert m["mask_disagree_px_max"] == 4 and m["mask_disagree_px_mean"] == pytest.approx(4 / 3)
    assert m["mask_size_px"] == [4, 4] and m["gate_agreement"] == pytest.approx(2 / 3)
    assert m["errors"]["pred_masks"]["max_abs"] == pytest.approx(20.0)


def test_markdown_is_narrow_with_units_and_worst_clip_picture(fp32_dir, int8_dir, calib_file, tmp_path):
    from PIL import Image

    from actionvos.calibration.report import accuracy_report

    md_path = tmp_path / "rep" / "report.md"
    rep = accuracy_report(fp32_dir, {"int8": int8_dir}, calib_file, md_path=md_path, max_clips=3)
    md = md_path.read_text()
    main = _table_rows(md, "| candidate | backend | source |")
    errors = _table_rows(md, "| candidate | pred_masks (logit)")
    assert len(main[0]) <= 8 and len(errors[0]) <= 8
    assert any("mask px" in c for c in main[0]) and "p5" in main[0][4] and "worst clip" in main[0][4]
    assert "logit" in " ".join(errors[0]) and "box coord" in " ".join(errors[0])
    assert main[2][:4] == ["int8 (int8)", "onnxruntime-cpu", "all", "3"]
    fig = rep["figures"]["int8"]
    assert f"![int8: worst clips]({fig})" in md
    with Image.open(md_path.parent / fig) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 150
    # the int8 command drew its own picture into its folder
    assert (int8_dir / "accuracy_report_worst_int8.png").is_file()
    assert "accuracy_report_worst_int8.png" in (int8_dir / "accuracy_report.md").read_text()


def test_progress_bars_on_long_steps(fp32_dir, calib_file, capsys):
    from actionvos.calibration.fp16_sensitivity import measure_sensitivity
    from actionvos.calibration.report import accuracy_report

    measure_sensitivity(load_graph_dir(fp32_dir), load_calibration(calib_file).spread(1), candidates=["positive_head"],
                        progress=True)
    assert "fp16 sensitivity" in capsys.readouterr().err
    accuracy_report(fp32_dir, {"same": fp32_dir}, calib_file, max_clips=1, progress=True)
    assert "report" in capsys.readouterr().err


def test_lazy_clips_equal_loaded_clips(calib_file, tmp_path):
    eager = load_calibration(calib_file)
    lazy = load_calibration(calib_file, lazy=True)
    assert lazy.frames.shape == eager.frames.shape and lazy.frames.dtype == np.uint8
    for i in [3, 0, len(eager) - 1, 1]:  # backwards and forwards
        np.testing.assert_array_equal(lazy.frames[i], eager.frames[i])
    sub = lazy.subset([4, 2])
    np.testing.assert_array_equal(np.asarray(sub.frames), eager.frames[[4, 2]])
    np.testing.assert_array_equal(sub.segmenter_feed(1)["frames"], eager.frames[2])
    again = load_calibration(save_calibration(tmp_path / "from_lazy.npz", lazy))  # written one clip at a time
    np.testing.assert_array_equal(again.frames, eager.frames)
    assert again.meta == eager.meta


def test_lazy_read_of_damaged_member_is_one_line(calib_file, tmp_path):
    import zipfile

    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(calib_file) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            blob = zin.read(item.filename)
            if item.filename == "frames.npy":
                blob = blob[:len(blob) // 2]  # a truncated clip array behind a valid header
            zout.writestr(item.filename, blob)
    lazy = load_calibration(bad, lazy=True)
    with pytest.raises(InputError, match="cannot be read") as err:
        for i in range(len(lazy)):
            lazy.frames[i]
    assert "\n" not in str(err.value) and "calibrate collect" in str(err.value)


def test_output_folders_get_normal_permissions(fp32_dir, int8_dir, tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_dir(tmp_path / "made") as tmp:
            (tmp / "x.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o750  # umask honoured, not a fixed mode
    normal = 0o777 & ~old
    assert stat.S_IMODE(fp32_dir.stat().st_mode) == normal  # actionvos export (was 0700 from mkdtemp)
    assert stat.S_IMODE(int8_dir.stat().st_mode) == normal  # calibrate int8
    assert json.loads((int8_dir / "accuracy_report.json").read_text())["evaluation"]["disjoint_checked"]


def test_model_facts_from_a_model_card(tmp_path):
    """Graphs carrying a ModelCard (metadata format 2): facts come from the card; derived graphs change only its
    precision; FP16/INT8 folders get card.json with their precision and the tokenizer folder."""
    import dataclasses

    from actionvos.calibration.model_facts import _facts_from_card, derived_card_files, derived_props
    from actionvos.card import CARD_FILE, ModelCard, card_for_checkpoint, read_card_file, write_card
    from actionvos.model.config import get_preset

    base = card_for_checkpoint(get_preset("demo_small"), "0123456789abcdef", weights_note="demo weights")
    card = base.with_artifact(precision="fp32", msda="onnx", window=2,
                              input=dataclasses.replace(base.input, size=(96, 160)),
                              thresholds=dataclasses.replace(base.thresholds, pos_cls_thres=0.62))
    src = tmp_path / "fp32"
    (src / "tokenizer").mkdir(parents=True)
    (src / "tokenizer" / "vocab.json").write_text("{}")
    facts = _facts_from_card(card, {"card": card.to_dict()}, src / "text_encoder.onnx", src / "segmenter.onnx")
    assert (facts["frames"], facts["height"], facts["width"]) == (2, 96, 160)
    assert facts["pos_thres"] == 0.62 and facts["precision"] == "fp32" and facts["msda"] == "onnx"
    assert facts["hidden_dim"] == card.config.hidden_dim and facts["checkpoint_sha256"] == "0123456789abcdef"
    assert facts["tokenizer"] == str(src / "tokenizer") and facts["weights_note"] == "demo weights"

    props = derived_props({**card.onnx_props(), "actionvos.role": "segmenter"}, "int8", {"method": "minmax"})
    d = ModelCard.from_dict(json.loads(props["actionvos.card"]))
    assert d.precision.value == "int8" and d.thresholds.pos_cls_thres == 0.62 and d.window == 2
    assert json.loads(props["actionvos.calibration"]) == {"method": "minmax"} and "actionvos.precision" not in props

    write_card(src, card)
    out = tmp_path / "int8"
    out.mkdir()
    assert derived_card_files(src, out, "int8") == [CARD_FILE, "tokenizer/"]
    assert read_card_file(out).precision.value == "int8" and (out / "tokenizer" / "vocab.json").is_file()


def test_temp_folder_of_a_killed_run_is_removed(tmp_path):
    """A calibration killed by SIGKILL (e.g. out of memory) leaves its temporary folder; the next run removes it."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = tmp_path / f".out.tmp-{pid}-abc123"
    (stale / "segmenter.onnx").parent.mkdir()
    (stale / "segmenter.onnx").write_bytes(b"half written")
    live = tmp_path / f".out.tmp-{os.getpid()}-zzz"  # a running process: left alone
    live.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("x")
    assert not stale.exists() and live.exists() and (tmp_path / "out" / "x").is_file()


def test_fp16_folder_is_a_complete_export_folder(fp32_dir, tmp_path):
    """calibrate fp16 converts every graph of the export (the clip rule's frame encoder and window decoder too) and
    carries card.json (precision fp16) and the tokenizer, so runtimes can load it like the FP32 folder."""
    import onnx

    from actionvos.calibration.fp16 import convert_dir_fp16
    from actionvos.card import read_card_file

    def io(g) -> dict[str, int]:
        return {v.name: v.type.tensor_type.elem_type for v in list(g.graph.input) + list(g.graph.output)}

    out = tmp_path / "fp16"
    convert_dir_fp16(fp32_dir, out, measure=False)
    graphs = sorted(p.name for p in fp32_dir.glob("*.onnx"))
    assert {"frame_encoder.onnx", "window_decoder.onnx"} <= set(graphs)
    assert sorted(p.name for p in out.glob("*.onnx")) == graphs
    for name in graphs:
        m = onnx.load(str(out / name))
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer), name
        src = onnx.load(str(fp32_dir / name), load_external_data=False)
        assert io(m) == io(src), name
    assert read_card_file(out).precision.value == "fp16" and load_graph_dir(out).precision == "fp16"
    if (fp32_dir / "tokenizer").is_dir():
        names = sorted(p.name for p in (fp32_dir / "tokenizer").iterdir())
        assert sorted(p.name for p in (out / "tokenizer").iterdir()) == names


def test_int8_folder_has_the_clip_rule_graphs(int8_dir, fp32_dir, calib_file):
    """calibrate int8 quantizes the frame encoder and window decoder too (Q/DQ nodes); chained, they run on a real
    clip and give the segmenter's output shapes, finite (random weights: a pipeline check)."""
    import onnx

    from actionvos.calibration.common import make_session

    for name in ("frame_encoder.onnx", "window_decoder.onnx"):
        m = onnx.load(str(int8_dir / name))
        assert any(n.op_type == "QuantizeLinear" for n in m.graph.node), name
    data = load_calibration(calib_file)
    feed = data.segmenter_feed(0)
    fe = make_session(int8_dir / "frame_encoder.onnx")
    feats = dict(zip([o.name for o in fe.get_outputs()], fe.run(None, {"frames": feed["frames"]})))
    wd = make_session(int8_dir / "window_decoder.onnx")
    text = {k: feed[k] for k in ("text_word", "text_mask", "text_sentence")}
    out = wd.run(["pred_masks", "pred_positives"], {**feats, **text})
    ref = make_session(fp32_dir / "segmenter.onnx").run(["pred_masks", "pred_positives"], feed)
    assert all(np.isfinite(o).all() for o in out) and out[0].shape == ref[0].shape
