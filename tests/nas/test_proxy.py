import math

import pytest

from igcnas.cli import main
from igcnas.nas.proxy import proxy_check


def test_proxy_check_ranks_configurations_at_two_fidelities(capsys):
    result = proxy_check(n_configs=4, short_epochs=1, long_epochs=2, max_batches_per_epoch=4, seed=0)
    assert len(result.rows) == 4 and all(0 <= r["short"] <= 1 and 0 <= r["long"] <= 1 for r in result.rows)
    assert -1.0 <= result.tau <= 1.0 or math.isnan(result.tau)
    code = main(["proxy-check", "--n-configs", "3", "--short-epochs", "1", "--long-epochs", "2",
                 "--max-batches-per-epoch", "3"])
    assert code == 0 and "Kendall tau" in capsys.readouterr()[0]


def test_proxy_check_validates():
    with pytest.raises(ValueError, match="n-configs"):
        proxy_check(n_configs=2)
    with pytest.raises(ValueError, match="short epochs < long epochs"):
        proxy_check(short_epochs=3, long_epochs=3)
