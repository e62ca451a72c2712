"""The ablation overlays change exactly what they name, and the models they build behave so.

Each overlay in configs/demo/ablations is parsed on top of its base config; the parsed model
settings must differ from the base's in exactly the named keys, the trainer only in the run
folders (its own, distinct from every other), the data not at all. The models they build are then
checked on a random batch against the formulas of docs/method.md (e.g. W^sp ≡ 1).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from detach_pl.cli import main
from detach_pl.modules.stage2 import AlignmentBatch
from detach_pl.pipeline import run_detach
from helpers import DEMO, REPO

ABLATIONS = DEMO / "ablations"
# overlay → (base config, model settings it changes)
OVERLAYS: dict[str, tuple[str, set[str]]] = {
    "stage1_no_refinement": ("stage1", {"refine_start_epoch"}),
    "stage2_no_spatial_weight": ("stage2", {"use_spatial_weight"}),
    "stage2_no_temporal_weight": ("stage2", {"use_temporal_weight"}),
    "stage2_plain_info_nce": ("stage2", {"use_spatial_weight", "use_temporal_weight"}),
    "stage2_no_refinement": ("stage2", {"stage1_checkpoint"}),
    "stage2_no_refinement_plain_info_nce": (
        "stage2", {"stage1_checkpoint", "use_spatial_weight", "use_temporal_weight"}
    ),
    "stage2_cross_temporal_similarity": ("stage2", {"temporal_similarity"}),
}
RUN_FOLDER_KEYS = {"default_root_dir", "logger", "callbacks"}
# data overlay → data settings it changes (on any base; it keeps the base's run folder)
DATA_OVERLAYS: dict[str, set[str]] = {"pretrain_all_windows": {"pretrain_windows"}}


@pytest.fixture(scope="module")
def parsed():
    """name → (config dict, model) for every base config and overlay, built without running.

    Nothing is written: building the trainer creates no folder (the run folders are only named).
    """
    result = {}
    for base in ("stage1", "stage2", "baseline_global", "supervised"):
        cli = run_detach(["--config", str(DEMO / f"{base}.yaml")], run=False)
        result[base] = (cli.config.as_dict(), cli.model)
    for name, (base, _) in OVERLAYS.items():
        configs = ["--config", str(DEMO / f"{base}.yaml"), "--config", str(ABLATIONS / f"{name}.yaml")]
        cli = run_detach(configs, run=False)
        result[name] = (cli.config.as_dict(), cli.model)
    return result


def changed_keys(ours: dict, theirs: dict) -> set[str]:
    return {key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key)}


def run_folder(config: dict) -> str:
    return config["trainer"]["callbacks"][0]["init_args"]["dirpath"]


def test_every_overlay_file_is_covered() -> None:
    assert {path.stem for path in ABLATIONS.glob("*.yaml")} == set(OVERLAYS) | set(DATA_OVERLAYS)


@pytest.mark.parametrize("name", sorted(DATA_OVERLAYS))
def test_data_overlay_changes_only_the_data_settings_it_names(in_scratch, name) -> None:
    base = main(["--config", str(DEMO / "stage1.yaml")], run=False).config.as_dict()
    configs = ["--config", str(DEMO / "stage1.yaml"), "--config", str(ABLATIONS / f"{name}.yaml")]
    ours = main(configs, run=False).config.as_dict()
    assert changed_keys(ours["data"]["init_args"], base["data"]["init_args"]) == DATA_OVERLAYS[name]
    assert ours["model"] == base["model"] and ours["trainer"] == base["trainer"]


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_overlay_changes_exactly_what_it_names(parsed, name) -> None:
    base, expected = OVERLAYS[name]
    ours, _ = parsed[name]
    theirs, _ = parsed[base]
    assert ours["model"]["class_path"] == theirs["model"]["class_path"]
    assert changed_keys(ours["model"]["init_args"], theirs["model"]["init_args"]) == expected
    assert changed_keys(ours["trainer"], theirs["trainer"]) == RUN_FOLDER_KEYS
    assert ours["data"] == theirs["data"] and ours["seed_everything"] == theirs["seed_everything"]
    assert ours["trainer"]["logger"]["init_args"]["save_dir"] == ours["trainer"]["default_root_dir"]
    assert run_folder(ours).startswith(ours["trainer"]["default_root_dir"])


def test_run_folders_are_all_distinct(parsed) -> None:
    folders = [run_folder(config) for config, _ in parsed.values()]
    assert len(set(folders)) == len(folders)


def random_alignment_batch(n: int = 6) -> AlignmentBatch:
    generator = torch.Generator().manual_seed(0)
    keys = ("u_v", "u_s", "z_v", "z_s", "h_v_ema", "h_s_ema")
    features = {key: torch.randn(n, 8, generator=generator) for key in keys}
    return AlignmentBatch(**features, anchors=slice(0, n))


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def test_stage2_variants_weigh_negatives_as_named(parsed) -> None:
    batch = random_alignment_batch()
    s_sp = torch.maximum(cos(batch.z_v, batch.z_v).relu(), cos(batch.z_s, batch.z_s).relu())
    s_tm_within = (0.5 * (cos(batch.h_v_ema, batch.h_v_ema) + cos(batch.h_s_ema, batch.h_s_ema))).relu()
    s_tm_cross = cos(batch.h_v_ema, batch.h_s_ema).relu()
    off = 1 - torch.eye(6)
    w_sp = 1 + 2 * s_sp  # λ_hard = 3
    expected = {
        "stage2": w_sp * (1 - s_sp * s_tm_within) * off,
        "stage2_no_spatial_weight": (1 - s_sp * s_tm_within) * off,  # W^sp ≡ 1
        "stage2_no_temporal_weight": w_sp * off,  # W^tm ≡ 1
        "stage2_plain_info_nce": off,  # W ≡ 1
        "stage2_no_refinement": w_sp * (1 - s_sp * s_tm_within) * off,
        "stage2_no_refinement_plain_info_nce": off,
        "stage2_cross_temporal_similarity": w_sp * (1 - s_sp * s_tm_cross) * off,
    }
    for name, weights in expected.items():
        model = parsed[name][1]
        measured, _, s_tm = model.weights(batch)
        torch.testing.assert_close(measured, weights, msg=name)
        reference_tm = s_tm_cross if name == "stage2_cross_temporal_similarity" else s_tm_within
        torch.testing.assert_close(s_tm, reference_tm, msg=name)


def test_no_refinement_stage1_never_refines_and_feeds_its_stage2s(parsed) -> None:
    stage1_config, stage1 = parsed["stage1"]
    plain_config, no_refine = parsed["stage1_no_refinement"]
    epochs = stage1_config["trainer"]["max_epochs"]
    assert stage1.phase(epochs - 1) == "refine"
    expected = [stage1.phase(e) if stage1.phase(e) != "refine" else "joint" for e in range(100)]
    assert [no_refine.phase(e) for e in range(100)] == expected
    checkpoint = f"{run_folder(plain_config)}/last.ckpt"
    for name in ("stage2_no_refinement", "stage2_no_refinement_plain_info_nce"):
        assert parsed[name][0]["model"]["init_args"]["stage1_checkpoint"] == checkpoint
    assert parsed["stage2"][0]["model"]["init_args"]["stage1_checkpoint"] == f"{run_folder(stage1_config)}/last.ckpt"


def test_baseline_and_ceiling_configs_match_detach_capacity(parsed) -> None:
    stage2_config, _ = parsed["stage2"]
    for name in ("baseline_global", "supervised"):
        config, _ = parsed[name]
        assert config["model"]["init_args"]["encoder"] == stage2_config["model"]["init_args"]["encoder"], name
        # The same data settings; only the purpose, set from the model class at parse time, differs.
        data, stage2_data = (dict(c["data"]["init_args"]) for c in (config, stage2_config))
        data.pop("purpose"), stage2_data.pop("purpose")
        assert config["data"]["class_path"] == stage2_config["data"]["class_path"], name
        assert data == stage2_data, name
    baseline = parsed["baseline_global"][1]
    assert float(baseline.temperature.detach()) == pytest.approx(0.1)
    assert set(baseline.encoders) == {"video_spatial", "video_temporal", "sensor_spatial", "sensor_temporal"}
    stage1_epochs = parsed["stage1"][0]["trainer"]["max_epochs"]
    global_epochs = parsed["baseline_global"][0]["trainer"]["max_epochs"]
    assert global_epochs == stage1_epochs + stage2_config["trainer"]["max_epochs"]


@pytest.mark.parametrize("dataset", ["opp", "hwu"])
def test_dataset_baseline_configs_use_their_datasets_encoders_and_data(dataset, capsys) -> None:
    folder = REPO / "configs" / dataset
    if not (folder / "baseline_global.yaml").is_file():
        pytest.skip(f"configs/{dataset} has no baseline_global.yaml")
    printed = {}
    for name in ("baseline_global", "stage2"):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "--config", str(folder / f"{name}.yaml"), "--print_config"])
        assert exit_info.value.code == 0
        printed[name] = yaml.safe_load(capsys.readouterr().out)
    ours, theirs = printed["baseline_global"], printed["stage2"]
    assert ours["model"]["class_path"] == "detach_pl.modules.GlobalAlignmentModule"
    assert ours["model"]["init_args"]["encoder"] == theirs["model"]["init_args"]["encoder"]
    assert ours["data"] == theirs["data"]
    assert ours["trainer"]["max_epochs"] == 75
