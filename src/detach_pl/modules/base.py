"""What every DETACH LightningModule shares: data info, encoders, optimiser, stage hand-over."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from detach_pl.checkpoints import read_checkpoint
from detach_pl.data.info import DataInfo
from detach_pl.distributed import gather_rng_states, restore_rng_state
from detach_pl.modules.nonfinite import NonFiniteLossCheck
from detach_pl.nn import EncoderConfig, build_encoders
from detach_pl.nn.config import NON_ARCHITECTURE_KEYS
from detach_pl.settings import at_least, check_settings, positive


def as_data_info(value: DataInfo | dict | None, owner: str) -> DataInfo:
    """Accept the DataInfo the CLI links in (or its dict form from a checkpoint)."""
    if value is None:
        raise ValueError(
            f"{owner}: data_info is missing; it is linked from the DataModule by the `detach` CLI, "
            "or pass DataInfo(num_channels=..., num_classes=..., num_places=...) yourself"
        )
    return DataInfo(**value) if isinstance(value, dict) else value


def as_encoder_config(value: EncoderConfig | dict) -> EncoderConfig:
    """A module's own EncoderConfig from an EncoderConfig or its dict form.

    An EncoderConfig is copied, so a module never shares the signature's default object; a dict
    from before the released-code encoders fails with a clear error.
    """
    return EncoderConfig.from_dict(value) if isinstance(value, dict) else dataclasses.replace(value)


class DetachModule(pl.LightningModule):
    """Base of the stage modules: builds the named encoders and an AdamW optimiser.

    Args:
        data_info: Channels, classes, places (linked from the DataModule).
        encoder: Architecture of the four encoders; every stage of one run uses the same.
        encoder_names: Which encoders this stage owns.
        lr: AdamW learning rate (docs/method.md: 1e-4 at a global batch of 256).
        weight_decay: AdamW weight decay (1e-4).
    """

    data_purpose: str = "alignment"
    #: Settings that name a previous stage's checkpoint, read at `fit`, and whether each is
    #: required; the CLI checks them before the data is prepared (`check_stage_checkpoint_file`).
    stage_checkpoint_settings: ClassVar[dict[str, bool]] = {}

    def __init__(
        self,
        data_info: DataInfo | dict | None,
        encoder: EncoderConfig | dict,
        encoder_names: Sequence[str],
        lr: float,
        weight_decay: float,
    ) -> None:
        super().__init__()
        self.data_info = as_data_info(data_info, type(self).__name__)
        self.encoder_config = as_encoder_config(encoder)
        check_settings([positive("lr", lr), at_least("weight_decay", weight_decay, 0)])
        self.lr = lr
        self.weight_decay = weight_decay
        self.encoders = build_encoders(encoder_names, self.encoder_config, self.data_info.num_channels)

    @property
    def hparams(self) -> AttributeDict:
        """The init arguments saved by `save_hyperparameters`, readable as attributes.

        Lightning declares `MutableMapping | AttributeDict` but stores a dict as an AttributeDict;
        the narrower type lets the stages read `self.hparams.<setting>`.
        """
        saved = super().hparams
        if not isinstance(saved, AttributeDict):
            raise TypeError(f"{type(self).__name__}: hyper-parameters are a {type(saved).__name__}, not a dict")
        return saved

    def configure_callbacks(self) -> list[Callback]:
        """Every stage stops on a NaN or inf training loss (`NonFiniteLossCheck`)."""
        return [NonFiniteLossCheck()]

    def attached_datamodule(self) -> Any:
        """The trainer's DataModule, or None (Lightning sets `trainer.datamodule` at run time)."""
        return getattr(self.trainer, "datamodule", None)

    def first_training_step(self) -> bool:
        """True on this module's first training step only (once per process).

        Input checks that read tensor values on the host (weights finite and non-negative, labels
        in range) run then, with their clear errors; afterwards they would stall the device at
        every step.
        """
        first = not getattr(self, "_inputs_checked", False)
        self._inputs_checked = True
        return first

    def checks_due(self) -> bool:
        """Whether this training step validates tensor values on the host (a device sync).

        True on the first step (`first_training_step`) and on every step with the module setting
        `debug_checks: true`; the default path is otherwise free of host–device synchronisation.
        """
        first = self.first_training_step()
        return first or bool(getattr(self.hparams, "debug_checks", False))

    def configure_model(self) -> None:
        """Compile the encoders in place when `encoder.compile` is set (a throughput option).

        `nn.Module.compile` keeps the modules and their state-dict keys, so checkpoints are the
        same with and without it; compilation happens on the first forward of each encoder.
        """
        if self.encoder_config.compile and not getattr(self, "_encoders_compiled", False):
            for encoder in self.encoders.values():
                encoder.compile(mode=self.encoder_config.compile_mode)
            self._encoders_compiled = True

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the parameters that train in this stage."""
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def freeze_encoders(self, names: Sequence[str]) -> None:
        """Stop gradients into the named encoders and keep them in eval mode (BatchNorm stats)."""
        for name in names:
            self.encoders[name].requires_grad_(False)
            self.encoders[name].eval()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store dataclass hyper-parameters as plain dicts.

        `detach test --ckpt_path` re-parses them (LightningCLI loads checkpoints with
        `weights_only=True`, which refuses arbitrary classes), and plain data stays readable
        without this package.
        """
        hparams = checkpoint.get("hyper_parameters", {})
        for key, value in hparams.items():
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                hparams[key] = dataclasses.asdict(value)
        checkpoint["rng_states"] = gather_rng_states(self.device)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore every rank's random state, so a resumed run continues as if uninterrupted."""
        if "rng_states" in checkpoint:
            restore_rng_state(checkpoint["rng_states"])

    def on_fit_start(self) -> None:
        """State the global batch: per-device batch × devices × nodes × accumulation."""
        trainer = self.trainer
        per_device = getattr(self.attached_datamodule(), "batch_size", None)
        if per_device is None:
            return
        global_batch = per_device * trainer.world_size * trainer.accumulate_grad_batches
        rank_zero_info(
            f"batch: {per_device} per device × {trainer.world_size} process(es) × "
            f"{trainer.accumulate_grad_batches} accumulation = global batch {global_batch}; lr {self.lr}"
        )
        if trainer.logger is not None:
            trainer.logger.log_hyperparams({"global_batch_size": global_batch, "per_device_batch_size": per_device})

    def frozen_parts(self) -> list[nn.Module]:
        """Sub-networks that never train in this stage (kept in eval mode)."""
        return [m for m in self.encoders.values() if not any(p.requires_grad for p in m.parameters())]

    def train(self, mode: bool = True) -> DetachModule:
        """Switch train/eval mode, keeping frozen parts in eval mode (BatchNorm statistics)."""
        super().train(mode)
        for module in self.frozen_parts():
            module.eval()
        return self


def check_stage_checkpoint_file(path: str | None, setting: str) -> Path:
    """The file a previous stage's checkpoint setting names, failing with the setting named.

    Raises:
        ValueError: The setting is empty.
        FileNotFoundError: There is no such file.
    """
    if not path:
        raise ValueError(
            f"{setting} is not set: this stage starts from the previous stage's checkpoint "
            "(e.g. runs/demo/stage1/checkpoints/last.ckpt)"
        )
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"{setting}: checkpoint {file} does not exist; train the previous stage first or "
            "point the setting at its checkpoint"
        )
    return file


def load_stage_checkpoint(path: str | None, setting: str) -> dict[str, Any]:
    """Read a previous stage's checkpoint, failing early with the setting and path named."""
    file = check_stage_checkpoint_file(path, setting)
    checkpoint = read_checkpoint(file, setting, weights_only=False)
    if "state_dict" not in checkpoint:
        raise ValueError(f"{setting} {file} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def copy_encoder_weights(
    module: DetachModule, checkpoint: dict[str, Any], names: Sequence[str], setting: str, path: str
) -> None:
    """Load the named encoders of `module` from a checkpoint, after checking compatibility.

    Compatible means: the same encoder architecture (`EncoderConfig`), the same number of sensor
    channels, and every requested encoder present with matching tensor shapes.
    """
    hparams = checkpoint.get("hyper_parameters", {})
    theirs = hparams.get("encoder")
    if theirs is not None:
        theirs = dataclasses.asdict(as_encoder_config(theirs))
        ours = dataclasses.asdict(module.encoder_config)
        ignore = set(NON_ARCHITECTURE_KEYS)
        differing = [
            f"{key}: checkpoint {theirs.get(key)!r} vs config {value!r}"
            for key, value in ours.items()
            if key not in ignore and theirs.get(key) != value
        ]
        if differing:
            raise ValueError(
                f"{setting}: {path} was trained with another encoder architecture: "
                + "; ".join(differing)
            )
    info = hparams.get("data_info")
    if info is not None:
        channels = as_data_info(info, setting).num_channels
        if channels != module.data_info.num_channels:
            raise ValueError(
                f"{setting}: {path} was trained on {channels} sensor channels, "
                f"this data has {module.data_info.num_channels}"
            )
    state = checkpoint["state_dict"]
    for name in names:
        prefix = f"encoders.{name}."
        weights = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        if not weights:
            kind = hparams.get("_class_path", "a model")
            raise ValueError(f"{setting}: {path} ({kind}) has no '{name}' encoder weights")
        target: nn.Module = module.encoders[name]
        try:
            target.load_state_dict(weights)
        except RuntimeError as error:
            raise ValueError(f"{setting}: {path}: '{name}' weights do not fit: {error}") from error
