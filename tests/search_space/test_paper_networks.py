"""Our exact counts against the figures printed in the papers."""

import pytest

from igcnas.search_space.costs import closed_form_costs
from igcnas.search_space.paper_networks import ZOO, paper_ratios, register_zoo

def ratios(entry, figures):
    return paper_ratios(entry, figures)


CASES = [(name, figures) for name, entry in ZOO.items() for figures in entry.paper]


@pytest.mark.parametrize("name, figures", CASES, ids=[f"{n}-T{f.table}" for n, f in CASES])
def test_counts_match_the_paper(name, figures):
    entry = ZOO[name]
    params_ratio, macs_ratio = ratios(entry, figures)
    assert figures.within(params_ratio, macs_ratio), (params_ratio, macs_ratio)


def test_every_table_of_the_paper_is_covered():
    tables = {f.table for e in ZOO.values() for f in e.paper}
    assert {"2", "3", "4", "5", "6", "IGCV3"} <= tables
    assert len([c for c in CASES if c[1].table in {"3", "4", "6"}]) == 21


def test_igcv3_has_3_49m_params():
    assert closed_form_costs(ZOO["igcv3_1.0"].config).params == pytest.approx(3.49e6, rel=0.01)


def test_resnet56_counts_as_an_independent_count_does():
    costs = closed_form_costs(ZOO["resnet56"].config)
    assert (costs.params, costs.macs) == (853_018, 125_485_696)


def test_zoo_names_are_unique():
    entry = next(iter(ZOO.values()))
    with pytest.raises(ValueError, match="registered twice"):
        register_zoo(entry)
