"""Shipped weights: fp16 safetensors with the model config in the file's metadata."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .pqvae import PQVAE, PQVAEConfig


def export_checkpoint(checkpoint: str | Path, output: str | Path, command: str = "") -> Path:
    """Writes a training checkpoint's model as fp16 safetensors (+ config, step, metrics)."""
    checkpoint, output = Path(checkpoint), Path(output)
    state = json.loads((checkpoint / "state.json").read_text())
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    meta = {
        "kind": "pqvae",
        "config": json.dumps(state["model_config"]),
        "step": str(state["step"]),
        "metrics": json.dumps(state.get("metrics")),
        "command": command,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    save_file(half, str(tmp), metadata=meta)
    tmp.rename(output)
    return output


def load_pqvae(path: str | Path, device: str | torch.device = "cpu") -> PQVAE:
    """A PQ-VAE from exported (fp16) or checkpoint safetensors; float32, eval mode."""
    path = Path(path)
    if path.is_dir():  # a training checkpoint folder
        cfg = json.loads((path / "state.json").read_text())["model_config"]
        path = path / "model.safetensors"
    else:
        with safe_open(str(path), "pt") as f:
            cfg = json.loads(f.metadata()["config"])
    model = PQVAE(PQVAEConfig(**cfg))
    with safe_open(str(path), "pt") as f:
        model.load_state_dict(
            {
                k: f.get_tensor(k).float() if f.get_tensor(k).is_floating_point() else f.get_tensor(k)
                for k in f.keys()
            }
        )
    return model.to(device).eval()


def model_id(path: str | Path) -> bytes:
    """4-byte model id written into .pqm headers: the start of the file's SHA-256."""
    return hashlib.sha256(Path(path).read_bytes()).digest()[:4]
