"""Structured Convolutions (Bhalgat et al., NeurIPS 2020): train a full kernel, deploy sum-pool + small conv.

A *structured* ``N x N`` kernel over ``C_g`` input channels per group is a small ``c_g x n x n`` kernel
``beta`` "spread" by a box of ones of size ``(C_g - c_g + 1) x (N - n + 1) x (N - n + 1)``: for one output
channel ::

    W[c, h, w] = sum_{a, i, j} beta[a, i, j] * B_c[c, a] * B_s[h, i] * B_s[w, j]

with the 0/1 band matrices ``B_c`` (``C_g x c_g``, column ``a`` has ones in rows ``a .. a + C_g - c_g``) and
``B_s`` (``N x n``, column ``i`` has ones in rows ``i .. i + N - n``); i.e. ``W = A beta`` with
``A = B_c (x) B_s (x) B_s``. Convolving with such a kernel equals a 3-D *sum* pooling over
(channel within group, H, W) with that box as window and stride 1, applied after the layer's zero padding,
followed by a convolution with ``beta`` (``c_g`` in-channels per group, ``n x n``, the layer's stride, no
padding, same groups). The pooling costs only additions, so the multiplications drop from
``C_g N^2`` to ``c_g n^2`` per output element. This holds at any stride, for any ``1 <= c_g <= C_g`` (no
divisibility needed), for depthwise convolutions (``C_g = 1``: spatial structure only) and for group 1x1
convolutions (``N = 1``: channel structure only).

Two forms of a layer live here:

* :class:`StructuredConv2d`, the *training* form: an ordinary full-kernel convolution that knows its
  structure, so it can be pushed towards the structured subspace (:func:`structural_penalty`), measured
  there (:func:`projected`) and finally projected onto it (:func:`project_`). The orthogonal projection
  ``W -> A A^+ W`` factors per axis because ``A`` is a Kronecker product, which keeps it cheap.
* :class:`SumPoolConv2d`, the *deployed* form: padding, 3-D average pooling, small convolution whose weight
  carries the pooling's window volume (so the pooling is an ``avg_pool3d`` that fvcore leaves uncounted,
  instead of a ones-kernel convolution it would count as MACs).
  :func:`igcnas.models.decomposition.decompose` turns a trained model into this form, optionally folding
  BatchNorm into the small convolutions.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from igcnas.search_space.plan import ConvOp

from igcnas.errors import BadInput

__all__ = [
    "FORMS",
    "conv_for",
    "StructuredConv2d",
    "SumPoolConv2d",
    "project_",
    "projected",
    "structural_penalty",
    "structured_layers",
]


def _check_int(name: str, value: object, minimum: int) -> int:
    """An int >= minimum or BadInput (a ValueError) naming the argument; bools are not sizes."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise BadInput(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_args(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int, groups: int,
                small_channels: int, small_kernel: int) -> None:
    """Validate a structured layer's arguments once, for both forms, with messages naming the argument."""
    _check_int("in_channels", in_channels, 1)
    _check_int("out_channels", out_channels, 1)
    _check_int("kernel_size", kernel_size, 1)
    _check_int("stride", stride, 1)
    _check_int("padding", padding, 0)
    _check_int("groups", groups, 1)
    if in_channels % groups:
        raise BadInput(f"groups={groups} must divide in_channels={in_channels}")
    if out_channels % groups:
        raise BadInput(f"groups={groups} must divide out_channels={out_channels}")
    _check_int("small_channels", small_channels, 1)
    _check_int("small_kernel", small_kernel, 1)
    if small_channels > in_channels // groups:
        raise BadInput(f"small_channels must be <= in_channels // groups = {in_channels // groups}, "
                       f"got {small_channels}")
    if small_kernel > kernel_size:
        raise BadInput(f"small_kernel must be <= kernel_size = {kernel_size}, got {small_kernel}")


@functools.lru_cache(maxsize=None)
def _band64(size: int, small: int) -> tuple[Tensor, Tensor, Tensor]:
    """(B, B^+, B B^+) in float64 for the ``size x small`` band matrix; cached because shapes repeat a lot.

    Column ``a`` of ``B`` has ones in rows ``a .. a + size - small``: the box of one small position.
    """
    band = torch.zeros(size, small, dtype=torch.float64)
    width = size - small + 1
    for a in range(small):
        band[a:a + width, a] = 1.0
    pinv = torch.linalg.pinv(band)
    return band, pinv, band @ pinv


def _band(size: int, small: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The cached band operators in ``like``'s dtype and device."""
    return tuple(t.to(dtype=like.dtype, device=like.device) for t in _band64(size, small))  # type: ignore[return-value]


class StructuredConv2d(nn.Conv2d):
    """Training form of a structured convolution: a plain full-kernel ``nn.Conv2d`` that knows its structure.

    It trains exactly like ``nn.Conv2d`` (same forward, same parameters) so that any optimiser, initialiser
    or checkpoint works unchanged; the structure only enters through :meth:`projected_weight`,
    :meth:`structure_gap` (for the regulariser) and :meth:`small_weight` (for deployment). ``bias`` is
    always False because the networks here follow every convolution with BatchNorm.

    ``small_channels`` is ``c_g``, the small kernel's input channels per group; ``small_kernel`` is ``n``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, groups: int = 1, small_channels: int, small_kernel: int) -> None:
        _check_args(in_channels, out_channels, kernel_size, stride, padding, groups, small_channels, small_kernel)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                         bias=False)
        self.small_channels = small_channels
        self.small_kernel = small_kernel

    def _operators(self) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]:
        """Per-axis band operators (channel, spatial) in the weight's dtype and device."""
        w = self.weight
        return (_band(self.in_channels // self.groups, self.small_channels, w),
                _band(self.kernel_size[0], self.small_kernel, w))

    def projected_weight(self) -> Tensor:
        """``A A^+ W``: the nearest structured kernel (Frobenius norm); differentiable in ``W``.

        Applied axis by axis (channel, then both spatial axes) because ``A A^+`` is the Kronecker product
        of the per-axis projections, which avoids ever forming the ``(C_g N^2)^2`` matrix.
        """
        (_, _, p_c), (_, _, p_s) = self._operators()
        return torch.einsum("ac,ih,jw,ochw->oaij", p_c, p_s, p_s, self.weight)

    def small_weight(self) -> Tensor:
        """``beta = A^+ W``, shape ``(out, c_g, n, n)``: the small kernel whose spread is :meth:`projected_weight`."""
        (_, pinv_c, _), (_, pinv_s, _) = self._operators()
        return torch.einsum("ac,ih,jw,ochw->oaij", pinv_c, pinv_s, pinv_s, self.weight)

    def structure_gap(self) -> Tensor:
        """``||W - P W||_F^2 / ||W||_F^2``: the weight's relative distance from the structured subspace.

        Scale-free so that layers of different size and norm weigh alike in :func:`structural_penalty`;
        0 for a structured (or zero) weight, differentiable.
        """
        w = self.weight
        num = (w - self.projected_weight()).square().sum()
        den = w.square().sum().clamp_min(torch.finfo(w.dtype).tiny)
        return num / den

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, small_channels={self.small_channels}, small_kernel={self.small_kernel}"


class SumPoolConv2d(nn.Module):
    """Deployed form of a structured convolution: zero padding, 3-D average pooling, small convolution.

    Computes ``conv(avg_pool3d(pad(x)))`` where the pooling runs over (channel within group, H, W) with
    window ``(C_g - c_g + 1, N - n + 1, N - n + 1)`` and stride 1, and ``self.conv`` has ``g * c_g`` input
    channels, kernel ``n``, the layer's stride, no padding and the same groups. The pooling's ``1 / volume``
    is compensated inside ``self.conv.weight`` (see :meth:`from_structured`), so the whole computes a
    sum-pool + small conv, i.e. the structured full convolution, while fvcore leaves the pooling uncounted.

    It can also be built directly and trained as is ("direct" mode): then the small kernel is the
    parameter and the structure holds by construction.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, groups: int = 1, small_channels: int, small_kernel: int,
                 bias: bool = False) -> None:
        _check_args(in_channels, out_channels, kernel_size, stride, padding, groups, small_channels, small_kernel)
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.groups = groups
        self.small_channels = small_channels
        self.small_kernel = small_kernel
        self.conv = nn.Conv2d(groups * small_channels, out_channels, small_kernel, stride=stride, padding=0,
                              groups=groups, bias=bias)

    @property
    def pool_window(self) -> tuple[int, int]:
        """``(channel window, spatial window)`` = ``(C_g - c_g + 1, N - n + 1)``; the spatial window is square."""
        return (self.in_channels // self.groups - self.small_channels + 1, self.kernel_size - self.small_kernel + 1)

    @property
    def pool_volume(self) -> int:
        """Number of inputs summed per pooled element: the factor folded into the small kernel."""
        wc, ws = self.pool_window
        return wc * ws * ws

    def pool_adds(self, size_in: int) -> int:
        """Additions the sum pooling performs for one ``size_in x size_in`` input at batch 1.

        Every pooled element (``g * c_g`` channels of side ``size_in + 2 padding - window + 1``) sums
        ``volume`` inputs, i.e. ``volume - 1`` additions; fvcore does not count them, so cost models add
        them here when they want the additions too.
        """
        _check_int("size_in", size_in, 1)
        _, ws = self.pool_window
        side = size_in + 2 * self.padding - ws + 1
        if side < 1:
            raise BadInput(f"size_in={size_in} is smaller than the pooling window {ws} after padding")
        return self.groups * self.small_channels * side * side * (self.pool_volume - 1)

    @classmethod
    def from_structured(cls, conv: StructuredConv2d) -> SumPoolConv2d:
        """The deployed equivalent of ``conv``'s *projected* weight (exact in exact arithmetic).

        The small weight is ``A^+ W`` times the pooling's window volume, which undoes the averaging.
        Dtype, device and train/eval mode follow ``conv``.
        """
        if not isinstance(conv, StructuredConv2d):
            raise BadInput(f"conv must be a StructuredConv2d, got {type(conv).__name__}")
        out = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], stride=conv.stride[0],
                  padding=conv.padding[0], groups=conv.groups, small_channels=conv.small_channels,
                  small_kernel=conv.small_kernel, bias=False)
        w = conv.weight
        out.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            out.conv.weight.copy_(conv.small_weight() * out.pool_volume)
        out.train(conv.training)
        return out

    def forward(self, x: Tensor) -> Tensor:
        if self.padding:
            x = F.pad(x, (self.padding,) * 4)
        wc, ws = self.pool_window
        if wc > 1 or ws > 1:
            b, _, h, w = x.shape
            x = x.reshape(b, self.groups, self.in_channels // self.groups, h, w)
            x = F.avg_pool3d(x, (wc, ws, ws), stride=1)
            x = x.reshape(b, self.groups * self.small_channels, x.shape[-2], x.shape[-1])
        return self.conv(x)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, small_channels={self.small_channels}, "
                f"small_kernel={self.small_kernel}, pool_window={self.pool_window}")


def structured_layers(model: nn.Module) -> list[StructuredConv2d]:
    """Every :class:`StructuredConv2d` in ``model`` (``model`` itself included), each once, in module order."""
    return [m for m in model.modules() if isinstance(m, StructuredConv2d)]


def project_(model: nn.Module) -> None:
    """Replace every StructuredConv2d's weight by its projection, in place (the end of structured training)."""
    with torch.no_grad():
        for layer in structured_layers(model):
            layer.weight.copy_(layer.projected_weight())


@contextmanager
def projected(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily project every StructuredConv2d's weight in place; the exact weights come back afterwards.

    Used to measure, during training, the accuracy the network would have once projected (and hence
    decomposed), without disturbing the training weights or the optimiser state that refers to them.
    """
    layers = structured_layers(model)
    saved = [layer.weight.detach().clone() for layer in layers]
    try:
        project_(model)
        yield model
    finally:
        with torch.no_grad():
            for layer, weight in zip(layers, saved):
                layer.weight.copy_(weight)


def structural_penalty(model: nn.Module) -> Tensor:
    """Mean :meth:`StructuredConv2d.structure_gap` over the model's structured layers; differentiable.

    Our reading of the paper's Structural Regularization: a loss term that pulls each full kernel towards
    the structured subspace so that the final projection loses little. The paper's exact Eq. 3 (its
    normalisation and weighting) is not available offline, so this uses the relative squared distance
    ``||W - A A^+ W||^2 / ||W||^2`` averaged over layers; scale it with your own coefficient. A zero
    tensor when the model has no structured layers.
    """
    layers = structured_layers(model)
    if not layers:
        param = next(model.parameters(), None)
        return torch.zeros((), device=param.device if param is not None else None)
    return torch.stack([layer.structure_gap() for layer in layers]).mean()


FORMS = ("train", "deployed")


def conv_for(op: ConvOp, *, form: str = "train") -> nn.Conv2d | SumPoolConv2d:
    """The module of one planned convolution ('same' padding ``kernel // 2``, no bias).

    A plain conv is an ``nn.Conv2d`` in either form; a structured one (``op.small`` set) is a
    :class:`StructuredConv2d` to train with the regulariser (``form="train"``) or a
    :class:`SumPoolConv2d` (``form="deployed"``: what :func:`~igcnas.models.decomposition.decompose`
    produces, and what the "direct" mode trains).
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    padding = op.kernel // 2
    if op.small is None:
        return nn.Conv2d(op.c_in, op.c_out, op.kernel, stride=op.stride, padding=padding, groups=op.groups,
                         bias=False)
    c_g, n = op.small
    cls = StructuredConv2d if form == "train" else SumPoolConv2d
    return cls(op.c_in, op.c_out, op.kernel, stride=op.stride, padding=padding, groups=op.groups,
               small_channels=c_g, small_kernel=n)
