"""Tests for codec.models.pqvae (tiny configs, seconds); its training: tests/train/."""

import pytest
import torch

from codec.models.pqvae import PQVAE, PQVAEConfig, ResBlock

TINY = PQVAEConfig(channels=[8, 16], latent_dim=16, M=2, K=16)


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (64, 48), (5, 100)])
def test_odd_image_sizes(size):
    torch.manual_seed(0)
    m = PQVAE(TINY).eval()
    x = torch.rand(2, 3, *size)
    idx = m.encode(x)
    assert idx.shape == (2, 2, -(-size[0] // 4), -(-size[1] // 4))
    y = m.decode(idx, size)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    x_hat, _, _ = m(x)
    assert x_hat.shape == x.shape


def test_decode_of_encode_matches_forward_in_eval():
    torch.manual_seed(0)
    m = PQVAE(TINY)
    m(torch.rand(2, 3, 16, 16))  # init codebooks
    m.eval()
    x = torch.rand(1, 3, 16, 16)
    x_hat, idx, _ = m(x)
    torch.testing.assert_close(m.decode(idx, (16, 16)), x_hat.clamp(0, 1))


def nested_model(M=4):
    torch.manual_seed(0)
    m = PQVAE(PQVAEConfig(channels=[8, 16], latent_dim=4 * M, M=M, K=16, nested=True))
    m.train()
    m(torch.rand(2, 3, 32, 32))  # codebooks from data
    with torch.no_grad():
        m.fill.normal_()
    return m.eval()


def test_nested_prefix_decodes_with_the_fill():
    m = nested_model()
    x = torch.rand(1, 3, 32, 40)
    idx = m.encode(x)
    for k in (1, 2, 3):
        by_prefix = m.decode(idx[:, :k], (32, 40))
        # the same as the per-position count map, and as the forward pass with prefix k
        assert torch.equal(by_prefix, m.decode(idx, (32, 40), counts=torch.full((1, 8, 10), k)))
        with torch.no_grad():
            fwd = m(x, prefix=torch.tensor([k]))[0].clamp(0, 1)
        assert torch.allclose(fwd, by_prefix, atol=1e-5)
        # tokens past the prefix are never read
        other = idx.clone()
        other[:, k:] = (other[:, k:] + 1) % 16
        assert torch.equal(m.decode(other[:, :k], (32, 40)), by_prefix)
    assert not torch.equal(m.decode(idx[:, :1], (32, 40)), m.decode(idx, (32, 40)))
    with pytest.raises(ValueError):
        m.decode(idx[:, :0], (32, 40))


def test_plain_model_refuses_prefixes():
    m = PQVAE(PQVAEConfig(channels=[8, 16], latent_dim=16, M=4, K=16))
    with pytest.raises(ValueError, match="nested"):
        m(torch.rand(1, 3, 16, 16), prefix=torch.tensor([2]))
    with pytest.raises(ValueError, match="not nested"):
        m.decode(torch.zeros(1, 2, 4, 4, dtype=torch.long), (16, 16))
    assert not hasattr(m, "fill")


def test_random_prefix_covers_every_rate():
    from codec.models.pqvae import random_prefix

    c = random_prefix(4000, 6, 3, 3, torch.Generator().manual_seed(0))
    assert c.shape == (4000, 3, 3) and int(c.min()) == 1 and int(c.max()) == 6
    mixed = (c.flatten(1).max(1).values != c.flatten(1).min(1).values).float().mean()
    assert 0.5 < float(mixed) < 1.0  # most images mix two counts (fractional prefixes)
    assert abs(float(c.float().mean()) - 3.5) < 0.1  # r ~ U(1, 6): mean 3.5


def test_random_prefix_log_uniform_favours_low_rates():
    from codec.models.pqvae import random_prefix

    c = random_prefix(4000, 32, 2, 2, torch.Generator().manual_seed(0), log_uniform=True)
    assert int(c.min()) == 1 and int(c.max()) == 32
    per_image = c.float().mean((1, 2))
    assert abs(float((per_image <= 32**0.5).float().mean()) - 0.5) < 0.03  # median rate sqrt(M)


def test_stage_blocks():
    cfg = PQVAEConfig(channels=[8, 16, 24], blocks=[1, 0, 2])
    assert cfg.stage_blocks == [1, 0, 2]
    m = PQVAE(cfg)
    n = sum(isinstance(layer, ResBlock) for layer in m.decoder.net)
    assert n == 3
    with pytest.raises(ValueError, match="one count per stage"):
        _ = PQVAEConfig(channels=[8, 16], blocks=[1, 2, 3]).stage_blocks


def test_transform_model_starts_as_the_linear_transform():
    """With a complete orthonormal basis and zero nonlinear branches, an untrained transform
    model reconstructs its unquantized input exactly (up to float error)."""
    torch.manual_seed(0)
    cfg = PQVAEConfig(channels=[8, 16], latent_dim=48, M=4, K=16, transform=True)
    m = PQVAE(cfg)
    basis = torch.linalg.qr(torch.randn(48, 48))[0]  # orthonormal rows, 3*4*4 = 48 dims
    m.init_transform(basis, torch.linspace(2, 0.1, 48))
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        y, _, _ = m(x, quantize=False)
        patch = x[:, :, :4, :4].reshape(2, 48)
        torch.testing.assert_close(m.encoder(x)[:, :, 0, 0], patch @ basis.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_residual_nested_model_fills_groups_without_codes():
    torch.manual_seed(0)
    cfg = PQVAEConfig(
        channels=[8, 16], latent_dim=24, M=4, K=16, nested=True, groups=6, code_groups=[0, 1, 0, 2]
    )
    m = PQVAE(cfg)
    m.train()
    m(torch.rand(2, 3, 32, 32))
    with torch.no_grad():
        m.fill.normal_()
    m.eval()
    x = torch.rand(1, 3, 16, 24)
    idx = m.encode(x)
    z = m.latent(idx)  # full rate: groups 3-5 have no code and take the fill
    torch.testing.assert_close(z[0, 12:, 1, 2], m.fill[3:].reshape(-1))
    for k in (1, 2, 3, 4):
        with torch.no_grad():
            fwd = m(x, prefix=torch.tensor([k]))[0].clamp(0, 1)
        torch.testing.assert_close(fwd, m.decode(idx[:, :k], (16, 24)), atol=1e-5, rtol=0)
    # the forward pass at the full rate (no prefix) also takes the fill
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0].clamp(0, 1), m.decode(idx, (16, 24)), atol=1e-5, rtol=0)
