"""The names of everything persisted: bundle and checkpoint kinds, file names, tensor prefixes,
metadata keys and checkpoint state keys. Writers and readers (models.io, zoo, the training
stages and loop, benchmarks) use these, so a rename happens in one place and old files keep
their meaning.

A **bundle** (``kind = codec``: what ``codec export`` writes and the zoo ships) is one
safetensors file: tensors under :data:`AUTOENCODER` / :data:`ENTROPY_MODEL` /
:data:`REALISM_DECODER`, metadata :data:`AUTOENCODER_CONFIG`, :data:`MIM_CONFIG`,
:data:`SCHEDULE` (JSON), the content hash and provenance (:data:`COMMAND`, each part's
:data:`PROVENANCE` under :data:`AUTOENCODER_PROVENANCE` / :data:`ENTROPY_PROVENANCE`, the
realism decoder's :data:`REALISM_PROVENANCE`). An **exported stage** (``kind`` = pqvae,
entropy, realism, baseline) holds one model, its JSON config under :data:`CONFIG` and its
:data:`PROVENANCE`. A **checkpoint** is a folder (:data:`CHECKPOINT_MODEL`,
:data:`CHECKPOINT_OPTIMIZER`, :data:`CHECKPOINT_STATE`); ``state.json`` keeps the step, the
run's config, the kind and the model config under :data:`STATE_MODEL_CONFIG` or
:data:`STATE_MIM_CONFIG`, and each stage's own keys (``STATE_*`` below).
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
REALISM_CHECKPOINT_DECODER = "decoder."  # the decoder's tensors in a realism checkpoint's model file
# a bundle's int8 tensor NAME comes with float32 NAME + INT8_SCALE, one scale per index of its first
# axis: the weight is NAME * scale (codec.format.bundle.widened). The realism decoder is stored so.
INT8_SCALE = ".int8_scale"

# the files of a checkpoint folder (checkpoints on disk use these names: never rename them)
CHECKPOINT_MODEL = "model.safetensors"  # weights and buffers
CHECKPOINT_OPTIMIZER = "optim.safetensors"  # optimizer state tensors, named "<param id>.<key>"
CHECKPOINT_STATE = "state.json"  # everything else, as JSON (the STATE_* keys)
# with --average-weights: CHECKPOINT_MODEL holds the weights' moving average (what evaluations,
# exports and warm starts read) and CHECKPOINT_TRAINING the weights the optimizer steps (resume)
CHECKPOINT_TRAINING = "training.safetensors"

# metadata keys
KIND = "kind"
CONFIG = "config"  # an exported stage's model config
AUTOENCODER_CONFIG = "autoencoder_config"
MIM_CONFIG = "mim_config"
SCHEDULE = "schedule"
CONTENT_HASH = "content_sha256"  # SHA-256 over the metadata and every tensor (see models.io)
STEP = "step"  # provenance: training steps (a decimal string)
METRICS = "metrics"  # provenance: the last evaluation (JSON)
COMMAND = "command"  # provenance: the command line that trained it
PROVENANCE = (STEP, METRICS, COMMAND)  # an exported stage's provenance keys
AUTOENCODER_PROVENANCE = "autoencoder_"  # a bundle: the autoencoder's provenance keys, prefixed
ENTROPY_PROVENANCE = "entropy_model_"  # a bundle: the entropy model's provenance keys, prefixed
REALISM_DISCRIMINATOR = "realism_discriminator"  # a bundle: the realism run's discriminator
REALISM_STEP = "realism_step"
REALISM_METRICS = "realism_metrics"
REALISM_PROVENANCE = (REALISM_DISCRIMINATOR, REALISM_STEP, REALISM_METRICS)
# a bundle, optional: JSON list of latent_dim positive floats, how the encoder weighs each latent
# channel's squared error when it chooses codes (codec.engine.effort.latent_weights); the
# decoder and the model id do not read it
LATENT_WEIGHTS = "latent_weights"
# a bundle with a realism decoder, optional: JSON list of M numbers in [0, 1], entry m - 1 the
# share of the realism decoder's image in what ``decoder="realism"`` shows for a file of m codes
# per position (the rest: the fidelity decoder's image; codec.render.realism); the model id does
# not read it
REALISM_STRENGTH = "realism_strength"

# checkpoint state.json keys
STATE_STEP = "step"  # steps done (an int)
STATE_CONFIG = "config"  # the run's config (RunConfig.to_dict())
STATE_METRICS = "metrics"  # the last evaluation, or null
STATE_LOSS_EMA = "loss_ema"  # the spike guard's running loss
STATE_PARAM_GROUPS = "param_groups"  # the optimizer's hyperparameters
STATE_MODEL_CONFIG = "model_config"
STATE_MIM_CONFIG = "mim_config"
STATE_AUTOENCODER = "autoencoder"  # entropy and realism runs: the autoencoder they were given
STATE_DISCRIMINATOR = "discriminator"  # realism runs: vq or binary
STATE_CLASSES = "classes"  # realism runs: the discriminator's classes
STATE_LABEL_MODEL = "label_model"  # realism runs: the vq discriminator's label model
STATE_ARCH = "arch"  # baseline runs: the CompressAI architecture
STATE_N = "N"  # baseline runs: its channels N and M
STATE_M = "M"
STATE_LAMBDA = "lambda"  # baseline runs: the rate-distortion trade-off

# the part of a bundle each training stage's model is, for warm starts from bundles
# (a realism run's model holds ``decoder.`` and ``discriminator.``: the bundle's realism decoder
# continues its decoder, the discriminator starts fresh)
STAGE_PREFIX = {
    "autoencoder": AUTOENCODER,
    "entropy": ENTROPY_MODEL,
    "realism": REALISM_DECODER.removesuffix(REALISM_CHECKPOINT_DECODER),
}


def part(tensors: dict, prefix: str) -> dict:
    """The tensors under ``prefix``, with the prefix taken off their names."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
