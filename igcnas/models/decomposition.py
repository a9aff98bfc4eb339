"""Deployment of structured networks: every trained StructuredConv2d replaced by its sum-pool + small conv.

Training (:mod:`igcnas.models.structured`) keeps full kernels so that any optimiser and checkpoint work
unchanged; what is deployed, measured for latency and exported is the decomposed copy made here, which
computes what the *projected* training network computes with fewer multiplications. It lives apart from
the layers because it walks whole networks (shared layers, BatchNorm folding by the blocks' layouts)
rather than defining a layer.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from igcnas.errors import BadInput
from igcnas.models.structured import StructuredConv2d, SumPoolConv2d

__all__ = ["decompose"]


def _fold_bn(conv: SumPoolConv2d, bn: nn.BatchNorm2d) -> bool:
    """Fold eval-mode ``bn`` into ``conv.conv`` in place; False (nothing changed) where BN has no running stats."""
    if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
        return False
    small = conv.conv
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if small.bias is not None:
            shift = shift + small.bias * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        small.weight.mul_(scale.to(small.weight.dtype).reshape(-1, 1, 1, 1))
        small.bias = nn.Parameter(shift.to(small.weight.dtype))
    return True


def _identity_like(module: nn.Module) -> nn.Identity:
    """An ``nn.Identity`` in ``module``'s train/eval mode, so replacing it keeps the model's mode uniform."""
    return nn.Identity().train(module.training)


def decompose(model: nn.Module, *, fold_bn: bool = False) -> nn.Module:
    """A deep copy with every StructuredConv2d replaced by :meth:`SumPoolConv2d.from_structured`.

    The copy computes what the *projected* training model computes (up to rounding), with fewer
    multiplications. Train/eval mode is kept. ``model`` itself is not changed.

    ``fold_bn=True`` also folds a BatchNorm2d that directly follows a replaced convolution into its small
    convolution (using the running statistics) and replaces it by ``nn.Identity``. This reproduces
    **eval-mode** behaviour only: in training mode BN would normalise with batch statistics, which a folded
    copy no longer does. "Directly follows" means the next module of the same ``nn.Sequential``; or, in a
    module with ``spatial`` and ``bn1``, ``bn1`` after ``spatial``; or, in a module with a ModuleList
    ``pointwise`` and ``bn2``, ``bn2`` after the last pointwise convolution when that one was replaced.
    A BatchNorm without running statistics is left in place.

    Note: modules that read their convolutions' ``.weight`` directly (e.g. the ``composed`` strategy of
    the interleaved blocks) cannot run on replaced convolutions; use their plain strategy.
    """
    if not isinstance(fold_bn, bool):
        raise BadInput(f"fold_bn must be a bool, got {fold_bn!r}")
    copied = copy.deepcopy(model)
    if isinstance(copied, StructuredConv2d):
        return SumPoolConv2d.from_structured(copied)
    replaced: dict[int, SumPoolConv2d] = {}
    _replace_structured(copied, replaced)
    if fold_bn:
        _fold_following_norms(copied, {id(m) for m in replaced.values()})
    return copied


def _replace_structured(parent: nn.Module, replaced: dict[int, SumPoolConv2d]) -> None:
    """Put the deployed form in place of every StructuredConv2d below ``parent``; ``replaced`` maps each
    original's id to its one replacement, so a layer used at two places stays one layer."""
    # _modules, not named_children(): a layer used twice must be replaced at both places.
    for name, child in list(parent._modules.items()):
        if isinstance(child, StructuredConv2d):
            if id(child) not in replaced:
                replaced[id(child)] = SumPoolConv2d.from_structured(child)
            setattr(parent, name, replaced[id(child)])
        elif child is not None:
            _replace_structured(child, replaced)


def _fold_following_norms(root: nn.Module, new_ids: set[int]) -> None:
    """Fold each BatchNorm2d that directly follows a replaced convolution (ids ``new_ids``) into it, in place,
    and put an ``nn.Identity`` where the BatchNorm was (see :func:`decompose` for "directly follows")."""
    folded: set[int] = set()

    def try_fold(conv: nn.Module | None, bn: nn.Module | None) -> bool:
        """Fold once per conv and once per BN; True when ``bn`` should be replaced by Identity."""
        if not isinstance(conv, SumPoolConv2d) or id(conv) not in new_ids or not isinstance(bn, nn.BatchNorm2d):
            return False
        if id(conv) in folded or id(bn) in folded:
            return False
        if not _fold_bn(conv, bn):
            return False
        folded.update((id(conv), id(bn)))
        return True

    for module in list(root.modules()):
        if isinstance(module, nn.Sequential):
            items = [(name, child) for name, child in module._modules.items() if child is not None]
            for (_, first), (name, second) in zip(items, items[1:]):
                if try_fold(first, second):
                    setattr(module, name, _identity_like(second))
        if hasattr(module, "spatial") and hasattr(module, "bn1"):
            if try_fold(module.spatial, module.bn1):
                module.bn1 = _identity_like(module.bn1)
        pointwise = getattr(module, "pointwise", None)
        if isinstance(pointwise, nn.ModuleList) and len(pointwise) > 0 and hasattr(module, "bn2"):
            if try_fold(pointwise[-1], module.bn2):
                module.bn2 = _identity_like(module.bn2)
