"""Video writing shared by the stand-in release generators (PyAV, streamed frame by frame)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: float,
    codec: str = "mpeg4",
    bit_rate: int | None = None,
) -> int:
    """Encode (H, W, 3) uint8 frames with PyAV (size from the first frame); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for image in frames:
            if count == 0:
                stream.height, stream.width = image.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def write_timed_video(
    path: Path,
    times_seconds: Sequence[float],
    size: int = 32,
    codec: str = "libx264",
    time_base: Fraction = Fraction(1, 1000),
) -> int:
    """Encode one frame per entry of `times_seconds`, shown at exactly that time (explicit pts).

    Variable frame rates, gaps and a late stream start (a first time above 0, which the container
    records as its start time) are all expressed by the times. Frame k shows the grey level
    k mod 256, so a decoded frame can be matched to the one written. Returns the frame count.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = np.diff(np.asarray(times_seconds, dtype=np.float64))
    nominal = 1.0 / float(np.median(steps)) if steps.size else 10.0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(nominal).limit_denominator(1001))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        for index, seconds in enumerate(times_seconds):
            image = np.full((size, size, 3), index % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(round(Fraction(seconds).limit_denominator(10**6) / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return len(times_seconds)
