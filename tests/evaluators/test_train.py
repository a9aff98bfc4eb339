import dataclasses

import pytest
import torch

from igcnas.evaluators.datasets import load_dataset
from igcnas.evaluators.train import TrainSettings, TrialDiverged, train_model
from igcnas.models import build_model
from igcnas.search_space.paper_networks import cifar_network
from tests.conftest import plain_accuracy


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def small_net():
    return cifar_network("igcv2", 16, 5, [{"chain": (4, 4)}, {"chain": (4, 8)}, {"chain": (8, 8)}],
                         num_classes=10, input_size=8).replace(in_channels=1)


def test_training_learns_digits_and_reports_each_epoch(digits):
    model = build_model(small_net(), seed=0)
    before = plain_accuracy(model, digits.val_x, digits.val_y)
    caller_threads = 2 if torch.get_num_threads() != 2 else 3
    torch.set_num_threads(caller_threads)
    seen = []
    result = train_model(model, digits, TrainSettings(epochs=3, seed=0, threads=1),
                         on_epoch=lambda e, a: seen.append((e, a)))
    assert [e for e, _ in seen] == [1, 2, 3]
    assert result.curve == [a for _, a in seen]
    assert result.val_accuracy > 0.8 > before
    assert torch.get_num_threads() == caller_threads  # training ran with threads=1, then restored the caller's


def test_memory_limit_is_per_trial_not_the_process_peak(digits):
    """A large trial over the limit fails; a small one after it, in the same process, does not.

    The limit measures the resident-set growth during the trial; the process's peak (which the large
    trial raised for good) would fail every later trial.
    """
    from igcnas.evaluators.train import TrialLimitExceeded, current_rss_mb

    # Batch 1024 at 128 channels: every activation is 32 MiB, above glibc's largest mmap threshold, so
    # each is fresh memory whatever the process freed before (the growth does not depend on history).
    big = cifar_network("dense", 128, 5, num_classes=10, input_size=8).replace(in_channels=1)
    limit = 150.0
    settings = TrainSettings(epochs=1, seed=0, threads=1, batch_size=1024, max_batches_per_epoch=2,
                             memory_limit_mb=limit)
    before = current_rss_mb()
    with pytest.raises(TrialLimitExceeded, match="memory limit of 150 MB exceeded"):
        train_model(build_model(big, seed=0), digits, settings)
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    assert peak_mb - before > limit  # the large trial did raise the process's peak past the limit
    result = train_model(build_model(small_net(), seed=0), digits,
                         dataclasses.replace(settings, batch_size=64, max_batches_per_epoch=5))
    assert len(result.curve) == 1


def test_training_is_reproducible_with_a_seed(digits):
    settings = TrainSettings(epochs=1, seed=3, threads=1, max_batches_per_epoch=5)
    a = train_model(build_model(small_net(), seed=1), digits, settings)
    b = train_model(build_model(small_net(), seed=1), digits, settings)
    assert a.curve == b.curve and a.train_loss == b.train_loss


def test_nan_loss_fails_the_trial_with_a_reason(digits):
    broken = dataclasses.replace(digits, train_x=torch.full_like(digits.train_x, float("nan")))
    with pytest.raises(TrialDiverged, match="loss became nan"):
        train_model(build_model(small_net()), broken, TrainSettings(epochs=1, max_batches_per_epoch=2))


def test_settings_validate():
    with pytest.raises(ValueError, match="epochs"):
        TrainSettings(epochs=0)


def test_the_recalibrated_curve_measures_without_changing_the_training(digits):
    """recalibrated_curve adds, per epoch, the accuracy with BatchNorm statistics re-estimated, and restores the
    statistics: the training, its plain curve and the final running statistics are those of a run without it."""
    import copy

    from igcnas.evaluators.train import evaluate_split, recalibrate_batchnorm

    settings = TrainSettings(epochs=2, seed=3, threads=1, max_batches_per_epoch=6, fast=False,
                             recalibrate_plain=False)
    plain_model, with_model = build_model(small_net(), seed=1), build_model(small_net(), seed=1)
    plain = train_model(plain_model, digits, settings)
    measured = train_model(with_model, digits, dataclasses.replace(settings, recalibrated_curve=True))
    assert plain.recalibrated_curve == [] and measured.curve == plain.curve
    assert measured.train_loss == plain.train_loss
    for a, b in zip(plain_model.state_dict().values(), with_model.state_dict().values()):
        assert torch.equal(a, b)  # weights and running statistics alike
    expected = copy.deepcopy(with_model)
    recalibrate_batchnorm(expected, digits, batch_size=settings.batch_size)
    assert len(measured.recalibrated_curve) == 2
    assert measured.recalibrated_curve[-1] == evaluate_split(expected, digits, "val")
    # recalibrate_plain evaluates every epoch that way and keeps the statistics: the same figures, and the
    # network it leaves has its statistics re-estimated (the weights are the same: training never reads them).
    kept_model = build_model(small_net(), seed=1)
    kept = train_model(kept_model, digits, dataclasses.replace(settings, recalibrate_plain=True))
    assert kept.curve == measured.recalibrated_curve and kept.train_loss == plain.train_loss
    assert evaluate_split(kept_model, digits, "val") == measured.recalibrated_curve[-1]



def test_a_record_from_before_a_setting_was_recorded_trains_as_its_search_did():
    """pick --retrain and refine take the search's settings from its record; a record older than
    recalibrate_plain's was evaluated without re-estimation, whatever today's default is."""
    from igcnas.evaluators.settings import recorded_settings

    old = {"epochs": 4, "batch_size": 64, "lr": 0.05, "structured_mode": "direct"}
    assert TrainSettings().recalibrate_plain is True
    assert recorded_settings(old) == {"structured_mode": "direct", "recalibrate_plain": False}
    assert recorded_settings({**old, "recalibrate_plain": True})["recalibrate_plain"] is True
