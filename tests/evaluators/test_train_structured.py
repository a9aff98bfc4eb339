"""Training networks with Structured Convolutions: regulariser, projected accuracy, direct mode."""

import dataclasses

import pytest
import torch

from igcnas.evaluators.datasets import load_dataset
from igcnas.evaluators.train import TrainSettings, train_model
from igcnas.models import build_model
from igcnas.models.structured import SumPoolConv2d, projected, structural_penalty
from igcnas.search_space.paper_networks import cifar_network
from tests.conftest import plain_accuracy


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def structured_net():
    config = cifar_network("igcv2", 16, 5, [{"chain": (4, 4)}, {"chain": (4, 8)}, {"chain": (8, 8)}],
                           num_classes=10, input_size=8).replace(in_channels=1)
    return config.replace(stages=tuple(dataclasses.replace(s, small_kernel=2, channel_reduction=2)
                                       for s in config.stages))


@pytest.mark.slow
def test_reported_accuracy_is_the_projected_networks_and_the_gap_is_recorded(digits):
    model = build_model(structured_net(), seed=0)
    result = train_model(model, digits, TrainSettings(epochs=3, seed=0, threads=1))
    # Training ends with BatchNorm statistics re-estimated for the projected network (what is deployed).
    with projected(model):
        assert plain_accuracy(model, digits.val_x, digits.val_y) == result.val_accuracy
    assert result.projection_gap == pytest.approx(result.unprojected_accuracy - result.val_accuracy)
    assert result.val_accuracy > 0.5  # the projected network learned (chance is 0.1)
    assert abs(result.projection_gap) < 0.2


@pytest.mark.slow
def test_the_regulariser_pulls_kernels_towards_their_structure(digits):
    gaps = {}
    for lam in (0.0, 100.0):
        model = build_model(structured_net(), seed=0)
        train_model(model, digits, TrainSettings(epochs=2, seed=0, threads=1, structure_lambda=lam))
        gaps[lam] = structural_penalty(model).item()
    assert gaps[100.0] < 0.05 * gaps[0.0]


def test_direct_mode_trains_the_small_kernels_themselves(digits):
    settings = TrainSettings(epochs=2, seed=0, threads=1, structured_mode="direct")
    model = build_model(structured_net(), seed=0, form=settings.model_form)
    assert any(isinstance(m, SumPoolConv2d) for m in model.modules())
    before = [p.detach().clone() for p in model.parameters()]
    result = train_model(model, digits, settings)
    assert result.projection_gap is None  # nothing to project: it is already the deployed form
    assert result.val_accuracy > 0.5
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
