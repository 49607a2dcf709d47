"""Refreshes the SHA-256, size and model id of every entry of codec/weights/zoo.json from
its file (after a model is re-exported), and lists files in codec/weights/ that have no entry.

    python bench/zoo_manifest.py
"""

from __future__ import annotations

import json

from codec.models.io import model_id
from codec.zoo import MANIFEST, sha256_file, weights_dir


def main() -> None:
    path = weights_dir() / MANIFEST
    doc = json.loads(path.read_text())
    for name, entry in doc["models"].items():
        f = weights_dir() / entry["file"]
        entry["sha256"], entry["bytes"] = sha256_file(f), f.stat().st_size
        entry["model_id"] = model_id(f).hex()  # what .pqm headers name: decoders find the model
        print(f"{name:24s} {entry['bytes'] / 1e6:6.2f} MB  {entry['sha256'][:16]}")
    files = {e["file"] for e in doc["models"].values()}
    for f in sorted(weights_dir().glob("*.safetensors")):
        if f.name not in files:
            print(f"no entry for {f.name}")
    total = sum(e["bytes"] for e in doc["models"].values())
    print(f"total {total / 1e6:.2f} MB")
    path.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
