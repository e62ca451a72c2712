"""What each encoder can tell from its own modality when it is given the labels.

    python -m benchmarks.bench_teacher [--config configs/demo/stage1.yaml] [--epochs 15] [-- overrides]

DETACH lets the video teach the sensors: stage 1 the place (video spatial encoder), stage 2 the
motion (video temporal encoder). A teacher can only pass on what it sees. This benchmark trains
each of the four encoders of a config, from scratch, with a linear head on the class labels of the
labelled windows (supervised, not DETACH), and reports on the validation runs the accuracy of the
class, of the place implied by the predicted class, and of the motion given the true place (the
best class among the true place's classes). A video temporal encoder near chance on motion means
stage 2 has nothing to transfer on that data, whatever the loss.

Any LightningCLI override after `--` is applied to the config, e.g. a synthetic world's knobs:
`-- --data.init_args.world.flicker 0.1`. Writes a Markdown table to `--output` if given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DistributedSampler

from detach_pl.data.datamodule import WindowDataModule
from detach_pl.data.dataset import WindowDataset, clips_to_float
from detach_pl.io import write_atomically
from detach_pl.nn import ENCODER_NAMES, EncoderConfig, build_encoder
from detach_pl.pipeline import format_table, run_detach
from detach_pl.pipeline.jobs import split_overrides
from detach_pl.pipeline.quality_report import machine, repo_relative

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Benchmark options; everything after `--` goes to the LightningCLI config."""
    argv, overrides = split_overrides(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo" / "stage1.yaml",
                        help="a stage config: its data and encoder settings are used")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs per encoder")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order")
    parser.add_argument("--encoders", nargs="+", choices=ENCODER_NAMES, default=list(ENCODER_NAMES))
    parser.add_argument("--output", type=Path, default=None, help="Markdown report (optional)")
    args = parser.parse_args(argv)
    args.overrides = overrides
    return args


def load_data(config: Path, overrides: list[str]) -> tuple[WindowDataModule, EncoderConfig]:
    """The config's DataModule (labelled alignment windows, one process) and encoder settings."""
    cli = run_detach(
        [
            "--config", str(config), *overrides,
            "--data.init_args.purpose", "alignment",
            "--data.init_args.pretrain_windows", "labelled",
            "--data.init_args.num_workers", "0",
            "--data.init_args.progress", "false",
            "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false",
            "--trainer.callbacks", "[]",
        ],
        run=False,
    )
    data = cli.datamodule
    data.prepare_data()
    data.setup("fit")
    return data, cli.model.encoder_config


def class_places(data: WindowDataModule) -> Tensor:
    """The place of each class, read off the training and validation windows (-1 if never seen).

    Validation windows count too, so that a class the training runs lack still has its place
    (the map only scores predictions; nothing trains on it).
    """
    splits: list[WindowDataset] = []
    for name in ("train", "val"):
        dataset = data.datasets[name]
        assert isinstance(dataset, WindowDataset), "the teacher benchmark reads windows"
        splits.append(dataset)
    labels = np.concatenate([dataset.label.numpy() for dataset in splits])
    places = np.concatenate([dataset.place.numpy() for dataset in splits])
    mapping = np.full(data.data_info.num_classes, -1, dtype=np.int64)
    for class_id in np.unique(labels):
        mapping[class_id] = np.bincount(places[labels == class_id]).argmax()
    return torch.from_numpy(mapping)


def inputs(name: str, batch: dict[str, Tensor]) -> Tensor:
    """The encoder's input: uint8 clips as (B, T, 3, H, W) floats in [0, 1], or the sensor window."""
    return clips_to_float(batch["video"]) if name.startswith("video") else batch["sensor"]


def train_and_score(
    name: str, data: WindowDataModule, encoder_config: EncoderConfig, args: argparse.Namespace, places_of: Tensor
) -> dict[str, float]:
    """Train one encoder + linear head on the classes; validation accuracies of class/place/motion."""
    torch.manual_seed(args.seed)
    encoder = build_encoder(name, encoder_config, data.data_info.num_channels)
    model = nn.Sequential(encoder, nn.Linear(encoder_config.embed_dim, data.data_info.num_classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        loader = data.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler), "the DataModule shuffles by an epoch-seeded sampler"
        loader.sampler.set_epoch(epoch)
        model.train()
        for batch in loader:
            loss = nn.functional.cross_entropy(model(inputs(name, batch)), batch["label"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    correct_class = correct_place = correct_motion = total = 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            logits = model(inputs(name, batch))
            predicted = logits.argmax(1)
            correct_class += int((predicted == batch["label"]).sum())
            correct_place += int((places_of[predicted] == batch["place"]).sum())
            # Motion given the place: the best class among those of the window's true place.
            other_place = places_of[None, :] != batch["place"][:, None]
            within_place = logits.masked_fill(other_place, float("-inf")).argmax(1)
            correct_motion += int((within_place == batch["label"]).sum())
            total += len(predicted)
    return {
        "class": correct_class / total,
        "place": correct_place / total,
        "motion | place": correct_motion / total,
        "windows": total,
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the benchmark and print (and optionally write) the table."""
    args = parse_args(argv)
    data, encoder_config = load_data(args.config, args.overrides)
    places_of = class_places(data)
    num_places = int(places_of.max()) + 1
    results = {name: train_and_score(name, data, encoder_config, args, places_of) for name in args.encoders}
    classes = data.data_info.num_classes
    lines = [
        "# What each encoder can tell with labels (the teacher's signal)",
        "",
        f"- command: `python -m benchmarks.bench_teacher {' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"- config: {repo_relative(args.config, REPO)}; {args.epochs} epochs, AdamW lr {args.lr}, seed {args.seed}",
        f"- machine: {machine()}",
        "",
        "Validation accuracy of each encoder + a linear head trained on the classes of the labelled "
        f"training windows. Motion given place: the best class among those of the window's true "
        f"place. Chance: class 1/{classes}, place 1/{num_places}, motion given place "
        f"{num_places / classes:.2f}.",
        "",
    ]
    header = ["encoder", "class", "place", "motion given place", "validation windows", "seconds"]
    table = [
        [name, f"{row['class']:.3f}", f"{row['place']:.3f}", f"{row['motion | place']:.3f}", str(row["windows"]),
         f"{row['seconds']:.0f}"]
        for name, row in results.items()
    ]
    report = "\n".join([*lines, format_table(header, table)]) + "\n"
    print(report)
    if args.output is not None:
        write_atomically(args.output, report)
    return results


if __name__ == "__main__":
    main()
