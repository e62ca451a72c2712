"""Video writing shared by the stand-in release generators (PyAV, streamed frame by frame)."""

from __future__ import annotations

from collections.abc import Iterable
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
