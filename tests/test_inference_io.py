"""Frame sources, prompts, writers and the offline loop (with a stand-in model, so these run in seconds)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import box_video_path, make_small_clip, shared_dir, train_tiny_tokenizer  # noqa: E402

from actionvos.errors import InputError  # noqa: E402
from actionvos.prompts import Prompt, build_prompts, check_template, parse_objects, prompts_from_expressions  # noqa: E402
from actionvos.inference.video_io import FrameListSource, open_source  # noqa: E402
from actionvos.inference.writers import OverlayWriter, davis_palette, write_label_png  # noqa: E402

from actionvos.card import OFFICIAL_FACTS  # noqa: E402

pytestmark = pytest.mark.skipif(not box_video_path().is_file(), reason=f"shared data not found at {shared_dir()}")


# ------------------------------------------------------------------ prompts (spec 4)
def test_build_prompts_template_and_order():
    prompts = build_prompts(" move box ", "box, pen ,right hand", OFFICIAL_FACTS["prompt_template"])
    assert [p.name for p in prompts] == ["box", "pen", "right hand"]
    assert prompts[2].text == "right hand used in the action of move box"
    custom = build_prompts("Move Box", ["box"], "{object}, {action}")
    assert custom == [Prompt("box", "box, Move Box")]  # verbatim, no lowercasing (spec 3.1)


@pytest.mark.parametrize(
    "action, objects, match",
    [
        ("", "box", "action is empty"),
        ("   ", "box", "action is empty"),
        ("move box", "", "no object names"),
        ("move box", " , ", "no object names"),
        ("move box", ",box", "object name 1"),
        ("move box", "box,,pen", "object name 2"),
        ("move box", "box,pen,Box", "listed twice"),
        ("move box", None, "no object names"),
    ],
)
def test_build_prompts_rejects(action, objects, match):
    with pytest.raises(InputError, match=match):
        build_prompts(action, objects, OFFICIAL_FACTS["prompt_template"])


@pytest.mark.parametrize("template", ["{object} only", "{action} only", "{object} {action} {verb}", "{object {action}"])
def test_bad_template(template):
    with pytest.raises(InputError, match="template"):
        check_template(template)


def test_parse_objects_limit():
    with pytest.raises(InputError, match="at most 255"):
        parse_objects([f"o{i}" for i in range(256)])


def test_prompts_from_expressions_key_order_and_names():
    exps = {"10": {"exp": "cup used in the action of x"}, "2": {"exp": "left hand used in the action of x"}, "0": {"exp": "free text"}}
    prompts = prompts_from_expressions(exps, "v", OFFICIAL_FACTS["prompt_template"])
    assert [p.name for p in prompts] == ["free text", "left hand", "cup"]
    assert [p.name for p in prompts_from_expressions(exps, "v")] == [p.text for p in prompts]  # no card yet: whole text
    with pytest.raises(InputError, match="no 'exp'"):
        prompts_from_expressions({"0": {"exp": ""}}, "v")


# ------------------------------------------------------------------ sources
def test_video_source_clips(tmp_path):
    clip = make_small_clip(tmp_path / "small.mp4", frames=7, short_side=96)
    src = open_source(clip)
    assert src.kind == "video" and len(src.videos) == 1
    video = src.videos[0]
    assert video.name == "small" and video.size == (96, 128) and video.fps == pytest.approx(10.0)
    clips = list(video.clips(3))
    assert [len(c.names) for c in clips] == [3, 3, 1]
    assert [c.start for c in clips] == [0, 3, 6]
    assert clips[1].names == ["00003", "00004", "00005"]
    assert clips[0].frames.dtype == np.uint8 and clips[0].frames.shape == (3, 96, 128, 3)


def test_video_source_is_rgb(tmp_path):
    import cv2

    path = tmp_path / "red.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for _ in range(2):
        w.write(np.full((24, 32, 3), (0, 0, 255), np.uint8))  # pure red in BGR
    w.release()
    frames = next(open_source(path).videos[0].clips(36)).frames
    assert frames[..., 0].mean() > 200 and frames[..., 2].mean() < 50


def test_frame_folder_natural_order_and_errors(tmp_path):
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    for n in (10, 2, 1):
        Image.new("RGB", (20, 10), (n, n, n)).save(folder / f"f{n}.png")
    (folder / "notes.txt").write_text("ignored")
    video = open_source(folder).videos[0]
    assert video.name == "seq" and video.size == (10, 20) and video.num_frames == 3
    clip = next(video.clips(36))
    assert clip.names == ["f1", "f2", "f10"]
    assert clip.frames[:, 0, 0, 0].tolist() == [1, 2, 10]

    Image.new("RGB", (21, 10)).save(folder / "f11.png")
    with pytest.raises(InputError, match="f11.png.*21x10"):
        list(open_source(folder).videos[0].clips(36))

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="contains no frames"):
        open_source(empty)


def test_expression_file_minivisor():
    root = shared_dir() / "data" / "minivisor"
    src = open_source(root / "ImageSets" / "val_meta_expressions_promptaction.json", split="val")
    assert src.kind == "expression_file"
    video = src.videos[0]
    assert isinstance(video, FrameListSource) and video.name == "val/00000001_box_move_box"
    assert video.prompts[0].text == "box used in the action of move box"  # named with the card's template by `run`
    assert video.size == (480, 640)
    clip = next(video.clips(36))
    assert clip.names[0] == "frame_0000000320" and clip.frames.shape[0] == 8


def test_expression_file_errors(tmp_path):
    example = shared_dir() / "reference" / "expression_file_example.json"
    root = tmp_path / "ds"
    (root / "ImageSets").mkdir(parents=True)
    (root / "ImageSets" / "expression_file.json").write_text(example.read_text())
    with pytest.raises(InputError, match="JPEGImages_Sparse"):
        open_source(root)
    (root / "JPEGImages_Sparse" / "val").mkdir(parents=True)
    with pytest.raises(InputError, match="frame_0000002521.jpg.*does not exist"):
        open_source(root)
    (root / "ImageSets" / "expression_file.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        open_source(root)


# ------------------------------------------------------------------ writers
def test_davis_palette():
    pal = davis_palette()
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    from PIL import Image

    ann = shared_dir() / "data" / "minivisor" / "Annotations_Sparse" / "train" / "00000001_box_move_box" / "frame_0000000000.png"
    with Image.open(ann) as im:
        ref = np.array(im.getpalette()[: 3 * 16]).reshape(-1, 3)
    assert (pal[: len(ref)] == ref).all()


def test_label_png_roundtrip(tmp_path):
    from PIL import Image

    labels = np.zeros((12, 20), np.uint8)
    labels[2:5, 3:9] = 1
    labels[6:, 10:] = 3
    write_label_png(tmp_path / "a.png", labels)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "P" and im.size == (20, 12)
        assert (np.array(im) == labels).all()
        assert im.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_overlay_writer_frame_count(tmp_path):
    import cv2

    path = tmp_path / "v_overlay.mp4"
    with OverlayWriter(path, 10.0, (48, 64), ["box", "pen"], threshold=0.75) as w:
        assert not path.exists()  # written under a temporary name until closed
        for i in range(5):
            labels = np.zeros((48, 64), np.uint8)
            labels[: 10 + i, :20] = 1
            w.write(np.full((48, 64, 3), 90, np.uint8), labels, [0.9, 0.2], [True, False])
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v_overlay.mp4"]


# ------------------------------------------------------------------ the clip-rule loop with a stand-in backend
class _FakeBackend:
    """Implements the Backend interface in numpy: masks follow image brightness, prompt 1 fails the gate."""

    def __init__(self, card, interrupt_on_decode: int | None = None):
        from actionvos.runtime.backends.base import BackendInfo

        self.info = BackendInfo(name="fake", card=card)
        self.calls = {"encode_text": 0, "encode_frame": 0, "decode": 0}
        self.interrupt_on_decode = interrupt_on_decode

    def encode_text(self, input_ids, attention_mask):
        from actionvos.runtime.prompt_cache import TextArrays

        self.calls["encode_text"] += 1
        P, L = input_ids.shape
        return TextArrays(np.zeros((P, L, 8), np.float32), attention_mask == 0, np.zeros((P, 8), np.float32))

    def bind_text(self, text):
        return len(text)

    def encode_frame(self, frame):
        self.calls["encode_frame"] += 1
        return frame

    def decode(self, window, P):
        from actionvos.runtime.backends.base import StepOutputs

        self.calls["decode"] += 1
        if self.interrupt_on_decode is not None and self.calls["decode"] == self.interrupt_on_decode:
            raise KeyboardInterrupt
        x = np.stack(window).astype(np.float32).mean(-1) / 255.0  # [T, H, W]
        T, H, W = x.shape
        m = x[:, : H // 4 * 4, : W // 4 * 4].reshape(T, H // 4, 4, W // 4, 4).mean((2, 4))
        Q = 5
        masks = np.stack([np.stack([(m - 0.2 * p) * 8 for _ in range(Q)], 1) for p in range(P)]).astype(np.float32)
        logits = np.zeros((P, T, Q), np.float32)
        logits[:, :, 1] = 1.0
        positives = np.array([3.0 if p != 1 else -3.0 for p in range(P)], np.float32)
        return StepOutputs(query_logits=logits, mask_logits=masks, positive_logit=positives)

    def close(self):
        pass


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from actionvos.tokenizer import Tokenizer

    return Tokenizer.from_dir(train_tiny_tokenizer(tmp_path_factory.mktemp("tok")))


@pytest.fixture()
def fake_setup(tmp_path):
    from actionvos.card import InputRule, card_for_checkpoint
    from actionvos.model.config import get_preset

    card = dataclasses.replace(card_for_checkpoint(get_preset("reference_tiny"), "fake"),
                               input=InputRule(short_side=64, max_clip_frames=3))
    clip = make_small_clip(tmp_path / "clip.mp4", frames=7, short_side=64)
    return card, open_source(clip), build_prompts("move box", "box,pen,right hand", card.prompt_template)


def _png_stats(folder: Path, n_objects: int):
    from PIL import Image

    frames = sorted(folder.glob("*.png"))
    labels = np.stack([np.array(Image.open(p)) for p in frames])
    areas = [(labels == i + 1).reshape(len(frames), -1).sum(1) for i in range(n_objects)]
    return frames, [(int((a > 0).sum()), float(a[a > 0].mean()) if (a > 0).any() else 0.0) for a in areas]


def test_clip_rule_batches_and_caches(tmp_path, fake_setup, tiny_tokenizer):
    from actionvos.pipeline.drivers import ClipDriver
    from actionvos.pipeline.run import run_source

    card, src, prompts = fake_setup
    backend = _FakeBackend(card)
    out = tmp_path / "out"
    summary = run_source(src, prompts, ClipDriver(backend, None, tiny_tokenizer), out, progress=False)
    assert backend.calls == {"encode_text": 1, "encode_frame": 7, "decode": 3}  # clips of 3+3+1, text once
    frames, stats = _png_stats(out / "clip", 3)
    assert [p.name for p in frames] == [f"{i:05d}.png" for i in range(7)]
    data = json.loads((out / "summary.json").read_text())
    assert data["interrupted"] is False and data["frames_written"] == 7
    objs = data["videos"][0]["objects"]
    assert [o["passed_gate"] for o in objs] == [[True] * 3, [False] * 3, [True] * 3]
    assert [o["selected_query"] for o in objs] == [[1] * 3] * 3
    assert objs[1]["frames_with_mask"] == 0  # gated prompt: zeroed masks
    for o, (n, area) in zip(objs, stats):
        assert o["frames_with_mask"] == n and o["mean_mask_area_px"] == pytest.approx(area, abs=1e-3)
        assert len(o["positive_prob_per_frame"]) == 7
    assert set(data["timings_s"]) >= {"read_frames", "resize", "encode_text", "encode_frame", "decode", "postprocess", "write"}
    assert summary.videos[0].frames_written == 7 and (out / "clip_positive_prob.png").is_file()


def test_clip_rule_ctrl_c_keeps_finished_frames(tmp_path, fake_setup, tiny_tokenizer):
    from actionvos.pipeline.drivers import ClipDriver
    from actionvos.pipeline.run import run_source
    from actionvos.video_out import probe_video

    card, src, prompts = fake_setup
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_source(src, prompts, ClipDriver(_FakeBackend(card, interrupt_on_decode=2), None, tiny_tokenizer), out,
                   progress=False)
    data = json.loads((out / "summary.json").read_text())
    assert data["interrupted"] is True and data["frames_written"] == 3
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in out.iterdir()) == ["clip", "clip_overlay.mp4", "clip_positive_prob.png", "summary.json"]
    assert probe_video(out / "clip_overlay.mp4").frames == 3


def test_tokenizer_must_fit_the_model(tiny_tokenizer):
    from actionvos.card import card_for_checkpoint
    from actionvos.errors import ConfigError
    from actionvos.model.config import RobertaSettings, get_preset

    card = card_for_checkpoint(get_preset("reference_tiny"), "x")
    prompts = [p.text for p in build_prompts("move box", "box,right hand", card.prompt_template)]
    ids, mask = tiny_tokenizer.encode_for(prompts, card)
    assert ids.shape == mask.shape and ids.shape[0] == 2 and ids[0, 0] == 0
    small = dataclasses.replace(card, config=dataclasses.replace(card.config, text=RobertaSettings(vocab_size=100)))
    with pytest.raises(ConfigError, match="--tokenizer"):
        tiny_tokenizer.encode_for(prompts, small)
