"""The complementary condition (checked exactly) and the balance condition (Eqs. 4-14 of IGC-V2).

Complementary: build the binary channel connectivity of every group
convolution and permutation of a block exactly as the network applies them,
multiply them, and count the paths between every input and every output
channel. The composed kernel is dense when every count is >= 1; the block is
complementary when every count is exactly 1 (then ``prod K_l = C``).

Balance: the parameter count per pixel ``Q = C (S K_1 + K_2 + ... + K_L)``
(Eq. 7) is bounded below by ``C L (S C)^(1/L)`` (Eq. 10), reached when
``S K_1 = K_2 = ... = K_L`` (Eq. 11). For a channel-wise spatial conv
(``K_1 = 1``) the paper balances the 1x1 chain alone: ``K_2 = ... = K_L =
C^(1/(L-1))``, with bound ``C (L-1) C^(1/(L-1))``; both are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from igcnas.search_space.families import BlockStructure, Interleaved
from igcnas.search_space.plan import ConvOp, InterleavedPlan, InvertedPlan, resolve_interleaved, resolve_inverted

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "ComplementaryReport",
    "BalanceReport",
    "shuffle_indices",
    "conv_connectivity",
    "shuffle_matrix",
    "path_counts",
    "check_complementary",
    "check_balance",
]

SPATIAL_SIZE = 9  # S for a 3x3 kernel


def shuffle_indices(channels: int, groups: int) -> list[int]:
    """``out[new] = old`` for the channel shuffle used between group convolutions."""
    per = channels // groups
    return [(new % groups) * per + new // groups for new in range(channels)]


def conv_connectivity(conv: ConvOp) -> np.ndarray:
    """Binary (c_out x c_in) matrix: 1 where an output channel reads an input channel."""
    import numpy as np

    out_group = np.arange(conv.c_out) // (conv.c_out // conv.groups)
    in_group = np.arange(conv.c_in) // (conv.c_in // conv.groups)
    return (out_group[:, None] == in_group[None, :]).astype(np.float64)


def shuffle_matrix(channels: int, groups: int) -> np.ndarray:
    import numpy as np

    matrix = np.zeros((channels, channels))
    matrix[np.arange(channels), shuffle_indices(channels, groups)] = 1.0
    return matrix


def path_counts(plan: InterleavedPlan | InvertedPlan) -> np.ndarray:
    """Number of paths from every input channel (columns) to every output channel (rows)."""
    if isinstance(plan, InterleavedPlan):
        paths = conv_connectivity(plan.spatial)
        for groups, conv in zip(plan.shuffles, plan.pointwise):
            if groups > 1:
                paths = shuffle_matrix(paths.shape[0], groups) @ paths
            paths = conv_connectivity(conv) @ paths
        return paths
    first = plan.expand if plan.expand is not None else plan.depthwise
    paths = conv_connectivity(first)
    if plan.expand is not None:
        if plan.groups > 1:
            paths = shuffle_matrix(paths.shape[0], plan.groups) @ paths
        paths = conv_connectivity(plan.depthwise) @ paths
    return conv_connectivity(plan.project) @ paths


@dataclass(frozen=True)
class ComplementaryReport:
    width: int
    dense: bool  # every output channel reached from every input channel
    min_paths: int
    max_paths: int
    product: int | None  # prod K_l (interleaved blocks), to compare with the width
    missing_pairs: int  # (input, output) pairs with no path

    @property
    def complementary(self) -> bool:
        """Exactly one path between every input and every output channel."""
        return self.min_paths == 1 and self.max_paths == 1

    def describe(self) -> str:
        if self.complementary:
            return "complementary: exactly one path between every input and output channel"
        if not self.dense:
            return f"not dense: {self.missing_pairs} channel pairs have no path"
        return f"dense but redundant: {self.min_paths}-{self.max_paths} paths per channel pair"


def _plan_at_width(structure: BlockStructure, width: int) -> InterleavedPlan | InvertedPlan:
    if isinstance(structure, Interleaved):
        return resolve_interleaved(structure, c_in=width, c_out=width, stride=1, size=1)
    return resolve_inverted(structure, c_in=width, c_out=width, stride=1, size=1)


def check_complementary(structure: BlockStructure, width: int) -> ComplementaryReport:
    """Multiply the block's connectivity matrices at ``width`` channels and summarise the paths."""
    paths = path_counts(_plan_at_width(structure, width))
    product = None
    if isinstance(structure, Interleaved):
        product = min(structure.k1, width) * math.prod(min(k, width) for k in structure.chain)
    return ComplementaryReport(
        width=width,
        dense=bool((paths > 0).all()),
        min_paths=int(paths.min()),
        max_paths=int(paths.max()),
        product=product,
        missing_pairs=int((paths == 0).sum()),
    )


@dataclass(frozen=True)
class BalanceReport:
    width: int
    terms: tuple[int, ...]  # (S*K_1, K_2, ..., K_L)
    params_per_pixel: int  # Q = C * sum(terms), Eq. 7
    bound: float  # C * L * (S*C)^(1/L), Eq. 10
    pointwise_params: int | None  # C * sum(K_2..K_L) when K_1 = 1
    pointwise_bound: float | None  # C * (L-1) * C^(1/(L-1))

    @property
    def imbalance(self) -> float:
        """max/min of the balance terms; 1.0 means Eq. 11 holds."""
        return max(self.terms) / min(self.terms)

    @property
    def excess(self) -> float:
        """Q / bound; >= 1 for complementary blocks, 1.0 exactly when balanced."""
        return self.params_per_pixel / self.bound

    @property
    def pointwise_imbalance(self) -> float | None:
        if self.pointwise_params is None or len(self.terms) < 2:
            return None
        chain = self.terms[1:]
        return max(chain) / min(chain)

    @property
    def pointwise_excess(self) -> float | None:
        if self.pointwise_params is None or not self.pointwise_bound:
            return None
        return self.pointwise_params / self.pointwise_bound


def check_balance(structure: Interleaved, width: int) -> BalanceReport:
    """How far ``structure`` at ``width`` channels is from the balance condition."""
    k1 = min(structure.k1, width)
    chain = tuple(min(k, width) for k in structure.chain)
    terms = (SPATIAL_SIZE * k1, *chain)
    levels = len(terms)
    bound = width * levels * (SPATIAL_SIZE * width) ** (1.0 / levels)
    pw_params = pw_bound = None
    if k1 == 1 and chain:
        pw_params = width * sum(chain)
        pw_bound = width * len(chain) * width ** (1.0 / len(chain))
    return BalanceReport(width, terms, width * sum(terms), bound, pw_params, pw_bound)
