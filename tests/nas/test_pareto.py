import numpy as np
import pandas as pd
import pytest

from igcnas.nas.pareto import ReferencePoint, export_trials, hypervolume, hypervolume_history, pareto_mask


def frame(rows):
    df = pd.DataFrame(rows, columns=["val_accuracy", "params", "macs"])
    df["state"] = "COMPLETE"
    df["feasible"] = True
    df["latency_ms"] = np.nan
    df["number"] = range(len(df))
    return df


def brute_force_front(df):
    keep = []
    for i, a in df.iterrows():
        dominated = False
        for j, b in df.iterrows():
            if i == j:
                continue
            better_or_equal = b.val_accuracy >= a.val_accuracy and b.params <= a.params and b.macs <= a.macs
            strictly = b.val_accuracy > a.val_accuracy or b.params < a.params or b.macs < a.macs
            if better_or_equal and strictly:
                dominated = True
        keep.append(not dominated)
    return np.array(keep)


def test_pareto_mask_matches_brute_force_and_skips_infeasible():
    rng = np.random.default_rng(0)
    df = frame(np.column_stack([rng.random(60), rng.integers(1, 50, 60), rng.integers(1, 50, 60)]))
    df.loc[3, "feasible"] = False
    df.loc[4, "state"] = "PRUNED"
    expected = brute_force_front(df[df.feasible & (df.state == "COMPLETE")])
    mask = pareto_mask(df)
    assert not mask[3] and not mask[4]
    assert (mask[df.feasible & (df.state == "COMPLETE")] == expected).all()


def test_hypervolume_of_known_boxes():
    ref = ReferencePoint(params=100.0, macs=100.0)
    one = frame([[0.5, 50.0, 50.0]])  # box 0.5 x 0.5 x 0.5
    assert hypervolume(one, ref) == pytest.approx(0.125)
    two = frame([[0.5, 50.0, 50.0], [0.75, 50.0, 75.0]])  # adds (0.25 x 0.5 x 0.25)... union below
    expected = 0.5 * 0.5 * 0.5 + (0.75 - 0.5) * 0.5 * 0.25
    assert hypervolume(two, ref) == pytest.approx(expected)
    outside = frame([[0.9, 150.0, 10.0]])  # beyond the reference box in params: contributes nothing
    assert hypervolume(outside, ref) == 0.0
    history = hypervolume_history(two, ref)
    assert history["hypervolume"].tolist() == pytest.approx([0.125, expected])


def test_export_csv_and_parquet(tmp_path):
    df = frame([[0.5, 1.0, 2.0]])
    for name in ("t.csv", "t.parquet"):
        path = export_trials(df, tmp_path / name)
        back = pd.read_csv(path) if name.endswith("csv") else pd.read_parquet(path)
        assert back["val_accuracy"].tolist() == [0.5]
    with pytest.raises(ValueError, match=".csv or .parquet"):
        export_trials(df, tmp_path / "t.xlsx")


def test_the_front_is_the_brute_force_front_and_optunas_with_ties_and_without_a_square_matrix():
    """nondominated_mask keeps exactly the rows no other row dominates (equal rows all kept), as the full
    dominance matrix and Optuna's own front say, on small integer grids full of ties."""
    from optuna.study._multi_objective import _is_pareto_front

    from igcnas.nas.selection import dominance_matrix, nondominated_mask

    rng = np.random.default_rng(0)
    for _ in range(200):
        points = rng.integers(0, 4, size=(int(rng.integers(1, 40)), int(rng.integers(1, 4)))).astype(float)
        mask = nondominated_mask(points)
        assert (mask == ~dominance_matrix(points).any(axis=0)).all()
        assert (mask == _is_pareto_front(points, assume_unique_lexsorted=False)).all()
    assert nondominated_mask(np.empty((0, 3))).shape == (0,)
