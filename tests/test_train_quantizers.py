"""Quantizers: bit-exact export, sorted levels, gradients; budget parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quadd_train.budget import parse_size
from quadd_train.quantizers import (
    APoTQuantizer,
    IdentityQuantizer,
    apot_grid,
    make_quantizer,
)

N, C = 5, 3


def _decode(codes: np.ndarray, levels: np.ndarray, group: str) -> np.ndarray:
    """Independent decoder following the codec's group conventions."""
    n, c = codes.shape[:2]
    out = np.empty(codes.shape, dtype=np.float32)
    for k in range(n):
        for ch in range(c):
            row = {"tensor": 0, "channel": ch, "sample-channel": k * c + ch}[group]
            out[k, ch] = levels[row][codes[k, ch]]
    return out


@pytest.mark.parametrize("name", ["uniform", "apot", "learned"])
@pytest.mark.parametrize("group", ["tensor", "channel", "sample-channel"])
def test_export_bit_exact_and_sorted(name: str, group: str) -> None:
    gen = torch.Generator().manual_seed(0)
    for bits in range(1, 9):
        x = torch.randn(N, C, 6, 5, generator=gen) * 1.5 + 0.2
        q = make_quantizer(name, bits, group, num_samples=N, num_channels=C)
        q.init_from(x)
        opt = torch.optim.Adam(q.parameters(), lr=0.05)
        xp = x.clone().requires_grad_(True)
        for _ in range(3):  # train a little so levels are no longer at their init
            y = q(xp)
            opt.zero_grad()
            (y * torch.randn(y.shape, generator=gen)).sum().backward()
            opt.step()
        y = q(xp)
        for codes, levels in (q.export(), q.export(xp)):
            assert codes.dtype == np.uint8 and codes.shape == tuple(x.shape)
            assert levels.dtype == np.float32 and levels.shape[1] == 2**bits
            assert np.all(np.diff(levels, axis=1) >= 0), "levels must be ascending"
            dec = _decode(codes, levels, group)
            assert np.array_equal(dec.view(np.uint32), y.detach().numpy().view(np.uint32)), (
                name,
                group,
                bits,
            )


@pytest.mark.parametrize("name", ["uniform", "apot", "learned"])
def test_gradients_reach_samples_and_levels(name: str) -> None:
    torch.manual_seed(1)
    x = (torch.randn(N, C, 4, 4) * 2).requires_grad_(True)
    q = make_quantizer(name, 3, "channel", num_samples=N, num_channels=C)
    q.init_from(x.detach() * 0.7)  # some values fall outside the initial range
    y = q(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grads = {n: p.grad for n, p in q.named_parameters()}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), grads


def _step(q, x0: torch.Tensor, weights: torch.Tensor, *params: str) -> tuple:
    """Output, sample gradient, the named parameters' gradients and the export of one
    forward and backward pass of ``q`` over ``x0``."""
    x = x0.clone().requires_grad_(True)
    y = q(x)
    (y * weights).sum().backward()
    return (y.detach(), x.grad, *(getattr(q, n).grad for n in params), q.export())


@pytest.mark.parametrize("group", ["tensor", "channel", "sample-channel"])
@pytest.mark.parametrize("shape", [(N, C, 6, 5), (N, C)])
def test_fused_uniform_matches_the_generic_path(group: str, shape: tuple[int, ...]) -> None:
    """The fused uniform step gives the generic path's values bit for bit and its
    gradients up to summation order, also with swapped or collapsed range ends."""
    gen = torch.Generator().manual_seed(2)
    moved = 0.0
    for bits, shrink in [(1, 0.8), (2, 1.0), (4, 0.8), (8, 1.0)]:
        x0 = torch.randn(shape, generator=gen) * 1.5 + 0.2
        weights = torch.randn(shape, generator=gen)
        ref = make_quantizer("uniform", bits, group, num_samples=N, num_channels=C)
        # 0.8: some values fall outside the range; 1.0: each group's extremes lie
        # exactly on its end levels (as after init_from in a real run).
        ref.init_from(x0 * shrink)
        x0 = x0 * shrink if shrink == 1.0 else x0
        with torch.no_grad():
            ref.lo[0], ref.hi[0] = ref.hi[0].clone(), ref.lo[0].clone()  # swapped ends
            if ref.num_groups > 2:
                ref.hi[-1] = ref.lo[-1]  # a collapsed range: the minimum scale
                # exactly the minimum scale: clamp_min still passes the gradient there
                ref.lo[1], ref.hi[1] = 0.0, (ref.num_levels - 1) * 1e-6
        ref.fused = False
        fused = make_quantizer("uniform", bits, group, num_samples=N, num_channels=C)
        fused.load_state_dict(ref.state_dict())
        assert fused.uses_fused(x0)
        (y_r, gx_r, glo_r, ghi_r, (c_r, l_r)), (y_f, gx_f, glo_f, ghi_f, (c_f, l_f)) = (
            _step(q, x0, weights, "lo", "hi") for q in (ref, fused))
        assert torch.equal(y_r.view(torch.int32), y_f.view(torch.int32)), bits
        assert np.array_equal(c_r, c_f) and np.array_equal(l_r.view(np.uint32),
                                                          l_f.view(np.uint32))
        assert torch.equal(gx_r, gx_f)
        torch.testing.assert_close(glo_f, glo_r, rtol=1e-5, atol=2e-5)
        torch.testing.assert_close(ghi_f, ghi_r, rtol=1e-5, atol=2e-5)
        moved += float(glo_r.abs().sum() + ghi_r.abs().sum())
    assert moved > 0  # not a comparison of zeros


@pytest.mark.parametrize("group", ["tensor", "channel", "sample-channel"])
@pytest.mark.parametrize("shape", [(N, C, 6, 5), (N, C)])
def test_fused_apot_matches_the_generic_path(group: str, shape: tuple[int, ...]) -> None:
    """The fused APoT step picks the generic path's codes (a value within rounding of a
    decision threshold may go either way), so the same values bit for bit, and its
    gradients up to summation order, with a negative, a minimum and a clamped alpha."""
    gen = torch.Generator().manual_seed(3)
    moved = 0.0
    for bits, shrink in [(1, 0.8), (2, 1.0), (3, 0.8), (4, 0.8), (8, 1.0)]:
        x0 = torch.randn(shape, generator=gen) * 1.5 + 0.2
        weights = torch.randn(shape, generator=gen)
        ref = make_quantizer("apot", bits, group, num_samples=N, num_channels=C)
        ref.init_from(x0 * shrink)
        with torch.no_grad():
            ref.alpha[0] = -ref.alpha[0]  # |alpha| is the scale: either sign works
            if ref.num_groups > 2:
                ref.alpha[1] = 1e-6  # exactly the minimum: the gradient still passes
                ref.alpha[-1] = 1e-9  # below it: clamped, no gradient
                ref.center[-1] = -0.0
        ref.fused = False
        fused = make_quantizer("apot", bits, group, num_samples=N, num_channels=C)
        fused.load_state_dict(ref.state_dict())
        assert not fused.uses_fused(x0)  # on the CPU by default: generic (measured faster)
        fused.fused = True
        (y_r, gx_r, gc_r, ga_r, (c_r, l_r)), (y_f, gx_f, gc_f, ga_f, (c_f, l_f)) = (
            _step(q, x0, weights, "center", "alpha") for q in (ref, fused))
        assert np.array_equal(l_r.view(np.uint32), l_f.view(np.uint32))
        differ = y_r.view(torch.int32) != y_f.view(torch.int32)
        same = torch.ones(ref.num_groups, 1, dtype=torch.bool)
        if group == "sample-channel" and len(shape) == 2:
            # One-element groups sit on their centre, where at 8 bits the grid's smallest
            # steps are below float32 resolution: the generic path's rounded midpoints can
            # then pick a level one ulp off, the fused one the exact zero level. Where
            # they differ, the fused value is the nearer one (and so is its gradient's).
            assert ((y_f - x0).abs() <= (y_r - x0).abs())[differ].all()
            same = ~differ.reshape(-1, 1)
        else:
            assert not differ.any(), (bits, int(differ.sum()))
        dec = _decode(c_f.reshape(N, C, -1), l_f, group).reshape(shape)
        assert np.array_equal(dec.view(np.uint32), y_f.numpy().view(np.uint32))
        assert torch.equal(gx_r, gx_f)
        torch.testing.assert_close(gc_f[same], gc_r[same], rtol=1e-5, atol=2e-5)
        torch.testing.assert_close(ga_f[same], ga_r[same], rtol=1e-5, atol=2e-5)
        if ref.num_groups > 2:
            assert ga_f[-1] == 0
            if len(shape) > 2:  # a one-element group sits on its centre: no scale gradient
                assert ga_f[1] != 0
        moved += float(gc_r.abs().sum() + ga_r.abs().sum())
    assert moved > 0  # not a comparison of zeros


def test_fused_apot_zero_level_under_a_negative_zero_centre() -> None:
    # x = 0 lands on the grid's -0 entry; with a -0.0 centre the level would be -0.0 where
    # the exported table holds +0.0 (the codec compares bits).
    q = make_quantizer("apot", 3, "tensor", N, C)
    q.fused = True
    with torch.no_grad():
        q.center.fill_(-0.0)
    y = q(torch.zeros(N, C, 2, 2))
    codes, levels = q.export()
    dec = _decode(codes, levels, "tensor")
    assert np.array_equal(dec.view(np.uint32), y.detach().numpy().view(np.uint32))


@pytest.mark.parametrize("name", ["uniform", "apot", "learned"])
@pytest.mark.parametrize("fused", [True, False])
def test_nan_samples_are_not_exported(name: str, fused: bool) -> None:
    q = make_quantizer(name, 2, "channel", N, C)
    q.fused = fused
    x = torch.randn(N, C, 3, 3)
    q.init_from(x)
    x[1, 2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        q.export(x)
    if fused and name != "learned":  # export() of the last pass checks its samples too
        with torch.no_grad():
            q(x)
        with pytest.raises(ValueError, match="NaN"):
            q.export()


def test_ste_is_identity_for_samples() -> None:
    x = torch.randn(N, C, 4, 4).requires_grad_(True)
    q = make_quantizer("uniform", 4, "channel", N, C)
    q.init_from(x.detach())
    q(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_apot_rcf_alpha_gradient() -> None:
    # APoT: d q / d alpha = Pi(u) - u inside the clipping range, sign(u) outside.
    q = APoTQuantizer(3, "tensor", 1, 1)
    with torch.no_grad():
        q.center.zero_()
        q.alpha.fill_(2.0)
    x = torch.tensor([[[[0.3, -0.9, 5.0, -7.0]]]], requires_grad=True)
    y = q(x)
    y.sum().backward()
    u = x.detach() / 2.0
    pi = y.detach() / 2.0
    inside = u.abs() <= 1
    expect = torch.where(inside, pi - u, torch.sign(u)).sum()
    assert torch.allclose(q.alpha.grad.sum(), expect, atol=1e-6)


def test_apot_grid_shape() -> None:
    for bits in range(1, 9):
        g = apot_grid(bits)
        assert g.numel() == 2**bits and torch.all(g[1:] >= g[:-1])
        assert g.min() == -1 and g.max() == 1
    # APoT levels are dense near zero and sparse near the clipping value.
    g = apot_grid(5)
    pos = g[g > 0]
    assert (pos[1] - pos[0]) < (pos[-1] - pos[-2])


def test_soft_round_keeps_forward_exact() -> None:
    x = torch.randn(N, C, 4, 4).requires_grad_(True)
    q = make_quantizer("uniform", 3, "channel", N, C, soft_round_beta=4.0)
    q.init_from(x.detach())
    y = q(x)
    codes, levels = q.export()
    assert np.array_equal(_decode(codes, levels, "channel"), y.detach().numpy())
    y.sum().backward()
    assert x.grad.abs().sum() > 0 and not torch.equal(x.grad, torch.ones_like(x))


def test_identity_quantizer() -> None:
    x = torch.randn(N, C, 4, 4)
    q = IdentityQuantizer(N, C)
    y = q(x)
    assert y is x
    arr, levels = q.export()
    assert levels is None and arr.dtype == np.float32 and np.array_equal(arr, x.numpy())


def test_unknown_quantizer_and_bits() -> None:
    with pytest.raises(ValueError, match="unknown quantizer"):
        make_quantizer("fancy", 4)
    with pytest.raises(ValueError, match="bits"):
        make_quantizer("uniform", 9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("120KiB", 120 * 1024),
        ("120kib", 120 * 1024),
        ("120KB", 120_000),
        ("1MB", 1_000_000),
        ("1MiB", 1024**2),
        ("2GiB", 2 * 1024**3),
        ("512", 512),
        ("512B", 512),
        (" 64 KiB ", 64 * 1024),
        ("1.5KiB", 1536),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12XB", "-5KB", "0", "1.3B", "KiB", "1e3",
                                  "99999999999999999999999"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)
