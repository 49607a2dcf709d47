"""Refreshes the SHA-256, size and model id of every entry of codec/weights/zoo.json from
its file (after a model is re-exported), and lists files in codec/weights/ that have no entry.

When a file's model id differs from the one its entry recorded (the model was re-exported,
e.g. after more training), the old id is listed under ``retired`` with the old hash, the
description and Kodak figures the entry had, so decoding a file made with the old weights
says which weights it needs instead of failing on an unknown model.

    python bench/zoo_manifest.py [--date YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import datetime
import json

from codec.engine.registry import MANIFEST, weights_dir
from codec.engine.verified import sha256_file
from codec.models.io import model_id


def retire(doc: dict, name: str, old: dict, new_id: str, date: str) -> None:
    """Adds ``old`` (an entry of ``doc["models"]`` before its file changed) to ``doc["retired"]``."""
    doc.setdefault("retired", {})[old["model_id"]] = {
        "name": name,
        "retired": date,
        "replacement": f"`{name}` holds newer weights of the same recipe now (model id {new_id}); ",
        "file": old["file"],
        "sha256": old["sha256"],
        "description": old.get("description", ""),
        **({"kodak": old["kodak"]} if "kodak" in old else {}),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--date", default=datetime.date.today().isoformat(), help="retirement date of replaced ids"
    )
    args = ap.parse_args(argv)
    path = weights_dir() / MANIFEST
    doc = json.loads(path.read_text())
    for name, entry in doc["models"].items():
        f = weights_dir() / entry["file"]
        old = dict(entry)
        entry["sha256"], entry["bytes"] = sha256_file(f), f.stat().st_size
        entry["model_id"] = model_id(f).hex()  # what .pqm headers name: decoders find the model
        if old.get("model_id") and old["model_id"] != entry["model_id"]:
            retire(doc, name, old, entry["model_id"], args.date)
            print(
                f"{name}: model id {old['model_id']} -> {entry['model_id']} (the old id is listed as retired)"
            )
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
