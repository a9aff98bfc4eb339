import math

import pytest

from igcnas.cli import main
from igcnas.nas.rank_check import rank_check


def tau_b(a, b):
    """Kendall's tau-b counted pair by pair (NaN when either ranking is all ties)."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                ties_a += 1
                ties_b += 1
            elif da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da * db > 0:
                concordant += 1
            else:
                discordant += 1
    pairs = len(a) * (len(a) - 1) // 2
    denominator = math.sqrt((pairs - ties_a) * (pairs - ties_b))
    return (concordant - discordant) / denominator if denominator else math.nan


@pytest.mark.slow
def test_rank_check_ranks_configurations_at_two_fidelities(capsys):
    result = rank_check(n_configs=4, short_epochs=1, long_epochs=2, max_batches_per_epoch=4, seed=0)
    assert len(result.rows) == 4 and all(0 <= r["short"] <= 1 and 0 <= r["long"] <= 1 for r in result.rows)
    short = [r["short"] for r in result.rows]
    long = [r["long"] for r in result.rows]
    expected = tau_b(short, long)
    assert (math.isnan(result.tau) and math.isnan(expected)) or result.tau == pytest.approx(expected)
    again = rank_check(n_configs=4, short_epochs=1, long_epochs=2, max_batches_per_epoch=4, seed=0)
    assert again.rows == result.rows  # seeded: the same configurations and accuracies
    code = main(["rank-check", "--n-configs", "3", "--short-epochs", "1", "--long-epochs", "2",
                 "--max-batches-per-epoch", "3"])
    assert code == 0 and "Kendall tau" in capsys.readouterr()[0]


def test_rank_check_validates():
    with pytest.raises(ValueError, match="n-configs"):
        rank_check(n_configs=2)
    with pytest.raises(ValueError, match="short epochs < long epochs"):
        rank_check(short_epochs=3, long_epochs=3)
