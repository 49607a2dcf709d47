"""Tests for codec.models.quantizer.ProductQuantizer."""

import pytest
import torch

from codec.models.quantizer import ProductQuantizer, greedy_code_order


def make(M=4, K=16, dim=32, **kw):
    torch.manual_seed(0)
    return ProductQuantizer(dim, M, K, **kw)


def test_indices_in_range_and_shapes():
    q = make()
    z = torch.randn(3, 32, 5, 7)
    z_q, idx, stats = q(z)
    assert z_q.shape == z.shape and idx.shape == (3, 4, 5, 7)
    assert idx.dtype == torch.int64 and idx.min() >= 0 and idx.max() < 16
    assert stats["perplexity"].shape == (4,) and stats["commit_loss"] >= 0


def test_codes_from_indices_reproduces_quantized_latent():
    q = make()
    q(torch.randn(4, 32, 6, 6))  # training step: initialises and updates codebooks
    q.eval()
    z = torch.randn(2, 32, 3, 9)
    z_q, idx, _ = q(z)
    torch.testing.assert_close(q.codes_from_indices(idx), z_q, rtol=0, atol=0)
    # and each sub-vector is its nearest codeword
    sub = z.reshape(2, 4, 8, 3, 9)
    for m in range(4):
        d = ((sub[:, m].permute(0, 2, 3, 1).unsqueeze(-2) - q.codebooks[m]) ** 2).sum(-1)
        assert torch.equal(d.argmin(-1), idx[:, m])


def test_straight_through_gradient():
    q = make()
    z = torch.randn(2, 32, 4, 4, requires_grad=True)
    z_q, _, stats = q(z)
    (z_q.sum() + stats["commit_loss"]).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_ema_moves_codewords_toward_assigned_vectors():
    q = make(M=1, K=4, dim=2, decay=0.5, restart_threshold=0.0)
    q(torch.randn(1, 2, 8, 8))  # k-means init
    target = torch.tensor([5.0, -3.0])
    z = target.view(1, 2, 1, 1).expand(1, 2, 8, 8).contiguous()
    _, idx, _ = q(z)
    k = int(idx[0, 0, 0, 0])
    before = (q.codebooks[0, k] - target).norm()
    for _ in range(5):
        q(z)
    after = (q.codebooks[0, k] - target).norm()
    assert after < 0.1 * before


def test_dead_codes_are_restarted():
    q = make(M=2, K=8, dim=4, decay=0.5, restart_threshold=0.5)
    q(torch.randn(2, 4, 8, 8))
    q.codebooks[:, 3] = 1e6  # unreachable codeword: never assigned, its usage decays
    q.ema_sum[:, 3] = 1e6
    q.ema_count[:, 3] = 1.0
    for _ in range(3):  # usage 1 -> 0.5 -> 0.25: restarted
        q(torch.randn(2, 4, 8, 8))
    assert q.codebooks[:, 3].abs().max() < 100  # replaced by an encoder output


def test_m1_is_a_plain_vq():
    q = make(M=1, K=32, dim=8)
    z_q, idx, _ = q(torch.randn(2, 8, 4, 4))
    assert idx.shape == (2, 1, 4, 4)


def test_usage_perplexity_bounds():
    q = make()
    q(torch.randn(8, 32, 8, 8))
    u = q.usage()
    assert u.shape == (4,) and (u >= 1).all() and (u <= 16 + 1e-4).all()


def test_indices_in_chunks_are_the_nearest_codewords():
    import torch

    from codec.models.quantizer import ProductQuantizer

    torch.manual_seed(0)
    q = ProductQuantizer(dim=12, M=3, K=16).eval()
    z = torch.randn(2, 12, 5, 7)
    assert torch.equal(q.indices(z, chunk=4), q(z)[1])


# -- product-residual quantization -------------------------------------------------------


def residual_quantizer(code_groups=(0, 0, 1, 0, 1), G=3, K=8, dim=12):
    torch.manual_seed(0)
    q = ProductQuantizer(dim, len(code_groups), K, code_groups=list(code_groups), groups=G)
    q(torch.randn(4, dim, 8, 8) * torch.linspace(3, 0.1, dim)[None, :, None, None])  # k-means init
    return q.eval()


def test_residual_codes_refine_their_group():
    q = residual_quantizer()
    z = torch.randn(2, 12, 5, 6) * torch.linspace(3, 0.1, 12)[None, :, None, None]
    z_q, idx, stats = q(z)
    torch.testing.assert_close(q.codes_from_indices(idx), z_q, rtol=0, atol=0)
    # code j quantizes what the earlier codes of its group left: recompute stage by stage
    left = z.reshape(2, 3, 4, 5, 6).permute(1, 0, 3, 4, 2).clone()  # [G, B, h, w, d]
    for j, g in enumerate(q.code_groups):
        d = ((left[g].unsqueeze(-2) - q.codebooks[j]) ** 2).sum(-1)
        assert torch.equal(d.argmin(-1), idx[:, j])
        left[g] = left[g] - q.codebooks[j][idx[:, j]]
    # more codes, less error (on average: every stage is a k-means codebook of the residuals)
    errs = []
    for m in range(1, 6):
        zm, has = q.dequantize(idx[:, :m])
        errs.append(float(((zm - z) ** 2).mean()))
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    # group 2 never has a code: at every prefix it is zero and reported absent
    zm, has = q.dequantize(idx)
    assert has is not None and not has[:, 2].any() and has[:, :2].all()
    assert torch.equal(zm[:, 8:], torch.zeros_like(zm[:, 8:]))
    assert "has_code" in stats  # the forward pass says so too


def test_residual_prefix_counts_per_position():
    q = residual_quantizer()
    z = torch.randn(1, 12, 3, 4)
    _, idx, _ = q(z)
    counts = torch.tensor([[[1, 2, 3, 5]] * 3])
    zc, has = q.dequantize(idx, counts)
    for y in range(3):
        for x in range(4):
            n = int(counts[0, y, x])
            want, _ = q.dequantize(idx[:, :n, y : y + 1, x : x + 1])
            torch.testing.assert_close(zc[:, :, y : y + 1, x : x + 1], want, rtol=0, atol=1e-6)
    # with one code only group 0 is present; with 3, groups 0 and 1
    assert has[0, :, 0, 0].tolist() == [True, False, False]
    assert has[0, :, 0, 2].tolist() == [True, True, False]
    z_fwd, _, stats = q(z, counts)
    torch.testing.assert_close(z_fwd, zc, rtol=0, atol=1e-6)
    assert torch.equal(stats["has_code"], has)


def test_bad_code_groups_are_refused():
    with pytest.raises(ValueError, match="code_groups"):
        ProductQuantizer(12, 3, 8, code_groups=[0, 3, 1], groups=3)
    with pytest.raises(ValueError, match="divisible"):
        ProductQuantizer(12, 3, 8, code_groups=[0, 1, 4], groups=5)


def test_greedy_order_codes_where_the_error_is():
    torch.manual_seed(0)
    # group 0 has 100x the variance of group 1, group 2 is empty: the first codes go to group 0,
    # at most max_stages of them, and group 2 never gets one
    coefs = torch.cat([torch.randn(4000, 4) * 10, torch.randn(4000, 4), torch.zeros(4000, 4)], 1)
    order = greedy_code_order(coefs, groups=3, M=5, K=8, max_stages=3)
    assert order[0] == 0 and order.count(0) == 3 and 2 not in order and len(order) == 5
