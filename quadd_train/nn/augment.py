"""Differentiable Siamese Augmentation (DSA; Zhao & Bilen, ICML 2021).

Follows ``DiffAugment`` of the reference code (VICO-UoE/DatasetCondensation, utils.py),
with two deliberate differences:

* randomness comes from a local ``torch.Generator`` instead of reseeding the global
  RNG, so calling it never disturbs the caller's random stream;
* ``ParamDiffAug`` carries configuration only (no per-call state), so one instance can
  be shared freely.

Seeding semantics match the reference: with ``seed=None`` every sample draws its own
transformation (ordinary augmentation for training); with an integer ``seed`` one
transformation is drawn and applied to the whole batch, so two batches of *different*
sizes (real and synthetic) augmented with the same seed get the identical transform.
All parameters are drawn on the CPU, which also makes them device independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime import to_device

__all__ = ["DEFAULT_STRATEGY", "ParamDiffAug", "diff_augment"]

DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclass(frozen=True)
class ParamDiffAug:
    """Augmentation strengths; defaults are the reference values."""

    aug_mode: str = "S"  # "S": one randomly chosen op per call; "M": all ops in order
    prob_flip: float = 0.5
    ratio_scale: float = 1.2
    ratio_rotate: float = 15.0  # degrees
    ratio_crop_pad: float = 0.125
    ratio_cutout: float = 0.5
    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5


class _Sampler:
    """Draws CPU random numbers, shared across the batch when seeded (Siamese mode)."""

    def __init__(self, seed: int | None) -> None:
        self.batchmode = seed is not None
        self.gen: torch.Generator | None = None
        if seed is not None:
            self.gen = torch.Generator(device="cpu")
            self.gen.manual_seed(int(seed))

    def rand(self, n: int) -> Tensor:
        if self.batchmode:
            return torch.rand(1, generator=self.gen).expand(n)
        return torch.rand(n, generator=self.gen)

    def randint(self, low: int, high: int, n: int) -> Tensor:
        """Integers in ``[low, high)``."""
        if self.batchmode:
            return torch.randint(low, high, (1,), generator=self.gen).expand(n)
        return torch.randint(low, high, (n,), generator=self.gen)


def _on(values: Tensor, x: Tensor) -> Tensor:
    return to_device(values, x.device)


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    return to_device(values, x.device, x.dtype).view(-1, 1, 1, 1)


def _brightness(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    r = _per_sample(s.rand(x.size(0)), x)
    return x + (r - 0.5) * p.brightness


def _saturation(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    # On 1-channel images the channel mean is the image itself, so this is a no-op
    # (the random draw still happens, keeping the stream aligned across channel counts).
    x_mean = x.mean(dim=1, keepdim=True)
    r = _per_sample(s.rand(x.size(0)), x)
    return (x - x_mean) * (r * p.saturation) + x_mean


def _contrast(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    r = _per_sample(s.rand(x.size(0)), x)
    return (x - x_mean) * (r + p.contrast) + x_mean


def _crop(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    # Integer translation with zero fill (the reference's pad-and-crop).
    n, _, h, w = x.shape
    shift_h, shift_w = int(h * p.ratio_crop_pad + 0.5), int(w * p.ratio_crop_pad + 0.5)
    tx = _on(s.randint(-shift_h, shift_h + 1, n), x).view(n, 1, 1)
    ty = _on(s.randint(-shift_w, shift_w + 1, n), x).view(n, 1, 1)
    gb, gx, gy = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    x_pad = F.pad(x, [1, 1, 1, 1])
    return x_pad.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2)


def _cutout(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * p.ratio_cutout + 0.5), int(w * p.ratio_cutout + 0.5)
    ox = _on(s.randint(0, h + (1 - ch % 2), n), x).view(n, 1, 1)
    oy = _on(s.randint(0, w + (1 - cw % 2), n), x).view(n, 1, 1)
    gb, gx, gy = torch.meshgrid(
        torch.arange(n, device=x.device),
        torch.arange(ch, device=x.device),
        torch.arange(cw, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + ox - ch // 2, 0, h - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


def _flip(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    r = _on(s.rand(x.size(0)), x).view(-1, 1, 1, 1)
    return torch.where(r < p.prob_flip, x.flip(3), x)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    theta = to_device(theta, x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, align_corners=True)


def _scale(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    n = x.size(0)
    lo = 1.0 / p.ratio_scale
    sx = s.rand(n) * (p.ratio_scale - lo) + lo
    sy = s.rand(n) * (p.ratio_scale - lo) + lo
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = sy
    return _affine(x, theta)


def _rotate(x: Tensor, p: ParamDiffAug, s: _Sampler) -> Tensor:
    n = x.size(0)
    ang = (s.rand(n) - 0.5) * 2 * p.ratio_rotate / 180 * math.pi
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.cos(ang)
    theta[:, 0, 1] = -torch.sin(ang)
    theta[:, 1, 0] = torch.sin(ang)
    theta[:, 1, 1] = torch.cos(ang)
    return _affine(x, theta)


_Op = Callable[[Tensor, ParamDiffAug, _Sampler], Tensor]
AUGMENT_FNS: dict[str, list[_Op]] = {
    "color": [_brightness, _saturation, _contrast],
    "crop": [_crop],
    "cutout": [_cutout],
    "flip": [_flip],
    "scale": [_scale],
    "rotate": [_rotate],
}


def diff_augment(
    x: Tensor,
    strategy: str = DEFAULT_STRATEGY,
    seed: int | None = None,
    param: ParamDiffAug | None = None,
) -> Tensor:
    """Augment an ``(N, C, H, W)`` batch differentiably.

    ``strategy`` is an underscore-separated list of ops from ``AUGMENT_FNS``;
    "none"/"" returns ``x`` unchanged. ``seed=None`` draws per-sample transforms from
    the global torch RNG; an integer seed draws one transform for the whole batch from a
    private generator (same seed -> same transform, whatever the batch size).
    """
    if not strategy or strategy.lower() == "none":
        return x
    if x.dim() != 4:
        raise ValueError(f"diff_augment expects (N, C, H, W), got shape {tuple(x.shape)}")
    param = param or ParamDiffAug()
    ops = strategy.split("_")
    unknown = [o for o in ops if o not in AUGMENT_FNS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: {sorted(AUGMENT_FNS)}")
    sampler = _Sampler(seed)
    if param.aug_mode == "M":
        chosen = ops
    elif param.aug_mode == "S":
        chosen = [ops[int(sampler.randint(0, len(ops), 1)[0])]]
    else:
        raise ValueError(f"unknown aug_mode {param.aug_mode!r}; expected 'S' or 'M'")
    for name in chosen:
        for fn in AUGMENT_FNS[name]:
            x = fn(x, param, sampler)
    return x.contiguous()
