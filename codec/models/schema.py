"""The names of everything persisted: bundle and checkpoint kinds, tensor prefixes and metadata
keys. Writers and readers (models.io, zoo, the training stages, benchmarks) use these, so a
rename happens in one place and old files keep their meaning.

A **bundle** (``kind = codec``: what ``codec export`` writes and the zoo ships) is one
safetensors file: tensors under :data:`AUTOENCODER` / :data:`ENTROPY_MODEL` /
:data:`REALISM_DECODER`, metadata :data:`AUTOENCODER_CONFIG`, :data:`MIM_CONFIG`,
:data:`SCHEDULE` (JSON), the content hash and provenance. An **exported stage** (``kind`` =
pqvae, entropy, realism, baseline) holds one model, its JSON config under :data:`CONFIG`.
A **checkpoint** is a folder (``model.safetensors``, ``optimizer.safetensors``,
``state.json``); ``state.json`` keeps the step, the run's config, the kind and the model
config under :data:`STATE_MODEL_CONFIG` or :data:`STATE_MIM_CONFIG`.
"""

from __future__ import annotations

# kinds (metadata "kind" of files, "kind" in a checkpoint's state.json)
KIND_BUNDLE = "codec"
KIND_PQVAE = "pqvae"
KIND_ENTROPY = "entropy"
KIND_REALISM = "realism"
KIND_BASELINE = "baseline"

# tensor-name prefixes of a bundle's parts
AUTOENCODER = "autoencoder."
ENTROPY_MODEL = "entropy_model."
REALISM_DECODER = "realism_decoder."

# metadata keys
KIND = "kind"
CONFIG = "config"  # an exported stage's model config
AUTOENCODER_CONFIG = "autoencoder_config"
MIM_CONFIG = "mim_config"
SCHEDULE = "schedule"
CONTENT_HASH = "content_sha256"  # SHA-256 over the metadata and every tensor (see models.io)

# checkpoint state.json keys
STATE_MODEL_CONFIG = "model_config"
STATE_MIM_CONFIG = "mim_config"

# the part of a bundle each training stage's model is, for warm starts from bundles
STAGE_PREFIX = {"autoencoder": AUTOENCODER, "entropy": ENTROPY_MODEL}


def part(tensors: dict, prefix: str) -> dict:
    """The tensors under ``prefix``, with the prefix taken off their names."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
