"""Opening weight files: every bad file is named with its setting, size and what is wrong."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch

from detach_pl.checkpoints import check_checkpoint_file, read_checkpoint
from detach_pl.nn import EncoderConfig
from detach_pl.nn.video import VideoSpatialEncoder


def saved(path: Path, value: object) -> Path:
    torch.save(value, path)
    return path


def test_a_checkpoint_is_read_back_as_saved(tmp_path: Path) -> None:
    state = {"state_dict": {"weight": torch.arange(6.0).reshape(2, 3)}, "hyper_parameters": {"lr": 0.1}}
    loaded = read_checkpoint(saved(tmp_path / "a.ckpt", state), "--ckpt_path")
    torch.testing.assert_close(loaded["state_dict"]["weight"], state["state_dict"]["weight"])
    assert loaded["hyper_parameters"] == {"lr": 0.1}
    check_checkpoint_file(tmp_path / "a.ckpt")


def test_a_missing_file_is_named_with_its_setting(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^model\.init_args\.x .*nothing\.ckpt: no such checkpoint file$"):
        read_checkpoint(tmp_path / "nothing.ckpt", "model.init_args.x")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"# a README, not weights\n", "UnpicklingError"),
        (b"", "EOFError"),
        (pickle.dumps({"weights": [1, 2, 3]}, protocol=2)[:-4], r"\w+Error"),
    ],
    ids=["text", "empty", "cut pickle"],
)
def test_a_file_that_is_not_a_checkpoint_is_named_with_its_size(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_bytes(content)
    expected = (
        rf"^--ckpt_path .*notes\.ckpt \({len(content)} bytes\) is not a readable checkpoint: the file is truncated "
        rf".* or not a checkpoint at all \({reason}: "
    )
    for read in (read_checkpoint, check_checkpoint_file):
        with pytest.raises(ValueError, match=expected):
            read(path, "--ckpt_path")


def test_a_truncated_zip_checkpoint_is_not_readable(tmp_path: Path) -> None:
    whole = saved(tmp_path / "whole.ckpt", {"state_dict": {"weight": torch.zeros(1000)}})
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.ckpt \(\d+ bytes\) is not a readable checkpoint"):
        read_checkpoint(cut, "--ckpt_path")


def test_a_saved_tensor_or_list_is_not_a_checkpoint(tmp_path: Path) -> None:
    for name, value in (("tensor.pt", torch.zeros(3)), ("list.pt", [torch.zeros(3)])):
        kind = type(value).__name__
        with pytest.raises(ValueError, match=rf"{re.escape(name)} \(\d+ bytes\) holds a {kind}, not a checkpoint"):
            read_checkpoint(saved(tmp_path / name, value), "weights")


def test_only_plain_data_is_unpickled_by_default(tmp_path: Path) -> None:
    """`weights_only=True` refuses arbitrary objects; the stage chain's own checkpoints may ask for False."""
    path = saved(tmp_path / "objects.ckpt", {"state_dict": {}, "config": EncoderConfig()})
    with pytest.raises(ValueError, match=r"^--ckpt_path .*objects\.ckpt \(\d+ bytes\) holds objects other than tensors "
                                         r"and plain data \(detach_pl\.nn\.config\.EncoderConfig\), which the safe "
                                         r"unpickler does not load"):
        read_checkpoint(path, "--ckpt_path")
    assert read_checkpoint(path, "--ckpt_path", weights_only=False)["config"] == EncoderConfig()


def test_the_unpicklers_reason_is_kept_without_its_advice(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("# notes\n")
    with pytest.raises(ValueError) as error:
        read_checkpoint(path, "--ckpt_path")
    assert str(error.value).endswith("or not a checkpoint at all (UnpicklingError: Unsupported operand 35)")


def test_backbone_weights_that_are_not_a_checkpoint_name_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    path.write_text("<html>a download page, not weights</html>")
    config = EncoderConfig(video_backbone="plain_cnn", backbone_weights=str(path))
    with pytest.raises(ValueError, match=r"^EncoderConfig\.backbone_weights .*resnet\.pth \(\d+ bytes\) is not a "
                                         r"readable checkpoint"):
        VideoSpatialEncoder(config)
