"""The moves of the search over a genome's genes: the single steps that mutation and local search
apply, and the stage genes that crossover takes together.

A move returns new genes and leaves the repair to decoding, so every result is a valid network (the
repair rule is documented in :mod:`igcnas.search_space.genome`). Moves are written as the sampler
records them (``step_stage(1,+1)``, ``set_family(igcv1)``) so that a child's lineage can be replayed
with :meth:`GeneMoves.apply_op`. :class:`GeneMoves` is a base of
:class:`~igcnas.search_space.genome.Genome`, which supplies the encoding a move reads (declared
below); the breeding itself (which move, how often) is the sampler's (:mod:`igcnas.nas.evolution`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, Mapping

from igcnas.search_space.genes import BLOCKS, FAMILY, WIDTH, GeneNames, Point, StageTable
from igcnas.search_space.spec import CHANNEL_REDUCTIONS, STRUCTURED_KERNELS

__all__ = ["GeneMoves"]

_OP = re.compile(r"^(step_stage|step_l|step_sk|step_cr|step_width|step_blocks|set_family)\(([^()]*)\)$")


class GeneMoves(GeneNames, ABC):
    """Moves over the genes of one genome; each returns new genes (``decode`` repairs, so all are valid)."""

    # The encoding the moves read, set by Genome.__init__.
    families: tuple[str, ...]
    widths: tuple[int, ...]
    blocks: tuple[int, ...]
    valid_widths: dict[str, tuple[int, ...]]
    num_stages: int
    structured: bool

    @abstractmethod
    def locate(self, params: Mapping[str, Any]) -> Point:
        """The repaired indices the genes decode to."""

    @abstractmethod
    def canonical(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The genes snapped to what they decode to."""

    @abstractmethod
    def tables(self, family: str, width: int) -> tuple[StageTable, ...]:
        """Per stage, the cell's options grouped by L and sorted by cost."""

    def stage_gene_names(self, i: int) -> tuple[str, ...]:
        """Every gene of stage i (``L``, ``pos``, and ``sk``, ``cr`` when structured): what a crossover
        takes together from one parent."""
        names = (self.l_gene(i), self.pos_gene(i))
        return names + (self.sk_gene(i), self.cr_gene(i)) if self.structured else names

    def step_stage(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i to the option ``delta`` places away in cost order, same L (unchanged at an end)."""
        self._check_stage(i)
        point = self.locate(params)
        l_value, index, n = point.stages[i]
        out = dict(params)
        if 0 <= index + delta < n:
            out[self.l_gene(i)] = l_value
            out[self.pos_gene(i)] = (index + delta + 0.5) / n
        return out

    def step_l(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i to the ``delta``-th next L offered there, keeping its relative cost position."""
        self._check_stage(i)
        point = self.locate(params)
        ls = self.tables(point.family, self.widths[point.width_index])[i].ls
        k = ls.index(point.stages[i][0]) + delta
        out = dict(params)
        if 0 <= k < len(ls):
            out[self.l_gene(i)] = ls[k]
        return out

    def step_sk(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i's small kernel ``delta`` places along 3, 2, 1 (unchanged at an end); structured only."""
        return self._step_structure(params, i, delta, 0)

    def step_cr(self, params: Mapping[str, Any], i: int, delta: int) -> dict[str, Any]:
        """Move stage i's channel reduction ``delta`` places along 1, 2, 4 (unchanged at an end); structured
        only."""
        return self._step_structure(params, i, delta, 1)

    def _step_structure(self, params: Mapping[str, Any], i: int, delta: int, which: int) -> dict[str, Any]:
        self._check_stage(i)
        if not self.structured:
            raise ValueError("structure moves need a structured space (SearchSpec.structured)")
        point = self.locate(params)
        name, values = ((self.sk_gene(i), STRUCTURED_KERNELS), (self.cr_gene(i), CHANNEL_REDUCTIONS))[which]
        k = point.structure[i][which] + delta
        out = dict(params)
        if 0 <= k < len(values):
            out[name] = k
        return out

    def step_width(self, params: Mapping[str, Any], delta: int) -> dict[str, Any]:
        """Move to the ``delta``-th next width valid for the family; stage genes keep their relative meaning."""
        point = self.locate(params)
        valid = self.valid_widths[point.family]
        k = valid.index(point.width_index) + delta
        out = dict(params)
        if 0 <= k < len(valid):
            out[WIDTH] = valid[k]
        return out

    def step_blocks(self, params: Mapping[str, Any], delta: int) -> dict[str, Any]:
        """Move to the ``delta``-th next searched block count."""
        point = self.locate(params)
        out = dict(params)
        if 0 <= point.blocks_index + delta < len(self.blocks):
            out[BLOCKS] = point.blocks_index + delta
        return out

    def set_family(self, params: Mapping[str, Any], family: str) -> dict[str, Any]:
        """Change the family; width and stage genes are kept and repaired in the new family's tables."""
        if family not in self.families:
            raise ValueError(f"family must be one of {', '.join(self.families)}, got {family!r}")
        out = dict(params)
        out[FAMILY] = family
        return out

    def apply_op(self, params: Mapping[str, Any], op: str) -> dict[str, Any]:
        """Replay a move written as the sampler records it: ``step_stage(1,+1)``, ``step_l(0,-1)``,
        ``step_sk(2,+1)``, ``step_cr(0,-1)`` (structured), ``step_width(+1)``, ``step_blocks(-1)``,
        ``set_family(igcv1)``."""
        match = _OP.match(op.replace(" ", ""))
        if not match:
            raise ValueError(f"unknown move {op!r}")
        name, args = match.group(1), match.group(2).split(",")
        try:
            if name == "set_family":
                return self.set_family(params, args[0])
            numbers = [int(a) for a in args]
            if name in ("step_stage", "step_l", "step_sk", "step_cr"):
                i, delta = numbers
                return getattr(self, name)(params, i, delta)
            (delta,) = numbers
            return getattr(self, name)(params, delta)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad move {op!r}: {exc}") from None

    def move_sites(self) -> list[list[str]]:
        """The single-step moves grouped by the gene they change (both directions of one gene per group),
        family switches excluded: per stage its option, its L and, when structured, its small kernel and
        channel reduction; then width and blocks. A mutation draws per group."""
        names = ("step_stage", "step_l") + (("step_sk", "step_cr") if self.structured else ())
        sites = [[f"{name}({i},{d:+d})" for d in (-1, 1)] for i in range(self.num_stages) for name in names]
        return sites + [[f"step_width({d:+d})" for d in (-1, 1)], [f"step_blocks({d:+d})" for d in (-1, 1)]]

    def moves(self) -> list[str]:
        """Every single-step move (as :meth:`apply_op` reads them), family switches excluded."""
        return [op for site in self.move_sites() for op in site]

    def neighbours(self, params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The canonical genes one move away that decode to a different choice, with the move."""
        here = self.canonical(params)
        out = []
        for op in self.moves():
            there = self.canonical(self.apply_op(here, op))
            if there != here:
                out.append((op, there))
        return out

    def _check_stage(self, i: int) -> None:
        if not 0 <= i < self.num_stages:
            raise ValueError(f"stage must be 0..{self.num_stages - 1}, got {i}")
