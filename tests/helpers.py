"""Test helpers: a tiny synthetic kitchen, CPU-sized encoders, CLI arguments for tiny runs."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo"

# A synthetic kitchen small enough for CPU tests: 3 runs of 50 s (one per split), 16-pixel frames,
# pre-training on all windows (a 50-s run holds few labelled ones).
TINY_DATA = [
    "--data.init_args.world.num_runs", "3",
    "--data.init_args.train_runs", "[run00]",
    "--data.init_args.val_runs", "[run01]",
    "--data.init_args.test_runs", "[run02]",
    "--data.init_args.pretrain_windows", "all",
    "--data.init_args.world.run_seconds", "50",
    "--data.init_args.windows.image_size", "16",
    "--data.init_args.num_frames", "4",
    "--data.init_args.batch_size", "8",
    "--data.init_args.num_workers", "0",
    "--data.init_args.progress", "false",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]



def tiny_datamodule(cache_dir: Path, **kwargs):
    """A prepared SyntheticKitchenDataModule matching TINY_DATA."""
    from detach_pl.data.synthetic import SyntheticKitchenConfig, SyntheticKitchenDataModule
    from detach_pl.data.windows import WindowSettings

    options = dict(
        cache_dir=str(cache_dir),
        world=SyntheticKitchenConfig(num_runs=3, run_seconds=50.0),
        windows=WindowSettings(image_size=16),
        num_frames=4,
        batch_size=8,
        num_workers=0,
        progress=False,
    )
    options.update(kwargs)
    return SyntheticKitchenDataModule(**options)


def tiny_encoder():
    """The demo's CPU-sized encoder configuration."""
    import yaml

    from detach_pl.nn import EncoderConfig

    return EncoderConfig(**yaml.safe_load((DEMO / "encoder.yaml").read_text()))


def small_encoder(**overrides: object):
    """A small EncoderConfig (embed_dim 32) for fast CPU tests of the encoders themselves."""
    from detach_pl.nn import EncoderConfig

    settings: dict[str, object] = dict(
        embed_dim=32,
        video_backbone="plain_cnn",
        video_cnn_channels=[8, 16, 16, 16],
        video_temporal_channels=[8, 16, 32],
        sensor_spatial_channels=[8, 16, 16],
        sensor_spatial_pool=16,
        sensor_temporal_channels=[8, 16, 16],
        gru_hidden=16,
    )
    settings.update(overrides)
    return EncoderConfig(**settings)  # type: ignore[arg-type]


def cpu_trainer(devices: int, **kwargs):
    """A quiet CPU Trainer on `devices` processes (DDP over gloo when more than one)."""
    import lightning.pytorch as pl

    options = dict(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    options.update(kwargs)
    return pl.Trainer(**options)
