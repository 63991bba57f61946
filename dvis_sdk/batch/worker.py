"""Processing one video of a batch: open (decode ahead), infer, write the result atomically, report a record.

Whatever goes wrong with one video (unreadable or corrupt file, out of memory, an unexpected error) becomes a
``failed`` record with a one-line reason; only interrupts (``KeyboardInterrupt``) propagate.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .discover import VideoTask
from .store import OVERLAY_NAME, clean_temp_files, result_path

OnStart = Callable[[VideoTask, int], None]
OnFrames = Callable[[int], None]
ERRORS_LOG = "errors.log"


@dataclass(frozen=True)
class BatchOptions:
    """What every worker needs to know, picklable (sent to worker processes and Ray actors)."""

    out_dir: str
    fingerprint: str
    stride: int = 1
    max_frames: Optional[int] = None
    score_threshold: float = 0.0
    save_video: bool = False
    overlap: bool = True


def new_record(task: VideoTask, opts: BatchOptions, status: str, **fields: Any) -> dict:
    rec = {"video_id": task.video_id, "path": task.path, "output": task.key, "status": status, "frames": None,
           "instances": None, "seconds": None, "error": None, "fingerprint": opts.fingerprint}
    rec.update(fields)
    return rec


class Prepared:
    """A video opened for inference (``VideoSegmenter.open``: decoding already under way), or the error opening
    it raised. :meth:`get` returns the :class:`~dvis_sdk.inference.handle.VideoHandle` or re-raises that error."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._error: Optional[BaseException] = None

    def _open(self, seg: Any, task: VideoTask, opts: BatchOptions) -> None:
        try:
            if task.kind == "missing":
                from ..io import VideoReadError
                raise VideoReadError(f"{task.path}: no such file or directory")
            self._handle = seg.open(task.path, stride=opts.stride, max_frames=opts.max_frames)
        except Exception as e:  # noqa: BLE001 - handed to the consumer, which records it
            self._error = e

    @classmethod
    def now(cls, seg: Any, task: VideoTask, opts: BatchOptions) -> "Prepared":
        p = cls()
        p._open(seg, task, opts)
        return p

    def wait(self) -> None:
        pass

    def get(self) -> Any:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._handle

    def discard(self) -> None:
        """Stop decoding a video that will not be processed (interrupt)."""
        self.wait()
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Opening(Prepared):
    """:class:`Prepared` opened in a background thread: the next video decodes while the current one infers."""

    def __init__(self, seg: Any, task: VideoTask, opts: BatchOptions):
        super().__init__()
        self._thread = threading.Thread(target=self._open, args=(seg, task, opts), name="dvis-batch-open",
                                        daemon=True)
        self._thread.start()

    def wait(self) -> None:
        self._thread.join()


def _infer(seg: Any, task: VideoTask, opts: BatchOptions, prepared: Optional[Prepared], on_start: Optional[OnStart],
           on_frames: Optional[OnFrames]):
    handle = (prepared or Prepared.now(seg, task, opts)).get()
    if on_start is not None:
        on_start(task, int(handle.num_frames))
    return seg.predict(handle, on_frames=on_frames)


def _write_overlay(result: Any, task: VideoTask, folder: Path) -> None:
    tmp = folder / f".overlay.tmp{Path(OVERLAY_NAME).suffix}"
    from ..visualize import render_video
    from ..visualize_panoptic import render_dense_video

    render = render_video if getattr(result, "task", "vis") == "vis" else render_dense_video
    written = Path(render(result, task.path, tmp))
    os.replace(written, folder / f"overlay{written.suffix}")  # .avi when the mp4 encoder is missing


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def process_video(seg: Any, task: VideoTask, opts: BatchOptions, prepared: Optional[Prepared] = None,
                  on_start: Optional[OnStart] = None, on_frames: Optional[OnFrames] = None) -> dict:
    """Segment one video and write ``OUT/<key>/results.json`` (+ overlay); return its manifest record.

    The overlay is written before ``results.json``, so the result file existing means the video is complete."""
    from ..inference.runner import InferenceOOMError
    from ..io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoReadError

    t0 = time.perf_counter()
    try:
        result = _infer(seg, task, opts, prepared, on_start, on_frames)
        if opts.score_threshold:
            result = result.filter(opts.score_threshold)
        result.meta["fingerprint"] = opts.fingerprint
        folder = result_path(Path(opts.out_dir), task).parent
        folder.mkdir(parents=True, exist_ok=True)
        clean_temp_files(folder)
        if opts.save_video:
            _write_overlay(result, task, folder)
        result.save(folder, video_id=task.video_id)
        return new_record(task, opts, "ok", frames=result.num_frames, instances=len(result),
                          seconds=round(time.perf_counter() - t0, 3), segmenter=seg.settings())
    except InferenceOOMError as e:
        error = f"out of memory after {e.frames_done} frames: {_one_line(e)}"
    except (VideoReadError, OSError) as e:
        error = _one_line(e)
        suffix = Path(task.path).suffix.lower()
        known = suffix in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
        if task.kind == "file" and not known and "corrupt or empty" in error:
            error = (f"{task.path}: not a video file ({suffix or 'no extension'} is not a video extension and "
                     "OpenCV/FFmpeg cannot read it)")
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the batch; the traceback goes to a log
        error = f"{type(e).__name__}: {_one_line(e)} (traceback in {ERRORS_LOG})"
        _log_traceback(Path(opts.out_dir), task)
    if error and task.path not in error:
        error = f"{task.path}: {error}"
    return new_record(task, opts, "failed", error=error, seconds=round(time.perf_counter() - t0, 3))


def _log_traceback(out_dir: Path, task: VideoTask) -> None:
    text = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} {task.path}\n{traceback.format_exc()}\n"
    try:
        with open(out_dir / ERRORS_LOG, "a") as f:  # one write per entry: workers may append concurrently
            f.write(text)
    except OSError:
        pass
