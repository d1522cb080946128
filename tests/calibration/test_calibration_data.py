"""Calibration data: round trip, sampling, and clear one-line errors for corrupt or mismatched files."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from actionvos.calibration.common import load_graph_dir
from actionvos.calibration.clips import check_compatible, merge_calibration
from actionvos.calibration.npz_store import load_calibration, save_calibration
from actionvos.calibration.sampling import sample_clip_ends
from actionvos.errors import InputError


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


def test_sampling_spreads_over_time():
    assert sample_clip_ends(455, 1, 4) == [0, 151, 303, 454]
    assert sample_clip_ends(455, 3, 2) == [2, 454]
    assert sample_clip_ends(5, 8, 3) == [4]  # shorter than T: one clip ending at the last frame
    assert sample_clip_ends(8, 1, 20) == list(range(8))  # never more clips than frames


def test_collected_clips_match_runtime_feed(calib_file, fp32_dir):
    from PIL import Image

    from actionvos.pipeline.frames import resize_frame

    data = load_calibration(calib_file)
    g = load_graph_dir(fp32_dir)
    check_compatible(data, g)
    assert data.frames.shape[1:] == (1, 3, 96, 160) and data.frames.dtype == np.uint8
    assert data.input_size == {"frames": 1, "height": 96, "width": 160}
    groups = set(data.source_groups)
    assert groups == {"box", "minivisor/val"}
    assert len(data.sets) == 2  # move box (video and box sequences share it, stored once), rotate bottle
    # a minivisor clip equals the runtime's resize of the JPEG
    i = int(np.flatnonzero(data.source == 1)[0])
    src = data.meta["sources"][1]
    frame_no = int(data.frame_index[i, -1])
    seq = src["path"]
    names = sorted(p for p in __import__("os").listdir(seq))
    rgb = np.asarray(Image.open(f"{seq}/{names[frame_no]}").convert("RGB"))
    np.testing.assert_array_equal(data.frames[i, -1].transpose(1, 2, 0), resize_frame(rgb, (96, 160)))
    # stored text features are the FP32 text graph's
    from actionvos.calibration.common import make_session

    s = data.sets[0]
    word, mask, sent = make_session(g.text).run(None, s.text_feed())
    np.testing.assert_array_equal(word, s.text_word)
    np.testing.assert_array_equal(mask, s.text_mask)


def test_round_trip_and_append(calib_file, tmp_path):
    a = load_calibration(calib_file)
    out = save_calibration(tmp_path / "copy.npz", a)
    b = load_calibration(out)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.frame_index, b.frame_index)
    assert a.meta == b.meta
    for sa, sb in zip(a.sets, b.sets):
        np.testing.assert_array_equal(sa.text_word, sb.text_word)
        assert sa.texts == sb.texts
    m = merge_calibration(a, b.subset([0, 1]))
    assert len(m) == len(a) + 2 and len(m.sets) == 2 * len(a.sets)
    assert m.prompt_set[-1] == b.prompt_set[1] + len(a.sets)
    save_calibration(tmp_path / "merged.npz", m)
    assert len(load_calibration(tmp_path / "merged.npz")) == len(a) + 2
    assert not list(tmp_path.glob(".*.tmp*"))  # atomic writes leave no temporary files


def test_corrupt_files_give_one_line_errors(calib_file, tmp_path):
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(calib_file.read_bytes()[:5000])
    with pytest.raises(InputError) as err:
        load_calibration(truncated)
    assert "unusable" in _one_line(err) and "calibrate collect" in str(err.value)

    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(InputError) as err:
        load_calibration(garbage)
    _one_line(err)

    other = tmp_path / "other.npz"
    np.savez(other, frames=np.zeros((1, 1, 3, 8, 8), np.uint8))
    with pytest.raises(InputError, match="no 'meta'") as err:
        load_calibration(other)
    _one_line(err)

    with zipfile.ZipFile(calib_file) as z:
        names = z.namelist()
    assert "meta.npy" in names
    with pytest.raises(InputError, match="does not exist"):
        load_calibration(tmp_path / "missing.npz")


def test_mismatched_size_and_model_are_rejected(calib_file, fp32_dir, tmp_path):
    from actionvos.calibration.int8 import quantize_dir_int8

    data = load_calibration(calib_file)
    g = load_graph_dir(fp32_dir)

    wrong_hash = load_calibration(calib_file)
    wrong_hash.meta = json.loads(json.dumps(data.meta))
    wrong_hash.meta["model_hash"] = "0123456789abcdef"
    path = save_calibration(tmp_path / "wrong_model.npz", wrong_hash)
    with pytest.raises(InputError, match="collected for model 0123456789abcdef") as err:
        check_compatible(load_calibration(path), g)
    assert "--onnx" in _one_line(err)
    with pytest.raises(InputError, match="collected for model"):
        quantize_dir_int8(fp32_dir, path, tmp_path / "never")
    assert not (tmp_path / "never").exists()

    small = load_calibration(calib_file)
    small.frames = np.ascontiguousarray(small.frames[:, :, :, :64, :128])
    small.meta = json.loads(json.dumps(data.meta))
    small.meta["input"].update(height=64, width=128)
    path = save_calibration(tmp_path / "wrong_size.npz", small)
    with pytest.raises(InputError, match="1x64x128") as err:
        check_compatible(load_calibration(path), g)
    assert "1x96x160" in _one_line(err)

    lying = load_calibration(calib_file)
    lying.meta = json.loads(json.dumps(data.meta))
    lying.meta["input"].update(height=64)
    path = save_calibration(tmp_path / "lying.npz", lying)
    with pytest.raises(InputError, match="frames are"):
        load_calibration(path)
