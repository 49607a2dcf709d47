"""Checkpoints without pickle: tensors in safetensors files, everything else in JSON.

A checkpoint is a folder (file names and keys: :mod:`codec.format.schema`):
``model.safetensors`` (weights and buffers), ``optim.safetensors`` (optimizer state tensors),
``state.json`` (train config, model config, step, optimizer hyperparameters, metrics). It is
written to a temporary folder and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..format import schema
from ..models.io import widened_tensors
from ..util.files import atomic_write


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict,
    average: torch.nn.Module | None = None,
) -> None:
    """Writes the checkpoint ``folder``: ``model``'s weights, ``optimizer``'s state and the JSON
    ``state`` (plus the optimizer's hyperparameters), replacing the old one as a whole. With
    ``average`` (the weights' moving average, same names) that is the model file every reader
    takes, and ``model``'s own weights go to ``schema.CHECKPOINT_TRAINING`` for resuming."""
    opt = optimizer.state_dict() if optimizer is not None else None
    if opt is not None:
        state = {**state, schema.STATE_PARAM_GROUPS: opt["param_groups"]}

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)

        def weights(m: torch.nn.Module, name: str) -> None:
            save_file({k: v.detach().contiguous().cpu() for k, v in m.state_dict().items()}, str(tmp / name))

        weights(model if average is None else average, schema.CHECKPOINT_MODEL)
        if average is not None:
            weights(model, schema.CHECKPOINT_TRAINING)
        if opt is not None:
            tensors = {
                f"{pid}.{key}": v.detach().contiguous().cpu()
                for pid, s in opt["state"].items()
                for key, v in s.items()
                if torch.is_tensor(v)
            }
            save_file(tensors, str(tmp / schema.CHECKPOINT_OPTIMIZER))
        (tmp / schema.CHECKPOINT_STATE).write_text(json.dumps(state, indent=1))

    atomic_write(folder, write)


def load_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str = "cpu",
) -> dict:
    """Loads the weights training continues from (those the optimizer stepped: with a moving
    average, ``schema.CHECKPOINT_TRAINING``) and the optimizer state in place; returns the JSON
    state."""
    folder = Path(folder)
    state = json.loads((folder / schema.CHECKPOINT_STATE).read_text())
    own = folder / schema.CHECKPOINT_TRAINING
    model.load_state_dict(
        load_file(str(own if own.exists() else folder / schema.CHECKPOINT_MODEL), device=str(device))
    )
    if optimizer is not None and (folder / schema.CHECKPOINT_OPTIMIZER).exists():
        flat = load_file(str(folder / schema.CHECKPOINT_OPTIMIZER), device=str(device))
        per_param: dict[int, dict] = {}
        for name, v in flat.items():
            pid, key = name.split(".", 1)
            per_param.setdefault(int(pid), {})[key] = v
        optimizer.load_state_dict({"state": per_param, "param_groups": state[schema.STATE_PARAM_GROUPS]})
    return state


def warm_start(model: torch.nn.Module, source: str | Path, prefix: str = "") -> tuple[list[str], list[str]]:
    """Copies weights from ``source`` (a checkpoint folder, an exported file, or a codec bundle's
    part under ``prefix``) into ``model`` where names and shapes agree; returns (copied, skipped).

    A submodule is taken whole or not at all: when any of its tensors has another shape (a
    quantizer with another M or K), all of its tensors keep their fresh values, so that for
    instance the codebooks are re-initialized by k-means instead of mixing two codebook sets.
    Private buffers (a last name part starting with ``_``: CompressAI's CDF tables, which
    ``update()`` derives from the parameters) are neither compared nor copied.
    """
    source = Path(source)
    file = source / schema.CHECKPOINT_MODEL if source.is_dir() else source
    loaded = widened_tensors(load_file(str(file)))  # a bundle's int8 realism decoder
    if prefix and any(k.startswith(prefix) for k in loaded):
        loaded = {k[len(prefix) :]: v for k, v in loaded.items() if k.startswith(prefix)}
    own = {k: v for k, v in model.state_dict().items() if not k.rsplit(".", 1)[-1].startswith("_")}

    def owner(name: str) -> str:
        return name.rsplit(".", 1)[0] if "." in name else ""

    bad = {owner(k) for k, v in own.items() if k not in loaded or loaded[k].shape != v.shape}
    copied = [k for k in own if owner(k) not in bad]
    skipped = [k for k in own if owner(k) in bad]
    if not copied:
        raise ValueError(f"--init {source}: no tensor matches this model")
    with torch.no_grad():
        for k in copied:
            own[k].copy_(loaded[k].to(own[k].dtype))
    return copied, skipped
