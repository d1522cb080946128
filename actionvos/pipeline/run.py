"""``actionvos run``'s library function: any source, any backend, either rule, one sink.

:func:`run_source` reads each video of an :class:`~actionvos.inference.video_io.InputSource` (a video file, a frame
folder or an ActionVOS expression file), feeds its frames to a driver (:class:`~actionvos.pipeline.drivers.ClipDriver`
for the official rule, :class:`~actionvos.pipeline.drivers.CausalDriver` for ``--stream``) and writes the results
through :class:`~actionvos.pipeline.sink.VideoSink`. ``summary.json`` is written however the run ends (finished,
error, Ctrl-C / SIGTERM / SIGHUP; :func:`actionvos.inference.writers.summary_on_exit`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from actionvos.errors import InputError
from actionvos.inference.video_io import InputSource
from actionvos.inference.writers import Summary, VideoSummary, summary_on_exit
from actionvos.pipeline.drivers import STEP_STAGES, CausalDriver, ClipDriver, Driver
from actionvos.pipeline.sink import VideoSink, settings_of
from actionvos.prompts import Prompt

__all__ = ["run", "run_source", "READ_CHUNK"]

log = logging.getLogger(__name__)

#: Frames read per chunk from a source (memory bound only; drivers see one frame at a time).
READ_CHUNK = 16


def run_source(source: InputSource, prompts: list[Prompt] | None, driver: Driver, output_dir: str | Path, *,
               overlay: bool = True, plot: bool = True, progress: bool = True,
               settings: dict[str, Any] | None = None) -> Summary:
    """Segment every video of ``source`` with ``driver``; write ``{output_dir}/{video}/{frame}.png``, the overlays,
    the probability plots and ``{output_dir}/summary.json``.

    Args:
        source: from :func:`~actionvos.inference.video_io.open_source`.
        prompts: the run's prompts (object ``i`` → label ``i + 1``); a video's own prompts (expression file) win.
        driver: a :class:`ClipDriver` (official rule) or :class:`CausalDriver` (streaming rule) over any backend;
            its card (with overrides) is recorded in the summary.
        output_dir: created if needed (the caller prepares it: :func:`actionvos.inference.writers.prepare_output_dir`).
        overlay, plot: also write the overlay MP4 / the probability plot per video.
        progress: a progress bar on stderr.
        settings: extra settings recorded in the summary (model path, ...).
    Returns:
        The :class:`~actionvos.inference.writers.Summary` written to ``summary.json``; ``timings_s`` holds seconds per
        stage (``read_frames``, ``encode_text``, the driver's stages, ``write``).
    Raises:
        InputError: a video without prompts (checked before anything is written), an unreadable frame mid-run.
        KeyboardInterrupt (and the SIGTERM/SIGHUP subclass): re-raised after the finished files are kept, the overlay is
            closed and ``summary.json`` is written with ``interrupted``.
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    for video in source.videos:
        if not (video.prompts or prompts):
            raise InputError(f"no prompts for video {video.name!r}; pass --action and --objects")
    card = driver.card
    summary = Summary(input=str(source.path), input_kind=source.kind,
                      settings=settings_of(card, driver.rule, driver.backend.info.name,
                                           {"overlay": overlay, "driver": driver.config.to_dict(), **(settings or {})}),
                      weights_note=card.weights_note)
    timings = {k: 0.0 for k in ("read_frames", "encode_text", *[s for s in STEP_STAGES if s != "total"], "write")}
    output_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=sum(v.num_frames for v in source.videos), unit="frame", desc=f"actionvos run ({driver.rule} rule)",
               disable=not progress, leave=False)

    def finish() -> None:
        bar.close()
        summary.timings_s = timings
        summary.settings["prompt_cache"] = vars(driver.cache.stats).copy()

    with summary_on_exit(output_dir / "summary.json", summary, finish):
        for video in source.videos:
            vprompts = video.prompts or prompts
            driver.reset()
            if [p.text for p in driver.prompts] != [p.text for p in vprompts]:
                driver.set_prompts(prompts=vprompts)
                timings["encode_text"] += driver.last_text_ms / 1e3
            vsum = VideoSummary(name=video.name, size=tuple(video.size))
            summary.videos.append(vsum)
            sink = VideoSink(output_dir, video.name, video.fps, video.size, vprompts, card, vsum, overlay=overlay,
                             plot=plot, rule=driver.rule)
            try:
                with sink.opened():
                    _segment(video, driver, sink, timings, bar)
            finally:
                vsum.record_decode(video)
                if vsum.truncated:
                    log.warning("video %s: %d of %d declared frames decoded (truncated or damaged file)", video.name,
                                vsum.frames_decoded, vsum.frames_expected)
    return summary


def _segment(video, driver: Driver, sink: VideoSink, timings: dict[str, float], bar) -> None:
    """Feed one video's frames to the driver and write each result as it arrives."""
    names: list[str] = []
    clips = video.clips(READ_CHUNK)

    def write(results) -> None:
        for r in results:
            t0 = time.perf_counter()
            for k, v in r.timings_ms.items():
                if k != "total":
                    timings[k] += v / 1e3
            name = names.pop(0)
            sink.write(name, r.frame if r.frame is not None else pending.pop(0), r)
            timings["write"] += time.perf_counter() - t0
            bar.update(1)

    pending: list = []
    while True:
        t0 = time.perf_counter()
        clip = next(clips, None)
        timings["read_frames"] += time.perf_counter() - t0
        if clip is None:
            break
        for name, frame in zip(clip.names, clip.frames):
            names.append(name)
            if isinstance(driver, ClipDriver):
                write(driver.push(frame))
            else:
                pending.append(frame)
                write([driver.step(frame)])
    if isinstance(driver, ClipDriver):
        write(driver.flush())


def run(input: str | Path, output: str | Path, *, action: str | None = None, objects: str | None = None,
        model: str | Path | None = None, tokenizer: str | Path | None = None, backend: str = "auto",
        device: str | None = None, preset: str | None = None, prompt_template: str | None = None,
        pos_thres: float | None = None, split: str = "val", overlay: bool = True, plot: bool = True, force: bool = False,
        progress: bool = True, stream: bool = False, window: int = 1, temporal: str = "mean", horizon: int = 30,
        threads: int | None = None, plugin_library: str | None = None, prompt_cache: str | None = None) -> Summary:
    """``actionvos run``: segment a video, a frame folder or an ActionVOS expression file with any model.

    Every check that can fail on user input (options, output folder, model, tokenizer, prompts, input frames) runs
    before anything is written.

    Args:
        input: video file, frame folder, or dataset root / ``expression_file.json`` (its videos carry their prompts).
        output: output folder (see :mod:`actionvos.pipeline.sink`); must be empty or absent unless ``force``.
        action, objects: the prompts (``objects`` comma-separated) for a video or frame folder.
        model: checkpoint, export folder or engine folder; None = the bundled demo.
        tokenizer, backend, device, preset, threads, plugin_library: see :func:`actionvos.artifacts.open_model`.
        prompt_template, pos_thres: overrides of the card (recorded in ``summary.json``).
        split: split folder of an expression file's frames.
        overlay, plot, progress: write the overlay MP4s / probability plots, show a progress bar.
        force: replace an earlier run in ``output`` as a whole.
        stream: the causal streaming rule (``window``, ``temporal``, ``horizon``) instead of the official clip rule.
        prompt_cache: ``off``/None, ``auto`` or a ``.npz`` path for the text-feature cache.
    Returns:
        The written :class:`~actionvos.inference.writers.Summary`.
    Raises:
        ConfigError / InputError / CheckpointError: one line naming the problem and the fix.
    """
    from actionvos.inference.video_io import open_source
    from actionvos.inference.writers import check_output_dir, prepare_output_dir
    from actionvos.pipeline.drivers import StreamConfig
    from actionvos.artifacts import check_device
    from actionvos.prompts import build_prompts, check_action_objects, check_template, object_name
    from actionvos.runtime.session_builder import open_session

    output = Path(output)
    config = StreamConfig(window=window, temporal=temporal, horizon=horizon, pos_thres=pos_thres,
                          prompt_template=prompt_template).check()
    if not stream and (window != 1 or temporal != "mean"):
        from actionvos.errors import ConfigError

        raise ConfigError("--window and --temporal belong to the causal rule; add --stream")
    check_output_dir(output, force)
    if prompt_template is not None:
        check_template(prompt_template)
    if device is not None and backend in ("auto", "pytorch") and (model is None or not Path(model).is_dir()):
        check_device(device)  # a PyTorch device (a folder's --device names an onnxruntime provider)
    source = open_source(input, split=split)
    if source.kind == "expression_file":
        if action is not None or objects is not None:
            log.warning("the expression file's own prompts are used; --action/--objects are ignored")
    else:
        check_action_objects(action, objects)
    session = open_session(backend, model=model, tokenizer=tokenizer, device=device, preset=preset, threads=threads,
                           plugin_library=plugin_library, config=config, prompt_cache=prompt_cache)
    with session:
        driver = session if stream else ClipDriver(session.backend, config, session.tokenizer, session.cache)
        prompts = None
        if source.kind == "expression_file":  # name each object with the card's template ("bread used in ..." → bread)
            for video in source.videos:
                video.prompts = [Prompt(name=object_name(p.text, driver.template), text=p.text) for p in video.prompts]
        else:
            prompts = build_prompts(action, objects, driver.template)
        driver.set_prompts(prompts=prompts or source.videos[0].prompts)
        prepare_output_dir(output, force, [v.name for v in source.videos])
        return run_source(source, prompts, driver, output, overlay=overlay, plot=plot, progress=progress,
                          settings={"model": str(model) if model is not None else "bundled demo",
                                    "tokenizer": driver.tokenizer.source})
