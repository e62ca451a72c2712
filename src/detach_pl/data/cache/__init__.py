"""The prepared window cache: one HDF5 file per dataset and set of shaping settings.

Layout (all datasets share it; `WindowCache` reads it):

```
/                       attrs: format_version, settings (JSON), meta (JSON: channel/class/place names…),
                        run_names (JSON), reports (JSON: one RunReport per run)
/                       attrs (JPEG caches only): frame_storage (JSON: codec, quality)
/runs/<run>/frames      uint8 (F, H, W, 3), one chunk per frame: each run's video stored once,
                        never once per (overlapping) window (raw storage, the default)
/runs/<run>/frames_jpeg vlen uint8 (F,): each frame as JPEG bytes, attr frame_shape (jpeg storage)
/runs/<run>/frame_time_ms float64 (F,) when each frame is shown, on the sensor clock:
                        video_offset_ms + pts × time base · 1000 (the stream's start time
                        included); NaN where a frame had no timestamp
/runs/<run>/channel_sums float64 (3, C): count, sum, sum of squares of the raw non-NaN samples,
                        so any choice of training runs yields its standardisation statistics
/runs/<run>             attrs: fps, subject, sequence_label, sensor_seconds, video_seconds
/windows/sensor         float32 (N, C, L) filtered + resampled, unstandardised; chunk = one window
/windows/zeros          float32 (N, C, L) the same filter + resampling of each window's exact-zero
                        indicator (read-time standardisation keeps zeros at 0; windows.py)
/windows/dead           bool (N, C) channel more than half NaN inside the window
/windows/{run, frame_start, frame_stop, label, place, start_ms}   (N,) per-window table
```

A window's frames [frame_start, frame_stop) are those whose `frame_time_ms` falls inside its time
span, so a variable frame rate or a late stream start stays aligned with the sensors. When frame
times break (a jump of more than `GAP_INTERVALS` frame intervals, a step back, a frame without a
timestamp), the frames from there on cannot be placed: the windows that reach them are dropped
and the run's report says so.

The file is written under a temporary name (`.<name>.tmp-<host>-<pid>`) and renamed when
complete, so an interrupted build never leaves a file that a later run would read. Builders take
an exclusive lock on `<name>.lock` beside the cache: a second process waits and then reuses the
finished cache; the first thing a builder does under the lock is to remove temporaries left by
builders on this host that have died (kill -9). SIGTERM during a build is handled like Ctrl-C:
the temporary is removed and the process stops with a message, also when the signal lands inside
h5py, which may turn the interrupt into its own error or lose it (the build stops before the next
run and never renames a file written after a SIGTERM).

Modules: `recording` (what readers hand in, what the writer reports), `placement` (frame times
on the sensor clock), `signals` (the sensor side of the windows), `frames` (the frame storage
options, writing and reading frames), `locking` (one builder, nothing half-written), `build`
(`build_cache`) and `reader` (`WindowCache`).
"""

from detach_pl.data.cache.build import CACHE_FORMAT_VERSION, build_cache, cache_key, stored_reports
from detach_pl.data.cache.frames import DEFAULT_FRAME_STORAGE, FrameStorage, decode_jpeg_frames, encode_jpeg_frames
from detach_pl.data.cache.locking import (
    CacheBuildInterrupted,
    build_lock,
    remove_stale_temporaries,
    sigterm_as_interrupt,
)
from detach_pl.data.cache.placement import GAP_INTERVALS, FramePlacement, place_frames
from detach_pl.data.cache.reader import WindowCache
from detach_pl.data.cache.recording import RunRecording, RunReport
from detach_pl.data.cache.signals import window_signals

_window_signals = window_signals  # the name deploy/preprocess.py imports

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DEFAULT_FRAME_STORAGE",
    "GAP_INTERVALS",
    "CacheBuildInterrupted",
    "FramePlacement",
    "FrameStorage",
    "RunRecording",
    "RunReport",
    "WindowCache",
    "build_cache",
    "build_lock",
    "cache_key",
    "decode_jpeg_frames",
    "encode_jpeg_frames",
    "place_frames",
    "remove_stale_temporaries",
    "sigterm_as_interrupt",
    "stored_reports",
    "window_signals",
]
