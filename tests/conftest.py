import json
import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from safetensors.torch import save_file

# Round trips on tens of thousands of symbols: no per-example deadline, a modest count by
# default, more with HYPOTHESIS_PROFILE=long.
settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def layered_bundle(tmp_path_factory):
    """A tiny nested model (M = 6, layers of 1, 1, 2, 2 sub-vectors) as a bundle."""
    from codec.models.io import save_bundle
    from codec.models.layered import LayeredEntropyModel
    from codec.models.mim import MIMConfig
    from codec.models.pqvae import PQVAE, PQVAEConfig

    d = tmp_path_factory.mktemp("layered")
    torch.manual_seed(0)
    acfg = PQVAEConfig(channels=[8, 16], latent_dim=24, M=6, K=16, nested=True)
    ae = PQVAE(acfg)
    ae(torch.rand(2, 3, 32, 32))
    mcfg = MIMConfig(
        M=6, K=16, dim=32, depth=1, heads=2, groups=[1, 1, 2, 2], channel_dim=16, channel_depth=1
    )
    em = LayeredEntropyModel(mcfg)
    with torch.no_grad():
        em.channel.head.weight.normal_()
    from codec.format import schema

    parts = (("ae", ae, schema.KIND_PQVAE, acfg), ("em", em, schema.KIND_ENTROPY, mcfg))
    for name, model, kind, cfg in parts:
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(d / f"{name}.safetensors"),
            metadata={schema.KIND: kind, schema.CONFIG: json.dumps(cfg.to_dict())},
        )
    return save_bundle(d / "nested.safetensors", d / "ae.safetensors", d / "em.safetensors")
