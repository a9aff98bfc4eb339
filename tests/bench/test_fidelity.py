"""bench/fidelity.py's pick regret on a hand-made ground truth whose answers are known."""

from fidelity import Net, long_front, pick_regret


def net(aid, params, long0, long1, macs=None):
    seeds = {0: {"long_curve": [long0]}, 1: {"long_curve": [long1]}}
    return Net(aid, "igcv2", params, macs if macs is not None else params * 10, seeds)


def test_refine_recovers_what_the_search_accuracy_misranks():
    # Under a budget of 100 params the best network at long training is "b" (0.95 mean); the search's short
    # training ranked "a" first. Both are on the search's front (a is more accurate, b is smaller).
    nets = {n.arch_id: n for n in [net("a", 90, 0.90, 0.90), net("b", 80, 0.96, 0.94), net("c", 200, 0.99, 0.99)]}
    searched = [("a", 0.80), ("b", 0.70), ("c", 0.85)]
    regret = pick_regret(searched, nets, [100.0, 1000.0], top=2, refine_seed=0)
    assert abs(regret["no_refine"]["100"] - 0.05) < 1e-12  # picked a: 0.95 - 0.90
    assert regret["refine"]["100"] == 0.0  # refined finalists a (0.90) and b (0.96 with seed 0): b
    assert regret["no_refine"]["1000"] == 0.0 == regret["refine"]["1000"]  # c is best either way
    only_top = pick_regret(searched, nets, [100.0], top=1, refine_seed=0)
    assert abs(only_top["refine"]["100"] - 0.05) < 1e-12  # refining one finalist cannot change the pick


def test_nothing_within_the_budget_loses_the_whole_ceiling():
    nets = {n.arch_id: n for n in [net("a", 50, 0.9, 0.8), net("b", 500, 0.99, 0.99)]}
    regret = pick_regret([("b", 0.9)], nets, [60.0], top=5, refine_seed=1)
    assert abs(regret["no_refine"]["60"] - 0.85) < 1e-12 and abs(regret["refine"]["60"] - 0.85) < 1e-12


def test_the_long_front_is_over_ground_truth_params_and_macs():
    nets = [net("a", 10, 0.5, 0.5), net("b", 20, 0.6, 0.6), net("c", 30, 0.55, 0.55)]
    assert long_front(nets) == [0, 1]  # c is dominated by b (more accurate, smaller)
