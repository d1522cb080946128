"""Regenerate the README's pictures from the README's main job.

Runs ``actionvos run box.mp4 --action "move box" --objects "box,pen,right hand"`` with the bundled demo model
(through the CLI, exactly as a user would), then writes

* ``benchmarks/overlay_frame.png`` — one frame of ``box_overlay.mp4`` (the middle of the longest stretch where the
  most objects pass the gate, ties broken by the box's probability; or ``--frame K``), exactly as decoded from the
  H.264 overlay;
* ``benchmarks/positive_prob.png`` — the run's ``box_positive_prob.png`` when the run wrote one, else the same
  plot drawn here from ``summary.json`` (:func:`actionvos.plots.plot_positive_probs`).

Run it again whenever the demo model, its threshold or the renderer changes::

    python benchmarks/make_readme_pictures.py                    # the whole video (a few minutes on 2 CPU cores)
    python benchmarks/make_readme_pictures.py --max-frames 72    # a quick look: the first two clips only
    python benchmarks/make_readme_pictures.py -- --pos-thres 0.6 # extra options after -- go to `actionvos run`
    python benchmarks/make_readme_pictures.py --from-run /tmp/box_out   # reuse a finished run of the main job

Exit status 0 on success; a failed run prints its stderr and exits with its status.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "box.mp4"
ACTION, OBJECTS = "move box", "box,pen,right hand"
CLIP_LEN = 36  # frames per clip of the official rule (spec 3.1), used only to rebuild a plot from per-clip values


def _cut(video: Path, n: int, out: Path) -> Path:
    """The first ``n`` frames of ``video`` as an H.264 MP4 at ``out`` (same name, so the run names it the same)."""
    import av

    from actionvos.video_out import H264Writer

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or 30)
        with H264Writer(out, fps) as w:
            for k, f in enumerate(c.decode(s)):
                if k >= n:
                    break
                w.write(f.to_ndarray(format="rgb24"))
    return out


def _pick_frame(video: dict, threshold: float) -> int:
    """The overlay frame to show: middle of the longest run of frames where the most objects pass the gate
    (ties: the highest positive probability of object 0, the action's object), from ``summary.json`` alone."""
    n = int(video["frames_written"])
    objs = video["objects"]
    per_frame = []
    for o in objs:
        series = o.get("positive_prob_per_frame")
        if not series:  # per clip only
            series = [o["positive_prob"][min(k // CLIP_LEN, len(o["positive_prob"]) - 1)] for k in range(n)]
        per_frame.append(np.asarray(series[:n], dtype=np.float64))
    passing = sum((p >= threshold).astype(int) for p in per_frame)
    key = passing * 10.0 + per_frame[0]  # passing objects first, then object 0's probability
    best = key >= key.max() - 1e-9
    runs, start = [], None
    for k, b in enumerate(list(best) + [False]):
        if b and start is None:
            start = k
        elif not b and start is not None:
            runs.append((k - start, start))
            start = None
    length, first = max(runs)
    return first + length // 2


def _frame_of(video: Path, index: int) -> np.ndarray:
    import av

    with av.open(str(video)) as c:
        for k, f in enumerate(c.decode(video=0)):
            if k == index:
                return f.to_ndarray(format="rgb24")
    raise SystemExit(f"{video} has fewer than {index + 1} frames")


def _threshold(summary: dict) -> float:
    s = summary.get("settings", {})
    for get in (lambda: s["card"]["thresholds"]["pos_cls_thres"], lambda: s["pos_thres"], lambda: s["card"]["pos_cls_thres"]):
        try:
            value = get()
        except (KeyError, TypeError):
            continue
        if value is not None:
            return float(value)
    raise SystemExit("summary.json records no positive-gate threshold (settings.card.thresholds.pos_cls_thres)")


def _plot_from_summary(summary: dict, video: dict, out: Path) -> None:
    from actionvos.plots import plot_positive_probs

    n = int(video["frames_written"])
    series, per_clip = {}, False
    for o in video["objects"]:
        if o.get("positive_prob_per_frame"):
            series[o["name"]] = o["positive_prob_per_frame"]
        else:  # per clip only: expand to frames (clips of CLIP_LEN frames)
            per_clip = True
            series[o["name"]] = [o["positive_prob"][min(k // CLIP_LEN, len(o["positive_prob"]) - 1)] for k in range(n)]
    rule = summary.get("settings", {}).get("rule", "clip")
    starts = list(range(0, n, CLIP_LEN)) if per_clip or rule == "clip" else None
    plot_positive_probs(out, series, _threshold(summary), fps=video.get("fps"), clip_starts=starts,
                        title=f"{video['name']}: positive probability ({rule} rule)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help=f"input video (default {DEFAULT_VIDEO})")
    ap.add_argument("--max-frames", type=int, default=None, help="use only the first N frames (quick look)")
    ap.add_argument("--frame", type=int, default=None, help="overlay frame index to save (default: picked, see above)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks", help="where the two PNGs go")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run's output folder here (default: a temp folder)")
    ap.add_argument("--from-run", type=Path, default=None,
                    help="use this finished output folder of the main job instead of running it again")
    args = ap.parse_args(argv)
    if args.from_run is None and not args.video.is_file():
        raise SystemExit(f"video {args.video} not found; pass --video PATH")

    from actionvos.io_utils import atomic_path

    with tempfile.TemporaryDirectory(prefix="readme_pictures_") as tmp:
        tmp = Path(tmp)
        if args.from_run is not None:
            run_dir = args.from_run
        else:
            video = args.video
            if args.max_frames:
                video = _cut(video, args.max_frames, tmp / "input" / video.name)
            run_dir = args.keep or tmp / "run"
            cmd = [sys.executable, "-m", "actionvos", "run", str(video), "--action", ACTION, "--objects", OBJECTS,
                   "--output", str(run_dir), "--no-progress", *(["--force"] if args.keep else []), *extra]
            print("running:", " ".join(cmd[1:]), flush=True)
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if r.returncode != 0:
                sys.stderr.write(r.stderr)
                return r.returncode
        summary = json.loads((run_dir / "summary.json").read_text())
        vsum = summary["videos"][0]
        name = vsum["name"]
        overlay = run_dir / (vsum.get("overlay") or f"{name}_overlay.mp4")
        index = args.frame if args.frame is not None else _pick_frame(vsum, _threshold(summary))
        args.out_dir.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        frame_png = args.out_dir / "overlay_frame.png"
        with atomic_path(frame_png) as t:
            Image.fromarray(_frame_of(overlay, index)).save(t, format="PNG", optimize=True)
        plot_png = args.out_dir / "positive_prob.png"
        run_plot = run_dir / (vsum.get("plot") or f"{name}_positive_prob.png")
        if run_plot.is_file():
            with atomic_path(plot_png) as t:
                shutil.copyfile(run_plot, t)
        else:
            _plot_from_summary(summary, vsum, plot_png)
        gates = ", ".join(f"{o['name']} {sum(o['passed_gate'])}/{len(o['passed_gate'])} clips"
                          for o in vsum["objects"])
        print(f"threshold {_threshold(summary)}; passed: {gates}")
        print(f"wrote {frame_png} (overlay frame {index} of {vsum['frames_written']}) and {plot_png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
