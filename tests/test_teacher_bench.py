"""benchmarks/bench_teacher.py: the supervised teacher-signal check runs and reports sound numbers."""

from __future__ import annotations

from benchmarks import bench_teacher
from detach_pl.data.synthetic import CLASS_PLACE
from helpers import DEMO, TINY_DATA


def test_class_places_read_off_the_training_windows_match_the_world(tmp_path) -> None:
    data, _ = bench_teacher.load_data(DEMO / "stage1.yaml", [*TINY_DATA, "--data.init_args.cache_dir", str(tmp_path)])
    mapping = bench_teacher.class_places(data)
    seen = sorted(set(data.datasets["train"].label.tolist()))
    assert seen and all(mapping[c] == CLASS_PLACE[c] for c in seen)
    assert bool((data.datasets["train"].label >= 0).all())  # labelled windows only


def test_run_writes_a_row_per_encoder_with_consistent_accuracies(tmp_path) -> None:
    output = tmp_path / "teacher.md"
    results = bench_teacher.main(
        [
            "--epochs", "1", "--encoders", "sensor_spatial", "video_temporal", "--output", str(output),
            "--", *TINY_DATA, "--data.init_args.cache_dir", str(tmp_path),
        ]
    )
    assert list(results) == ["sensor_spatial", "video_temporal"]
    for row in results.values():
        assert 0.0 <= row["class"] <= row["place"] <= 1.0  # a right class implies the right place
        assert row["class"] <= row["motion | place"] <= 1.0  # knowing the place can only help
        assert row["windows"] > 0
    text = output.read_text()
    assert "| sensor_spatial |" in text and "| video_temporal |" in text
    assert not output.with_suffix(".md.tmp").exists()
