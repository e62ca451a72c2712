"""The rows of the paper's table and the sizes the quality benchmarks run them at.

A row is a chain of pre-training steps (config files relative to a config folder, e.g.
configs/benchmark) followed by the linear probe; a size is the settings each kind of step gets.
Shared by benchmarks/bench_quality.py (the table) and benchmarks/bench_labels.py (the
label-efficiency curves).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from detach_pl.pipeline.stages import STAGES

StepKind = Literal["stage1", "stage2", "baseline", "supervised", "probe"]
# Diagnostics read from the trainer's callback metrics after each pre-training step.
DIAGNOSTIC_KEYS = (
    "val/cluster_accuracy",
    "val/cluster_nmi",
    "val/retrieval_top1",
    "diag/delta_s",
    "diag/sim/positive",
    "diag/sim/hard",
    "diag/sim/easy",
    "diag/sim/false",
    "diag/W_sp/easy",
    "diag/W_sp/hard",
    "diag/W_sp/false",
    "diag/W_tm/easy",
    "diag/W_tm/hard",
    "diag/W_tm/false",
    "diag/W/easy",
    "diag/W/hard",
    "diag/W/false",
)
# Which setting of a step receives the previous step's checkpoint (the stage chain's).
INPUT_SETTING: dict[str, str] = {
    name: argument for name in ("stage2", "probe") if (argument := STAGES[name].input_argument) is not None
}


@dataclass(frozen=True)
class Step:
    """One training run: a base config plus overlays (relative to the config folder)."""

    configs: tuple[str, ...]
    kind: StepKind

    @property
    def slug(self) -> str:
        """Folder-name form of the config chain, e.g. `stage2+stage2_no_spatial_weight`."""
        return "+".join(Path(config).stem for config in self.configs)


@dataclass(frozen=True)
class Row:
    """A row of the table: its pre-training chain (empty: random encoders) and the paper's numbers.

    `paper` holds the published (weighted F1, mAP) on Opportunity++ and on HWU-USP as text.
    """

    key: str
    name: str
    steps: tuple[Step, ...]
    paper: tuple[str, str] = ("—", "—")


STAGE1 = Step(("stage1.yaml",), "stage1")
STAGE1_NO_REFINEMENT = Step(("stage1.yaml", "ablations/stage1_no_refinement.yaml"), "stage1")


def stage2(*overlays: str) -> Step:
    """A stage-2 step: stage2.yaml plus ablation overlays."""
    return Step(("stage2.yaml", *(f"ablations/{overlay}.yaml" for overlay in overlays)), "stage2")


ROWS: tuple[Row, ...] = (
    Row("floor", "random encoders (floor)", ()),
    Row(
        "global",
        "global alignment, IMU2CLIP-style",
        (Step(("baseline_global.yaml",), "baseline"),),
        ("0.56 / 0.58 (EVI-MAE)¹", "0.60 / 0.55 (EVI-MAE)"),
    ),
    Row("detach", "DETACH", (STAGE1, stage2()), ("0.73 / 0.87", "0.73 / 0.67")),
    Row(
        "no_spatial_weight", "DETACH w/o W^sp", (STAGE1, stage2("stage2_no_spatial_weight")),
        ("0.56 / 0.71", "0.65 / 0.61"),
    ),
    Row(
        "no_temporal_weight", "DETACH w/o W^tm", (STAGE1, stage2("stage2_no_temporal_weight")),
        ("0.62 / 0.71", "0.60 / 0.61"),
    ),
    Row(
        "no_refinement_plain",
        "no refinement, plain InfoNCE",
        (STAGE1_NO_REFINEMENT, stage2("stage2_no_refinement_plain_info_nce")),
        ("0.59 / 0.70", "0.68 / 0.62"),
    ),
    Row(
        "no_refinement_weighted",
        "no refinement, weighted loss",
        (STAGE1_NO_REFINEMENT, stage2("stage2_no_refinement")),
        ("0.60 / 0.70", "0.69 / 0.65"),
    ),
    Row(
        "refinement_plain", "refinement, plain InfoNCE", (STAGE1, stage2("stage2_plain_info_nce")),
        ("0.59 / 0.73", "0.49 / 0.62"),
    ),
    Row(
        "cross_temporal", "DETACH, cross-modal S^tm (paper text)", (STAGE1, stage2("stage2_cross_temporal_similarity"))
    ),
    Row(
        "detach_all_windows",
        "DETACH, all windows in pre-training (label-free)",
        (
            Step(("stage1.yaml", "ablations/pretrain_all_windows.yaml"), "stage1"),
            Step(("stage2.yaml", "ablations/pretrain_all_windows.yaml"), "stage2"),
        ),
    ),
    Row("supervised", "supervised sensor encoders (ceiling)", (Step(("supervised.yaml",), "supervised"),)),
)
ROW_KEYS = tuple(row.key for row in ROWS)


@dataclass(frozen=True)
class Size:
    """Settings per step kind, applied after a step's base config and before its overlays."""

    name: str
    by_kind: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def overrides(self, kind: StepKind) -> list[str]:
        """The size's settings for one kind of step (its own plus those for "all")."""
        return [*self.by_kind.get("all", ()), *self.by_kind.get(kind, ())]


SIZES: dict[str, Size] = {
    # Just the chain: a few batches per epoch, every stage-1 phase once.
    "quick": Size(
        "quick",
        {
            "all": (
                "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
                "--data.init_args.num_workers", "0",
            ),
            "stage1": (
                "--trainer.max_epochs", "3", "--model.init_args.video_start_epoch", "1",
                "--model.init_args.refine_start_epoch", "2", "--model.init_args.min_cluster_size", "5",
            ),
            "stage2": ("--trainer.max_epochs", "1"),
            "baseline": ("--trainer.max_epochs", "2"),
            "supervised": ("--trainer.max_epochs", "2"),
            "probe": ("--trainer.max_epochs", "2"),
        },
    ),
    # The configs' own data and epochs (configs/benchmark is written at the benchmark's size:
    # 12 runs, stage 2 15 epochs, the global baseline 27 = stage 1 + stage 2, the probe the
    # paper's 50), DataLoader workers off: seeds and groups of rows run as parallel jobs instead.
    "default": Size("default", {"all": ("--data.init_args.num_workers", "0")}),
    # The 12-run, 15-stage-2-epoch size for the demo's configs (configs/demo: 24 runs, stage 2 30).
    "demo-small": Size(
        "demo-small",
        {
            "all": (
                "--data.init_args.num_workers", "0", "--data.init_args.world.num_runs", "12",
                "--data.init_args.train_runs", json.dumps([f"run{i:02d}" for i in range(8)]),
                "--data.init_args.val_runs", "[run08]", "--data.init_args.test_runs", "[run09,run10,run11]",
            ),
            "stage2": ("--trainer.max_epochs", "15"),
            "baseline": ("--trainer.max_epochs", "27"),
        },
    ),
    # The configs exactly as written (e.g. the paper's epochs on a real dataset).
    "config": Size("config"),
}
# Per-seed settings of each kind (the seed of everything, the data order, the k-means start).
SEED_SETTINGS: dict[str, tuple[str, ...]] = {
    "all": ("--seed_everything", "--data.init_args.shuffle_seed"),
    "stage1": ("--model.init_args.kmeans_seed",),
}
QUIET = (
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--data.init_args.progress", "false",
)


def rows_present(config_dir: Path) -> list[Row]:
    """The rows whose every config exists in `config_dir` (probe.yaml is checked by the runner)."""
    return [row for row in ROWS if all((config_dir / c).is_file() for step in row.steps for c in step.configs)]
