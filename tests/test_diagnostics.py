"""Negative-type masks, weight statistics per type and ΔS against explicit loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from detach_pl.diagnostics import (
    AlignmentDiagnostics,
    negative_type_masks,
    similarity_by_type,
    values_by_type,
)

# Opportunity-like: class = (place, motion); -1 null. Classes 0/2 share place 0, 1/3 place 1.
LABELS = torch.tensor([0, 0, 2, 1, 3, 1, -1, 2, -1])
PLACES = torch.tensor([0, 0, 0, 1, 1, 1, -1, 0, 2])


def reference_type(i: int, j: int) -> str | None:
    """The negative type of pair (i, j) written out case by case."""
    if i == j:
        return None
    yi, yj, pi, pj = (int(v) for v in (LABELS[i], LABELS[j], PLACES[i], PLACES[j]))
    if yi >= 0 and yj >= 0 and yi == yj:
        return "false"
    if pi >= 0 and pj >= 0 and pi != pj:
        return "easy"
    if pi >= 0 and pj >= 0 and pi == pj and yi >= 0 and yj >= 0:
        return "hard"
    return None


def test_masks_match_the_case_by_case_definition() -> None:
    masks = negative_type_masks(LABELS, PLACES)
    n = LABELS.shape[0]
    for i in range(n):
        for j in range(n):
            kinds = [kind for kind, mask in masks.items() if mask[i, j]]
            expected = reference_type(i, j)
            assert kinds == ([expected] if expected else []), (i, j, kinds, expected)
    # The window with a place but no class (8) is an easy negative of every placed window only.
    assert masks["easy"][8].sum() == 7 and not masks["hard"][8].any()


def test_masks_of_a_row_slice_are_those_rows_of_the_full_masks() -> None:
    full = negative_type_masks(LABELS, PLACES)
    part = negative_type_masks(LABELS, PLACES, slice(3, 7))
    for kind in full:
        assert torch.equal(part[kind], full[kind][3:7])
    assert not part["false"][2, 5]  # row 5 against itself stays excluded


def test_values_by_type_picks_the_masked_entries() -> None:
    matrix = torch.arange(81, dtype=torch.float32).reshape(9, 9)
    values = values_by_type(matrix, negative_type_masks(LABELS, PLACES))
    expected = {kind: [] for kind in ("easy", "hard", "false")}
    for i in range(9):
        for j in range(9):
            kind = reference_type(i, j)
            if kind:
                expected[kind].append(float(matrix[i, j]))
    for kind, listed in expected.items():
        assert sorted(values[kind].tolist()) == sorted(listed)
    with pytest.raises(ValueError, match="mask 'easy' has shape"):
        values_by_type(matrix[:3], negative_type_masks(LABELS, PLACES))


def reference_similarities(u_v: torch.Tensor, u_s: torch.Tensor) -> dict[str, float]:
    n = u_v.shape[0]
    cos = [[float(F.cosine_similarity(u_v[i], u_s[j], dim=0)) for j in range(n)] for i in range(n)]
    per_anchor = {kind: [] for kind in ("easy", "hard", "false")}
    deltas = []
    for i in range(n):
        means = {}
        for kind in per_anchor:
            members = [cos[i][j] for j in range(n) if reference_type(i, j) == kind]
            if members:
                means[kind] = sum(members) / len(members)
                per_anchor[kind].append(means[kind])
        if "hard" in means and "easy" in means:
            deltas.append(means["hard"] - means["easy"])
    result = {kind: sum(v) / len(v) for kind, v in per_anchor.items()}
    result["delta"] = sum(deltas) / len(deltas)
    result["positive"] = sum(cos[i][i] for i in range(n)) / n
    return result


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_similarity_by_type_and_delta_s_match_loops(chunk_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    u_v, u_s = torch.randn(9, 5, generator=generator), torch.randn(9, 5, generator=generator)
    measured = similarity_by_type(u_v, u_s, LABELS, PLACES, chunk_size=chunk_size)
    expected = reference_similarities(u_v, u_s)
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, abs=1e-6), key


def test_delta_s_sign_tells_place_grouping_from_motion_grouping() -> None:
    """An embedding of the place alone gives ΔS > 0; one of the motion alone gives ΔS < 0 (P2)."""
    labels = torch.tensor([0, 1, 2, 3] * 3)  # class = 2·place + motion
    places, motions = labels // 2, labels % 2
    by_place = F.one_hot(places, 2).float() + 0.01 * torch.randn(12, 2)
    by_motion = F.one_hot(motions, 2).float() + 0.01 * torch.randn(12, 2)
    assert similarity_by_type(by_place, by_place, labels, places)["delta"] > 0.5
    assert similarity_by_type(by_motion, by_motion, labels, places)["delta"] < -0.4


def test_no_qualifying_anchor_gives_nan() -> None:
    labels = torch.tensor([0, 0, 0])
    result = similarity_by_type(torch.randn(3, 4), torch.randn(3, 4), labels, torch.zeros(3, dtype=torch.long))
    assert math.isnan(result["delta"]) and math.isnan(result["easy"]) and not math.isnan(result["false"])


def test_accumulator_summary_and_histograms() -> None:
    diagnostics = AlignmentDiagnostics()
    generator = torch.Generator().manual_seed(1)
    matrix = torch.rand(9, 9, generator=generator)
    u_v, u_s = torch.randn(9, 4, generator=generator), torch.randn(9, 4, generator=generator)
    for start in (0, 5):  # two "batches": diagnostics of pair matrices are within-batch
        rows = slice(start, start + 5 if start == 0 else 9)
        diagnostics.add_pair_matrices({"W": matrix[rows, rows]}, LABELS[rows], PLACES[rows])
    diagnostics.add_embeddings(u_v[:5], u_s[:5], LABELS[:5], PLACES[:5])
    diagnostics.add_embeddings(u_v[5:], u_s[5:], LABELS[5:], PLACES[5:])
    summary = diagnostics.summary()
    histograms = diagnostics.histograms()
    expected = {kind: [] for kind in ("easy", "hard", "false")}
    for rows in (range(0, 5), range(5, 9)):
        for i in rows:
            for j in rows:
                kind = reference_type(i, j)
                if kind:
                    expected[kind].append(float(matrix[i, j]))
    for kind, listed in expected.items():
        assert summary[f"diag/W/{kind}"] == pytest.approx(sum(listed) / len(listed))
        assert histograms[f"diag/W/{kind}"].numel() == len(listed)
    # ΔS runs over the whole epoch (all 9 windows), not per batch.
    assert summary["diag/delta_s"] == pytest.approx(reference_similarities(u_v, u_s)["delta"], abs=1e-6)
    diagnostics.reset()
    assert diagnostics.summary() == {} and diagnostics.histograms() == {}


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        negative_type_masks(LABELS, PLACES[:3])
    with pytest.raises(ValueError, match="differ in N"):
        similarity_by_type(torch.randn(4, 2), torch.randn(4, 2), LABELS, PLACES)
