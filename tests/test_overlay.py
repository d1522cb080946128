"""The one overlay renderer (actionvos.render), the H.264 writer (actionvos.video_out) and their users:
the file overlay (OverlayWriter) and the live HUD (runtime.hud)."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from actionvos.render import (PALETTE, LegendRow, blend_masks, davis_palette, format_threshold,  # noqa: E402
                              legend_text, object_colour, render_overlay)
from actionvos.video_out import H264Writer, VideoWriteError, probe_video  # noqa: E402


def _decode(path: Path) -> tuple[list[np.ndarray], list[float], object]:
    """All frames of ``path`` as RGB arrays, their presentation times (s), and the stream (read with PyAV directly)."""
    frames, times = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = (s.codec_context.name, str(s.codec_context.pix_fmt), str(s.codec_tag), s.codec_context.width,
                s.codec_context.height, float(s.duration * s.time_base))
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
    return frames, times, info


def _gradient(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 90)], -1).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ palette
def test_palette_is_defined_once_and_shared():
    from actionvos.inference import writers
    from actionvos.training import visor_labels

    assert PALETTE[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert writers.davis_palette is davis_palette
    assert visor_labels.davis_palette() == PALETTE.reshape(-1).tolist()
    assert object_colour(0) == (128, 0, 0) and object_colour(2) == (128, 128, 0)
    src = (Path(__file__).resolve().parents[1] / "actionvos").rglob("*.py")
    copies = [p for p in src if "<< (7 - j)" in p.read_text(encoding="utf-8")]
    assert [p.name for p in copies] == ["render.py"]


# ------------------------------------------------------------------------------------------------ legend text
def test_legend_text_three_decimals_threshold_and_decision():
    assert legend_text("box", 0.71634, True, 0.62) == "box 0.716 ≥ 0.62 ✓"
    assert legend_text("pen", 0.3012, False, 0.62) == "pen 0.301 < 0.62 ✗"
    # the two-decimal legend showed "p=0.75" for both of these; three decimals tell them apart
    assert legend_text("box", 0.7496, False, 0.75) == "box 0.750 < 0.75 ✗"
    assert legend_text("box", 0.7504, True, 0.75) == "box 0.750 ≥ 0.75 ✓"
    assert legend_text("box", 0.9, True, None) == "box 0.900 ✓"
    assert [format_threshold(t) for t in (0.75, 0.615, 0.5, 1.0, 0.0)] == ["0.75", "0.615", "0.5", "1.0", "0.0"]


def test_legend_font_has_the_symbols():
    from actionvos.render import _font

    font = _font(20)
    missing = np.asarray(font.getmask("\U000f0000"))  # a private-use code point: the font's "missing glyph" box
    for ch in "≥✓✗":
        glyph = np.asarray(font.getmask(ch))
        assert glyph.size and glyph.max() > 0
        assert glyph.shape != missing.shape or not np.array_equal(glyph, missing), f"{ch!r} is drawn as a missing glyph"


# ------------------------------------------------------------------------------------------------ renderer
def test_blend_masks_colours_masks_and_keeps_background():
    frame = np.full((40, 50, 3), 200, np.uint8)
    labels = np.zeros((40, 50), np.uint8)
    labels[10:30, 10:30] = 1
    labels[5:8, 40:45] = 3
    out = blend_masks(frame, labels, alpha=0.5)
    np.testing.assert_allclose(out[20, 20], (np.array([200, 200, 200]) + PALETTE[1]) / 2, atol=1)
    np.testing.assert_allclose(out[6, 42], (np.array([200, 200, 200]) + PALETTE[3]) / 2, atol=1)
    assert (out[labels == 0] == 200).all() and (frame == 200).all()  # background and input untouched
    assert not np.array_equal(out[10, 20], out[20, 20])  # outline drawn on the border
    with pytest.raises(ValueError, match="labels must be"):
        blend_masks(frame, labels[:, :10])


def _rows(passed=(True, False)):
    return [LegendRow("box", 0.716, passed[0], 0), LegendRow("pen", 0.301, passed[1], 1)]


def test_render_overlay_requires_and_draws_the_threshold():
    frame = np.full((240, 320, 3), 120, np.uint8)
    labels = np.zeros((240, 320), np.uint8)
    labels[150:, 200:] = 1
    with pytest.raises(TypeError):
        render_overlay(frame, labels, _rows())  # no default threshold
    a = render_overlay(frame, labels, _rows(), 0.62)
    b = render_overlay(frame, labels, _rows(), 0.75)
    c = render_overlay(frame, labels, _rows(), None)
    assert a.shape == frame.shape and a.dtype == np.uint8
    legend = (slice(0, 80), slice(0, 320))
    assert not np.array_equal(a[legend], b[legend])  # the threshold is in the picture
    assert not np.array_equal(a[legend], c[legend])
    np.testing.assert_array_equal(a[200:, :150], frame[200:, :150])  # outside legend and masks: unchanged
    np.testing.assert_allclose(a[200, 260], (120 + PALETTE[1]) / 2, atol=1)
    # the swatch of each object is drawn in its palette colour
    for i in (0, 1):
        col = np.array(object_colour(i))
        assert (np.abs(a[legend].astype(int) - col).sum(-1) <= 3).sum() > 20
    with pytest.raises(ValueError, match="threshold"):
        render_overlay(frame, labels, _rows(), 1.5)


def test_render_overlay_marks_pass_green_and_gated_red():
    frame = np.full((480, 640, 3), 128, np.uint8)
    labels = np.zeros((480, 640), np.uint8)

    def greenish_reddish(img):
        p = img[:120].astype(int)
        green = ((p[..., 1] > 180) & (p[..., 0] < 160) & (p[..., 2] < 170)).sum()
        red = ((p[..., 0] > 200) & (p[..., 1] < 150) & (p[..., 2] < 150)).sum()
        return green, red

    g_pass, r_pass = greenish_reddish(render_overlay(frame, labels, [LegendRow("box", 0.9, True, 3)], 0.5))
    g_fail, r_fail = greenish_reddish(render_overlay(frame, labels, [LegendRow("box", 0.1, False, 3)], 0.5))
    assert g_pass > 5 and r_pass == 0
    assert r_fail > 5 and g_fail == 0


def test_render_overlay_header_footer_and_tiny_frames():
    frame = np.full((240, 320, 3), 200, np.uint8)
    labels = np.zeros((240, 320), np.uint8)
    plain = render_overlay(frame, labels, _rows(), 0.62)
    hud = render_overlay(frame, labels, _rows(), 0.62, header=["9.9 FPS · p50 80 ms"], footer=["action: pour water_"])
    assert not np.array_equal(plain[:20], hud[:20])  # header line on top
    assert hud[-5:, 200:].mean() < 120 and (plain[-5:] == 200).all()  # footer bar at the bottom
    for h, w in ((17, 23), (31, 45), (2, 2)):
        out = render_overlay(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8), _rows(), 0.62,
                             header=["x" * 80], footer=["y"])
        assert out.shape == (h, w, 3)


def test_hud_draws_through_the_same_renderer():
    from actionvos.runtime.hud import HudInfo, hud_lines, render_frame, render_frame_rgb

    class Obj:
        def __init__(self, name, p, ok):
            self.name, self.positive_prob, self.passed_gate = name, p, ok

    frame = _gradient(120, 160)
    labels = np.zeros((120, 160), np.uint8)
    labels[60:, 80:] = 2
    objs = [Obj("box", 0.716, True), Obj("pen", 0.301, False)]
    rgb = render_frame_rgb(frame, labels, objs, None, threshold=0.62)
    np.testing.assert_array_equal(rgb, render_overlay(frame, labels, _rows(), 0.62))  # = the file overlay's picture
    bgr = render_frame(frame, labels, objs, HudInfo(fps=12.3, p50_ms=81, p99_ms=140, dropped=3, backend="pytorch",
                                                    status="action: pour water_"), threshold=0.62)
    hud_rgb = render_frame_rgb(frame, labels, objs, HudInfo(fps=12.3, p50_ms=81, p99_ms=140, dropped=3, backend="pytorch",
                                                            status="action: pour water_"), threshold=0.62)
    np.testing.assert_array_equal(bgr, hud_rgb[..., ::-1])
    assert hud_lines(HudInfo(fps=12.34, p50_ms=81.2, p99_ms=140.4, dropped=3, reconnects=1, backend="ort")) == [
        "12.3 FPS · p50 81 ms · p99 140 ms · dropped 3 · reconnects 1 · [ort]"]


# ------------------------------------------------------------------------------------------------ H.264 writer
def test_h264_writer_codec_frames_and_default_timing(tmp_path):
    path = tmp_path / "v.mp4"
    with H264Writer(path, 25.0) as w:
        assert not path.exists()  # temporary name until closed and verified
        for i in range(10):
            w.write(np.roll(_gradient(48, 64), i, axis=1))
    frames, times, (codec, pix_fmt, tag, width, height, duration) = _decode(path)
    assert (codec, pix_fmt, tag, width, height) == ("h264", "yuv420p", "avc1", 64, 48)
    assert len(frames) == 10 and w.info.frames == 10
    np.testing.assert_allclose(times, np.arange(10) / 25.0, atol=1e-4)
    assert duration == pytest.approx(10 / 25.0, abs=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    assert np.abs(frames[0].astype(int) - _gradient(48, 64)).mean() < 4  # pixels survive the encode


def test_h264_writer_places_frames_at_their_timestamps(tmp_path):
    path = tmp_path / "rec.mp4"
    w = H264Writer(path, 10.0)
    for t in (1000.0, 1000.5, 1002.0, 1004.0):  # monotonic clock readings: the first is time zero
        w.write(_gradient(32, 48), t)
    info = w.close()
    _, times, (*_, duration) = _decode(path)
    np.testing.assert_allclose(times, [0.0, 0.5, 2.0, 4.0], atol=1e-4)
    assert duration == pytest.approx(4.1, abs=1e-3) and info.duration_s == pytest.approx(4.1, abs=1e-3)

    # close(t_end): a session that ended 20 s after its first frame plays for 20 s
    w = H264Writer(tmp_path / "long.mp4", 30.0)
    for t in (50.0, 50.4, 51.0):
        w.write(_gradient(32, 48), t)
    info = w.close(t_end=70.0)
    assert info.duration_s == pytest.approx(20.0, abs=1e-3) and w.frames_written == 3

    w = H264Writer(tmp_path / "bad.mp4", 30.0)
    w.write(_gradient(32, 48), 5.0)
    with pytest.raises(ValueError, match="backwards"):
        w.write(_gradient(32, 48), 4.0)
    with pytest.raises(ValueError, match="every frame or for none"):
        w.write(_gradient(32, 48))
    w.abort()
    assert not (tmp_path / "bad.mp4").exists()


def test_h264_writer_pads_odd_sizes(tmp_path):
    frame = _gradient(47, 63)
    with H264Writer(tmp_path / "odd.mp4", 10.0) as w:
        w.write(frame)
        w.write(frame)
    assert w.video_size == (48, 64)
    frames, _, (_, _, _, width, height, _) = _decode(tmp_path / "odd.mp4")
    assert (width, height) == (64, 48)
    assert np.abs(frames[0][:47, :63].astype(int) - frame).mean() < 4  # content kept, padding added bottom/right
    assert np.abs(frames[0][47, :63].astype(int) - frame[46]).mean() < 8


def test_h264_writer_without_frames_or_with_bad_frames(tmp_path):
    with H264Writer(tmp_path / "none.mp4", 10.0):
        pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="differs"):
        with H264Writer(tmp_path / "x.mp4", 10.0, (32, 48)) as w:
            w.write(np.zeros((30, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        with H264Writer(tmp_path / "x.mp4", 10.0) as w:
            w.write(np.zeros((32, 48, 3), np.float32))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="fps"):
        H264Writer(tmp_path / "x.mp4", 0)


def test_h264_writer_disk_failure_leaves_no_file(tmp_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes the OS refuse writes (EFBIG) mid-video."""
    resource = pytest.importorskip("resource")
    del resource
    out = tmp_path / "out" / "v_overlay.mp4"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30000, resource.RLIM_INFINITY))
        from actionvos.video_out import H264Writer, VideoWriteError
        rng = np.random.default_rng(0)
        try:
            with H264Writer({str(out)!r}, 25.0, (96, 128)) as w:
                for i in range(100):
                    w.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        except VideoWriteError as err:
            print("ERRNO", err.errno, isinstance(err, OSError))
            print("MSG", err)
            sys.exit(3)
    """)
    (tmp_path / "out").mkdir()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"ERRNO {errno.EFBIG} True" in r.stdout
    assert str(out) in r.stdout and "nothing was written under that name" in r.stdout
    assert list((tmp_path / "out").iterdir()) == []  # no final file, no temporary left


def test_h264_writer_verification_failure_leaves_no_file(tmp_path, monkeypatch):
    import actionvos.video_out as vo

    real = vo.probe_video

    def short(path):  # a file that reads back with a frame missing (a truncated write)
        info = real(path)
        return vo.VideoInfo(**{**info.__dict__, "frames": info.frames - 1})

    monkeypatch.setattr(vo, "probe_video", short)
    w = H264Writer(tmp_path / "v.mp4", 10.0)
    for _ in range(3):
        w.write(_gradient(32, 48))
    with pytest.raises(VideoWriteError, match=r"v\.mp4.*did not verify.*2 frames read back of 3"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_h264_writer_unwritable_location(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError) as info:
        H264Writer(tmp_path / "file" / "v.mp4", 10.0)
    assert "file" in str(info.value)


def test_probe_video_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    with pytest.raises(VideoWriteError, match="bad.mp4"):
        probe_video(bad)


# ------------------------------------------------------------------------------------------------ users
def test_overlay_writer_h264_with_legend(tmp_path):
    from actionvos.inference.writers import OverlayWriter

    path = tmp_path / "v_overlay.mp4"
    with pytest.raises(TypeError):
        OverlayWriter(path, 10.0, (120, 160), ["box", "pen"])  # the threshold has no default
    frame = np.full((120, 160, 3), 100, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    labels[70:, 90:] = 1
    with OverlayWriter(path, 10.0, (120, 160), ["box", "pen"], threshold=0.62) as w:
        for i in range(4):
            w.write(frame, labels, [0.716, 0.301], [True, False], t=i * 0.5)
    frames, times, (codec, pix_fmt, *_rest) = _decode(path)
    assert (codec, pix_fmt, len(frames)) == ("h264", "yuv420p", 4) and w.info.frames == 4
    np.testing.assert_allclose(times, [0, 0.5, 1.0, 1.5], atol=1e-4)
    expect = render_overlay(frame, labels, _rows(), 0.62)
    assert np.abs(frames[0].astype(int) - expect).mean() < 3  # the picture is the shared renderer's
    np.testing.assert_allclose(frames[0][100, 130], (100 + PALETTE[1]) / 2, atol=6)
    with pytest.raises(ValueError, match="2 objects"):
        with OverlayWriter(tmp_path / "w.mp4", 10.0, (120, 160), ["box", "pen"], threshold=0.62) as w:
            w.write(frame, labels, [0.7], [True])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v_overlay.mp4"]


def test_hud_recorder_writes_timed_h264(tmp_path):
    from actionvos.runtime.hud import HudRecorder

    path = tmp_path / "rec.mp4"
    rec = HudRecorder(path, 30.0, (48, 64), ["box"])
    red_bgr = np.zeros((48, 64, 3), np.uint8)
    red_bgr[..., 2] = 220
    for t in (10.0, 12.0, 15.0):
        rec.write_bgr(red_bgr, t)
    rec.write_bgr(np.zeros((96, 128, 3), np.uint8), 16.0)  # another size is resized
    rec.close()
    frames, times, (codec, *_rest, duration) = _decode(path)
    assert codec == "h264" and len(frames) == 4
    np.testing.assert_allclose(times, [0, 2, 5, 6], atol=1e-4)
    assert duration == pytest.approx(6 + 1 / 30, abs=1e-3)
    assert frames[0][24, 32, 0] > 180 and frames[0][24, 32, 2] < 40  # BGR in, RGB red out
    with pytest.raises(RuntimeError, match="closed"):
        rec.write_bgr(red_bgr, 17.0)
