"""The package's layers point one way: no import cycles (counting imports inside functions),
no module importing a higher layer, and the command line's start-up free of torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "codec"

# Lowest first. Data flow: image -> encoder -> quantizer -> tokens -> entropy model -> range
# coder -> bytes; a module may import its own layer or lower ones.
LAYERS = [
    [
        "codec.errors",
        "codec.checks",
        "codec.hardware",
        "codec.imageio",
        "codec.metrics",
        "codec.files",
        "codec.models.schema",
    ],
    [
        "codec.entropy",
        "codec.entropy.schedule",
        "codec.entropy.range_coder",
        "codec.entropy.portable",
        "codec.render",
        "codec.render.portable",
    ],
    ["codec.bitstream"],
    ["codec.tiling", "codec.token_coding", "codec.render.latent", "codec.bundle"],
    ["codec.decoding"],
    [
        "codec.models.quantizer",
        "codec.models.pqvae",
        "codec.models.mim",
        "codec.models.layered",
    ],
    [
        "codec.models.discriminator",
        "codec.models.baseline",
        "codec.models.io",
        "codec.effort",
    ],
    ["codec.api"],
    ["codec.layered_codec"],
    ["codec.zoo"],
    ["codec", "codec.simple", "codec.pillow_plugin", "codec.classical", "codec.transforms", "codec.demo"],
    ["codec.train", "codec.train.*", "codec.bench", "codec.bench.*"],
    ["codec.cli", "codec.__main__"],
]


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = []
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:
                    targets.append(sub)
                elif not (base == "codec" and (a.name.startswith("_") or a.name == "__version__")):
                    targets.append(base)  # a name from a module (not the compiled _rangecoder)
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("codec") and t != name:
                found.add(t)
    return found


def layer(name: str) -> int:
    for i, names in enumerate(LAYERS):
        for pattern in names:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return i
    raise AssertionError(f"{name} has no layer in tests/test_imports.py: add it")


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    wrong = [f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps if layer(b) > layer(a)]
    assert not wrong, "imports of a higher layer: " + ", ".join(sorted(wrong))


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])


def test_the_detector_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks can fail: a two-module package importing each other upward is caught."""
    pkg = tmp_path / "codec"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("def f():\n    from .cli import main\n")
    (pkg / "cli.py").write_text("from .errors import f\n")
    known = {"codec": pkg / "__init__.py", "codec.errors": pkg / "errors.py", "codec.cli": pkg / "cli.py"}
    assert imports("codec.errors", known["codec.errors"], known) == {"codec.cli"}
    assert imports("codec.cli", known["codec.cli"], known) == {"codec.errors"}
    assert layer("codec.cli") > layer("codec.errors")


@pytest.mark.parametrize("module", ["codec", "codec.cli", "codec.bitstream", "codec.zoo", "codec.simple"])
def test_light_modules_import_alone_without_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
