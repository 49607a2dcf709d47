"""Tests for codec.models.discriminator: label model, U-Net discriminator, ILLM losses."""

import pytest
import torch
import torch.nn.functional as F

from codec.models.discriminator import (
    ConditionalUNetDiscriminator,
    LabelModel,
    binary_discriminator_loss,
    binary_generator_loss,
    vq_discriminator_loss,
    vq_generator_loss,
)
from codec.models.pqvae import PQVAE, PQVAEConfig


def tiny_label_model(K=16):
    torch.manual_seed(0)
    vq = PQVAE(PQVAEConfig(channels=[8, 16, 16], latent_dim=8, M=1, K=K))
    vq.train()
    vq(torch.rand(2, 3, 32, 32))  # k-means initializes the codebook from encoder outputs
    return LabelModel(vq)


def test_label_model_is_deterministic_and_batch_independent():
    lm = tiny_label_model()
    x = torch.rand(3, 3, 40, 56)
    labels = lm(x)
    assert labels.shape == (3, 5, 7) and labels.dtype == torch.int64
    assert 0 <= int(labels.min()) and int(labels.max()) < lm.K and lm.stride == 8
    assert torch.equal(labels, lm(x))
    assert torch.equal(labels[1:2], lm(x[1:2]))  # alone = in a batch
    assert len(labels.unique()) > 1
    lm.train()
    assert not lm.vqvae.training and not any(p.requires_grad for p in lm.parameters())


def test_label_model_needs_one_codebook():
    with pytest.raises(ValueError, match="one codebook"):
        LabelModel(PQVAE(PQVAEConfig(channels=[8, 16, 16], latent_dim=8, M=2, K=16)))


@pytest.mark.parametrize("classes", [17, 1])
def test_discriminator_output_shape_and_classes(classes):
    d = ConditionalUNetDiscriminator(
        latent_dim=12, classes=classes, channels=(8, 16, 16, 16), cond_channels=4
    )
    out = d(torch.rand(2, 3, 32, 48), torch.randn(2, 12, 2, 3))
    assert out.shape == (2, classes, 4, 6)
    with pytest.raises(ValueError, match="multiples of 16"):
        d(torch.rand(1, 3, 40, 48), torch.randn(1, 12, 3, 3))


def _logits_for(classes_at, K1, margin):
    """Logits [B, K1, h, w] with ``margin`` on the given class at every location."""
    return margin * F.one_hot(classes_at, K1).permute(0, 3, 1, 2).float()


def test_loss_signs():
    K = 16
    labels = torch.randint(0, K, (2, 4, 6))
    zeros = torch.zeros_like(labels)
    perfect = vq_discriminator_loss(_logits_for(labels + 1, K + 1, 30), _logits_for(zeros, K + 1, 30), labels)
    fooled = vq_discriminator_loss(_logits_for(zeros, K + 1, 30), _logits_for(labels + 1, K + 1, 30), labels)
    assert perfect < 1e-6 and fooled > 50
    # generator: lower when the reconstruction is classified as the original's label
    assert vq_generator_loss(_logits_for(labels + 1, K + 1, 5), labels) < vq_generator_loss(
        _logits_for(zeros, K + 1, 5), labels
    )
    big = torch.full((2, 1, 4, 6), 30.0)
    assert binary_discriminator_loss(big, -big) < 1e-6 < binary_discriminator_loss(-big, big)
    assert binary_generator_loss(big) < binary_generator_loss(-big)
    with pytest.raises(ValueError, match="disagree"):
        vq_generator_loss(torch.zeros(1, K + 1, 4, 4), labels)


def test_discriminator_learns_real_from_blurred():
    """A few Adam steps: the VQ discriminator separates sharp originals (their labels) from
    blurred copies (fake); its loss falls well below the start."""
    torch.manual_seed(0)
    lm = tiny_label_model()
    d = ConditionalUNetDiscriminator(
        latent_dim=4, classes=lm.K + 1, channels=(16, 16, 32, 32), cond_channels=4
    )
    opt = torch.optim.AdamW(d.parameters(), lr=4e-4, betas=(0.5, 0.9))
    x = torch.rand(4, 3, 32, 32)
    blurred = F.avg_pool2d(x, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)
    z = torch.zeros(4, 4, 2, 2)
    labels = lm(x)
    losses = []
    for _ in range(60):
        loss = vq_discriminator_loss(d(x, z), d(blurred, z), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
