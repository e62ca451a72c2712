"""Video decoding with PyAV: measure a file, and stream its frames (with their times) resized for the cache."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
from av.video.reformatter import VideoReformatter


@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself (measured, never assumed).

    Attributes:
        path: The file.
        fps: Frame rate from the stream's average rate (falls back to frames / duration).
        num_frames: Frame count from the container, or None when the container does not say.
        duration_seconds: Stream duration, or None when unknown.
        width: Frame width in pixels.
        height: Frame height in pixels.
        codec: Codec name.
    """

    path: Path
    fps: float
    num_frames: int | None
    duration_seconds: float | None
    width: int
    height: int
    codec: str


def probe_video(path: str | Path) -> VideoInfo:
    """Open a video and read its stream properties.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be opened as a video or has no video stream / frame rate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"video {path}: the file has no video stream")
            stream = container.streams.video[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            frames = int(stream.frames) if stream.frames else None
            rate: Fraction | None = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else (frames / duration if frames and duration else 0.0)
            if not fps > 0:
                raise ValueError(f"video {path}: cannot measure the frame rate")
            return VideoInfo(
                path, fps, frames, duration, stream.codec_context.width, stream.codec_context.height,
                stream.codec_context.name,
            )
    except av.error.FFmpegError as error:
        raise ValueError(f"video {path}: unreadable ({error})") from error


class TimedFrame(NamedTuple):
    """One decoded frame and when it is shown.

    Attributes:
        time_seconds: Presentation time, pts × time base, on the file's own clock: a stream whose
            start time is 1.5 s shows its first frame at 1.5 s, not at 0 (the start time is part
            of the timing the file records); None when the frame carries no timestamp.
        image: (H, W, 3) uint8 RGB.
    """

    time_seconds: float | None
    image: np.ndarray


def iter_timed_frames(path: str | Path, size: int) -> Iterator[TimedFrame]:
    """Decode every frame with its presentation time, resized (squashed) to size × size RGB uint8.

    Times come from each frame's pts, not from its index: a variable-frame-rate file, or one
    whose stream starts late (a nonzero start time), is placed where it really is. The whole frame is kept (no crop):
    a fixed camera's places may sit near its edges.

    Raises:
        ValueError: Decoding fails; the message names the file and the frame index reached.
    """
    path = Path(path)
    index = 0
    reformatter = VideoReformatter()  # one scaler context for the whole stream, not one per frame
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                known = frame.pts is not None and frame.time_base is not None
                seconds = float(frame.pts * frame.time_base) if known else None
                image = reformatter.reformat(frame, width=size, height=size, format="rgb24").to_ndarray()
                yield TimedFrame(seconds, image)
                index += 1
    except av.error.FFmpegError as error:
        raise ValueError(f"video {path}: decoding failed at frame {index} ({error})") from error


def iter_frames(path: str | Path, size: int) -> Iterator[np.ndarray]:
    """Decode every frame, resized to size × size RGB uint8 (`iter_timed_frames` without times)."""
    for frame in iter_timed_frames(path, size):
        yield frame.image


def decode_clip(path: str | Path, start_seconds: float, stop_seconds: float, num_frames: int, size: int) -> np.ndarray:
    """Decode one clip straight from the video (seek + decode), as the reference code does.

    Used as the baseline of the cache benchmark: T frames spread uniformly over
    [start, stop), (T, size, size, 3) uint8.
    """
    wanted = np.linspace(start_seconds, stop_seconds, num_frames, endpoint=False)
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(int(max(start_seconds - 0.5, 0) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            while len(frames) < num_frames and frame.time + 1e-6 >= wanted[len(frames)]:
                frames.append(frame.to_ndarray(width=size, height=size, format="rgb24"))
            if len(frames) == num_frames or frame.time >= stop_seconds:
                break
    if not frames:
        raise ValueError(f"video {path}: no frames in [{start_seconds}, {stop_seconds}) s")
    while len(frames) < num_frames:
        frames.append(frames[-1])
    return np.stack(frames)
