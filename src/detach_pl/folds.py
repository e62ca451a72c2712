r"""All folds of a cross-validated protocol (HWU-USP: leave two subjects out), end to end.

    python -m detach_pl.folds --stage1 configs/hwu/stage1.yaml --stage2 configs/hwu/stage2.yaml \
        --probe configs/hwu/probe.yaml [--folds 1 2 …] [--out runs/hwu/folds] [--resume] \
        [--stage1-args "…"] [--stage2-args "…"] [--probe-args "…"] [overrides for every stage …]

For each fold k, in this process and through the `detach` CLI: stage 1 → stage 2 → probe fit →
probe test (by the probe's trainer, on its last checkpoint). Each stage's configuration is first
resolved in full (`--print_config`, with the overrides; once per stage), then given the fold
(`data.init_args.fold`), its own run folder `<out>/fold<k>/<stage>` (`run_dir`; and, for a config
that states them, `trainer.default_root_dir`, the logger's `save_dir`, every ModelCheckpoint's
`dirpath`) and the previous stage's checkpoint (the setting the stage chain of
`detach_pl.pipeline.stages` names), and written to `<out>/fold<k>/<stage>.yaml` before it runs: any
stage of any fold can be re-run alone with `detach fit --config <out>/fold<k>/<stage>.yaml`.

Each fold's test metrics go to `<out>/fold<k>/test_metrics.json`; `<out>/summary.json` and the
printed table give mean ± sample standard deviation (ddof = 1; none for a single fold) of
weighted F1, mAP, accuracy and macro F1 over the folds run.

Multi-GPU: the stages run in this process, so under DDP Lightning's launcher re-runs this command
on every rank and each rank walks the same sequence of stages (untested here; a single device
is the tested case).
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningCLI

from detach_pl.io import write_atomically
from detach_pl.pipeline import CHAIN, TEST_METRICS, last_checkpoint, mean_std, resolve_config, run_stage


@dataclass(frozen=True)
class StageSpec:
    """One stage of the chain: its config file and its own extra overrides."""

    name: str
    config: str
    overrides: tuple[str, ...] = ()


def _as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def place_in_fold(
    config: dict[str, Any],
    fold: int,
    run_dir: Path,
    checkpoint: tuple[str, Path] | None = None,
) -> dict[str, Any]:
    """A copy of a resolved stage config for one fold, writing only inside `run_dir`.

    Args:
        config: Resolved configuration (`resolve_config`).
        fold: Fold number set as `data.init_args.fold`.
        run_dir: Folder of this stage of this fold.
        checkpoint: (model setting, path) of the previous stage's checkpoint.

    Raises:
        ValueError: The DataModule has no `fold` setting.
    """
    result = copy.deepcopy(config)
    data_args = result.get("data", {}).get("init_args", {})
    if "fold" not in data_args:
        raise ValueError(
            f"data {result.get('data', {}).get('class_path')} has no 'fold' setting: the fold "
            "runner needs a cross-validated dataset such as HwuUspDataModule"
        )
    data_args["fold"] = fold
    result["run_dir"] = str(run_dir)
    trainer = result["trainer"]
    trainer["default_root_dir"] = str(run_dir)
    for logger in _as_list(trainer.get("logger")):
        if isinstance(logger, dict) and "save_dir" in logger.get("init_args", {}):
            logger["init_args"]["save_dir"] = str(run_dir)
    for callback in _as_list(trainer.get("callbacks")):
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("ModelCheckpoint"):
            callback.setdefault("init_args", {})["dirpath"] = str(run_dir / "checkpoints")
    if checkpoint is not None:
        setting, path = checkpoint
        result["model"]["init_args"][setting] = str(path)
    return result


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, yaml.safe_dump(config, sort_keys=False))


def fit_stage(config_path: Path, stage: str, fold: int) -> tuple[Path, LightningCLI]:
    """Run `detach fit` on a written fold config.

    Returns:
        The checkpoint it saved last, and the CLI (its trainer, model and data stay usable).

    Raises:
        StageFailed: The run saved no checkpoint (a RuntimeError).
    """
    what = f"fold {fold}, {stage} ({config_path})"
    cli = run_stage(["fit", "--config", str(config_path)], what)
    return last_checkpoint(cli, what), cli


def _test_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        key.removeprefix("test/"): float(value) for key, value in metrics.items() if key.startswith("test/")
    }


def evaluate_probe(
    config_path: Path, checkpoint: Path, fitted: LightningCLI | None = None
) -> dict[str, float]:
    """Test the probe of `checkpoint`; return its `test/*` metrics as floats (prefix removed).

    With `fitted` (the probe's fit, just run), its trainer tests the checkpoint in place, as
    `detach test` would but without building the CLI again; otherwise `detach test --config
    <config_path> --ckpt_path <checkpoint>` runs.
    """
    if fitted is not None:
        results = fitted.trainer.test(fitted.model, datamodule=fitted.datamodule, ckpt_path=str(checkpoint))
        return _test_metrics(results[0])
    cli = run_stage(["test", "--config", str(config_path), "--ckpt_path", str(checkpoint)], f"test of {checkpoint}")
    return _test_metrics(dict(cli.trainer.callback_metrics))


class ResolvedStages:
    """The stages' resolved configurations, each resolved once, when first needed."""

    def __init__(self, stages: Sequence[StageSpec], common: Sequence[str]) -> None:
        if [spec.name for spec in stages] != [stage.name for stage in CHAIN]:
            expected = [stage.name for stage in CHAIN]
            raise ValueError(f"stages must be {expected}, got {[spec.name for spec in stages]}")
        self.stages = list(stages)
        self.common = list(common)
        self._resolved: dict[int, dict[str, Any]] = {}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index not in self._resolved:
            spec = self.stages[index]
            self._resolved[index] = resolve_config("fit", spec.config, [*self.common, *spec.overrides])
        return self._resolved[index]


def run_fold(
    fold: int,
    resolved: ResolvedStages,
    out: Path,
    *,
    resume: bool = False,
) -> dict[str, float]:
    """Stage 1 → stage 2 → probe fit → probe test for one fold; returns the test metrics.

    Args:
        fold: Fold number.
        resolved: The stage-1, stage-2 and probe configurations.
        out: Output folder of all folds.
        resume: Reuse stages that finished before (a `done.json` in their run folder) and a fold
            whose `test_metrics.json` exists.
    """
    fold_dir = out / f"fold{fold}"
    metrics_path = fold_dir / "test_metrics.json"
    if resume and metrics_path.is_file():
        return json.loads(metrics_path.read_text())
    previous: Path | None = None
    probe_config = probe_checkpoint = None
    fitted: LightningCLI | None = None
    for index, stage in enumerate(CHAIN):
        run_dir = fold_dir / stage.name
        done = run_dir / "done.json"
        config_path = fold_dir / f"{stage.name}.yaml"
        if resume and done.is_file():
            previous, fitted = Path(json.loads(done.read_text())["checkpoint"]), None
        else:
            handover = (stage.receives, previous) if stage.receives is not None and previous is not None else None
            _write_yaml(config_path, place_in_fold(resolved[index], fold, run_dir, handover))
            previous, fitted = fit_stage(config_path, stage.name, fold)
            write_atomically(done, json.dumps({"checkpoint": str(previous)}))
        probe_config, probe_checkpoint = config_path, previous
    assert probe_config is not None and probe_checkpoint is not None
    metrics = evaluate_probe(probe_config, probe_checkpoint, fitted)
    write_atomically(metrics_path, json.dumps(metrics, indent=2))
    return metrics


def summarize(per_fold: dict[int, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean and sample standard deviation (`mean_std`: ddof = 1) of each test metric over folds.

    A single fold has no spread: its std is None (shown without "±"), not `mean_std`'s 0.0.
    """
    summary: dict[str, dict[str, Any]] = {}
    for name in TEST_METRICS:
        values = [metrics[name] for metrics in per_fold.values() if name in metrics]
        if not values:
            continue
        mean, std = mean_std(values)
        summary[name] = {"mean": mean, "std": std if len(values) > 1 else None, "folds": len(values), "values": values}
    return summary


def fold_table(per_fold: dict[int, dict[str, float]], summary: dict[str, dict[str, Any]]) -> str:
    """Per-fold rows and a mean ± std row, as plain text aligned for a terminal (not Markdown)."""
    names = [name for name in TEST_METRICS if name in summary]
    lines = ["fold  " + "  ".join(f"{name:>15}" for name in names)]
    for fold, metrics in sorted(per_fold.items()):
        values = (metrics.get(name, float("nan")) for name in names)
        lines.append(f"{fold:>4}  " + "  ".join(f"{value:>15.4f}" for value in values))
    cells = []
    for name in names:
        std = summary[name]["std"]
        mean = summary[name]["mean"]
        cells.append(f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}")
    lines.append("mean  " + "  ".join(f"{cell:>15}" for cell in cells))
    return "\n".join(lines)


def run_folds(
    stages: Sequence[StageSpec],
    out: str | Path,
    *,
    folds: Sequence[int] | None = None,
    common: Sequence[str] = (),
    resume: bool = False,
) -> dict[str, Any]:
    """Run every requested fold and write `<out>/summary.json`.

    Args:
        stages: Stage 1, stage 2 and probe specs, in that order.
        out: Output folder.
        folds: Fold numbers (None: 1 … `data.init_args.num_folds` of the probe config).
        common: CLI overrides applied to every stage.
        resume: Reuse finished stages and folds (see `run_fold`).

    Returns:
        {"folds": {k: metrics}, "summary": {metric: {mean, std, folds, values}}}.
    """
    resolved = ResolvedStages(stages, common)
    out = Path(out)
    if folds is None:
        num_folds = resolved[len(CHAIN) - 1].get("data", {}).get("init_args", {}).get("num_folds")
        if not isinstance(num_folds, int):
            raise ValueError("the probe's data has no num_folds setting: pass --folds explicitly")
        folds = list(range(1, num_folds + 1))
    per_fold = {fold: run_fold(fold, resolved, out, resume=resume) for fold in folds}
    summary = summarize(per_fold)
    result = {"folds": per_fold, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "summary.json", json.dumps(result, indent=2))
    return result


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Runner options, and the remaining arguments as overrides for every stage."""
    parser = argparse.ArgumentParser(
        prog="python -m detach_pl.folds",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        allow_abbrev=False,
    )
    parser.add_argument("--stage1", required=True, help="stage-1 config (e.g. configs/hwu/stage1.yaml)")
    parser.add_argument("--stage2", required=True, help="stage-2 config")
    parser.add_argument("--probe", required=True, help="probe config")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="folds to run (default: all)")
    parser.add_argument("--out", default="runs/hwu/folds", help="output folder")
    parser.add_argument("--resume", action="store_true", help="reuse finished stages and folds")
    for stage in (stage.name for stage in CHAIN):
        parser.add_argument(f"--{stage}-args", default="", help=f"extra CLI overrides for {stage} only")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point: run the folds, print the table, return the result."""
    args, common = parse_args(argv)
    common = [item for item in common if item != "--"]
    stages = [
        StageSpec(stage.name, getattr(args, stage.name), tuple(shlex.split(getattr(args, f"{stage.name}_args"))))
        for stage in CHAIN
    ]
    result = run_folds(stages, args.out, folds=args.folds, common=common, resume=args.resume)
    print(fold_table(result["folds"], result["summary"]), file=sys.stdout)
    return result


def console_main() -> None:
    """The `detach-folds` console script (exit status 0 on success)."""
    main()


if __name__ == "__main__":
    console_main()
