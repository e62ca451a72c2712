"""Opening checkpoint files: one place that names a missing, truncated or foreign file.

Every file of weights detach_pl opens (`--ckpt_path`, a previous stage's checkpoint, a probe for
prediction or export, local backbone weights) goes through here, so a bad file is answered with
the setting that named it, the file, its size and what is wrong with it, never with
`torch.load`'s unpickler traceback.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

#: What `torch.load(weights_only=True)` puts before the reason it refused a file.
UNPICKLER_MARK = "WeightsUnpickler error:"


def missing_file_message(setting: str, file: Path) -> str:
    """The message for a checkpoint setting that names no file."""
    return f"{setting} {file}: no such checkpoint file"


def described(setting: str, file: Path) -> str:
    """`<setting> <file> (<size> bytes)`: how a bad file is named in every message here."""
    return f"{setting} {file} ({file.stat().st_size} bytes)"


def unreadable_message(what: str, error: BaseException) -> str:
    """The message for a file that `torch.load` could not read (`what` from `described`).

    The safe unpickler wraps its one useful line ("Unsupported operand 35", "Unsupported global:
    GLOBAL pkg.Class …") in several lines of advice about `weights_only`; only that line is kept.
    A file refused for holding objects other than tensors and plain data is a checkpoint, and is
    named as one.
    """
    text = str(error)
    if UNPICKLER_MARK in text:
        text = text.split(UNPICKLER_MARK, 1)[1]
    reason = next((line.strip() for line in text.splitlines() if line.strip()), "")[:160]
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
    if refused:
        return (
            f"{what} holds objects other than tensors and plain data ({refused.group(1)}), which the safe "
            "unpickler does not load; save the checkpoint again with plain values (dicts, lists, numbers, strings)"
        )
    return (
        f"{what} is not a readable checkpoint: the file is truncated (e.g. copied or written while a run "
        f"was killed) or not a checkpoint at all ({type(error).__name__}: {reason})"
    )


def check_checkpoint_file(path: str | Path, setting: str = "--ckpt_path") -> None:
    """Make sure `path` is a complete PyTorch checkpoint before Lightning opens it.

    Lightning's own failure on a truncated file is a `PytorchStreamReader` traceback that never
    names the file. A checkpoint is a zip archive: its member checksums are verified (no
    unpickling); a file that is not a zip (truncated, or an old-format save) is loaded once.

    Raises:
        FileNotFoundError: There is no such file.
        ValueError: The file is truncated, damaged or not a PyTorch checkpoint.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(missing_file_message(setting, file))
    what = described(setting, file)
    if zipfile.is_zipfile(file):
        try:
            with zipfile.ZipFile(file) as archive:
                damaged = archive.testzip()
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            raise ValueError(f"{what} is damaged: {error}") from error
        if damaged is not None:
            raise ValueError(f"{what} is damaged: {damaged} fails its checksum")
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            raise ValueError(f"{what} is a zip archive but not a PyTorch checkpoint (no data.pkl)")
        return
    read_checkpoint(file, setting)


def read_checkpoint(path: str | Path, setting: str, weights_only: bool = True) -> dict[str, Any]:
    """Load a checkpoint (a dict saved by `torch.save`) on the CPU.

    Args:
        path: The file.
        setting: The setting or argument that named it, for the messages.
        weights_only: `torch.load`'s safe unpickler (tensors and plain data only); a Lightning
            checkpoint whose hyper-parameters hold other objects needs False.

    Raises:
        FileNotFoundError: There is no such file.
        ValueError: The file is truncated, not a checkpoint, or holds something other than a dict.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(missing_file_message(setting, file))
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        raise ValueError(unreadable_message(described(setting, file), error)) from error
    if not isinstance(loaded, dict):
        raise ValueError(
            f"{described(setting, file)} holds a {type(loaded).__name__}, not a checkpoint (a dict of tensors and "
            "settings saved by torch.save)"
        )
    return loaded
