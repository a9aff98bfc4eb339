"""The training-time augmentation: the IGC papers' CIFAR recipe, applied to a whole normalised batch at once.

Zero padding of 4 around the normalised image, a random crop back to size, a random horizontal flip. The
randomness is drawn with the caller's CPU generator in a fixed order (row offsets, column offsets, flips)
and only then moved to the batch's device, so a seed gives the same batches on any device and whether the
images were held in memory or streamed (:meth:`igcnas.evaluators.data_splits.DataSplits.train_batches`
draws the epoch's permutation first, then calls this per batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment_batch", "crop_and_flip", "draw_augmentation"]


def draw_augmentation(n: int, generator: torch.Generator, pad: int = 4
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row offsets, column offsets, flips) for ``n`` images, drawn on the CPU in that order."""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return oy, ox, flip


def crop_and_flip(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor,
                  pad: int = 4) -> torch.Tensor:
    """Image i of ``x`` zero-padded by ``pad``, cropped at (oy[i], ox[i]), mirrored when flip[i]: one gather."""
    n, _, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = oy.to(dev)[:, None] + torch.arange(h, device=dev)  # n, h
    forward = torch.arange(w, device=dev)
    cols = ox.to(dev)[:, None] + torch.where(flip.to(dev)[:, None], forward.flip(0), forward)  # n, w
    batch = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # n, h, w, c
    return out.permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The paper's CIFAR augmentation on a normalised batch on any device (randomness drawn on the CPU)."""
    return crop_and_flip(x, *draw_augmentation(len(x), generator, pad), pad=pad)
