"""The package's layers point one way: no import cycles (counting imports inside functions),
no module importing a higher layer, and the command line's start-up free of torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "codec"

# Lowest first, one folder per layer (``codec.x.*``: the package ``codec.x`` and everything in
# it). Data flow: image -> encoder -> quantizer -> tokens -> entropy model -> range coder ->
# bytes; a module may import its own layer or lower ones.
LAYERS = [
    ["codec.errors"],
    ["codec.util.*"],  # files, hardware, imageio, metrics
    ["codec.format.*"],  # bitstream, schema, bundle, checks
    ["codec.entropy.*"],  # the range coder (and the compiled extension), schedule, portable, token_coding
    ["codec.render.*"],  # tokens -> latent -> pixels without torch
    ["codec.models.*"],  # torch modules
    ["codec.engine.*"],  # images <-> files: a stack, see STACKS
    ["codec", "codec.simple", "codec.pillow_plugin", "codec.classical", "codec.transforms", "codec.demo"],
    ["codec.train.*", "codec.bench.*"],
    ["codec.cli", "codec.__main__"],
]

# Folders that are a stack: their modules, lowest first, each importing only lower ones (the
# torch-free decoder below the torch codecs, the loading of codecs on top).
STACKS = {
    "codec.engine.*": [
        ["codec.engine", "codec.engine.tiling", "codec.engine.verified"],
        ["codec.engine.decoding", "codec.engine.registry"],
        ["codec.engine.effort"],
        ["codec.engine.api"],
        ["codec.engine.layered_codec"],
        ["codec.engine.loading"],
    ],
}

# Compiled modules: they import nothing of the package; their layer is their folder's.
EXTENSIONS = ["codec.entropy._rangecoder"]


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out | dict.fromkeys(EXTENSIONS)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its source."""
    if path is None:  # a compiled extension
        return set()
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
                elif not (base == "codec" and a.name == "__version__"):
                    targets.append(base)  # a name from a module
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t.startswith("codec") and t != name:
                found.add(t)
    return found


def matches(name: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return name == pattern[:-2] or name.startswith(pattern[:-1])
    return name == pattern


def layer(name: str) -> tuple[int, int]:
    """(the layer of ``name``'s folder, its place in that folder's stack; 0 if not a stack)."""
    for i, names in enumerate(LAYERS):
        for pattern in names:
            if matches(name, pattern):
                stack = STACKS.get(pattern)
                if stack is None:
                    return i, 0
                for j, members in enumerate(stack):
                    if name in members:
                        return i, j
                raise AssertionError(f"{name} has no place in the {pattern} stack of tests/test_imports.py")
    raise AssertionError(f"{name} has no layer in tests/test_imports.py: add it")


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def upward(graph: dict[str, set[str]]) -> list[str]:
    """The imports of a higher layer (or of a higher place in a folder's stack) in ``graph``."""
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer(b) > layer(a))


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    wrong = upward(GRAPH)
    assert not wrong, "imports of a higher layer: " + ", ".join(wrong)


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
    assert upward({n: imports(n, f, known) for n, f in known.items()}) == ["codec.errors -> codec.cli"]
    # a folder's module importing a higher folder's, by a relative import
    for folder in ("format", "engine"):
        (pkg / folder).mkdir()
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "format" / "bitstream.py").write_text("from ..engine.api import ImageCodec\n")
    (pkg / "engine" / "api.py").write_text("from ..format import bitstream\n")
    low, high = "codec.format.bitstream", "codec.engine.api"
    known = {low: pkg / "format" / "bitstream.py", high: pkg / "engine" / "api.py"}
    graph = {n: imports(n, f, known) for n, f in known.items()}
    assert graph == {low: {high}, high: {low}}
    assert upward(graph) == ["codec.format.bitstream -> codec.engine.api"]


@pytest.mark.parametrize(
    "low, high",
    [
        ("codec.util.files", "codec.format.bitstream"),
        ("codec.format.bitstream", "codec.entropy.token_coding"),
        ("codec.entropy.range_coder", "codec.render.portable"),
        ("codec.render.latent", "codec.models.pqvae"),
        ("codec.models.io", "codec.engine.tiling"),
        ("codec.engine.decoding", "codec.engine.api"),  # inside the engine's stack
        ("codec.engine.layered_codec", "codec.engine.loading"),
        ("codec.engine.loading", "codec.simple"),
    ],
)
def test_the_table_orders_the_folders_and_the_stack(low, high):
    """An import of ``high`` from ``low`` would be reported; the other way is allowed."""
    assert upward({low: {high}}) == [f"{low} -> {high}"]
    assert upward({high: {low}}) == []


def test_the_extension_lies_in_the_coding_layer():
    """CMakeLists installs the compiled coder under codec/entropy, next to its wrapper."""
    from codec.entropy import _rangecoder

    assert Path(_rangecoder.__file__).parent.name == "entropy"
    assert "codec.entropy._rangecoder" in GRAPH["codec.entropy.range_coder"]
    assert "codec.entropy._rangecoder" in GRAPH["codec.render.portable"]


@pytest.mark.parametrize(
    "module",
    [
        "codec",
        "codec.cli",
        "codec.format.bitstream",
        "codec.engine.decoding",
        "codec.engine.registry",
        "codec.engine.loading",
        "codec.simple",
    ],
)
def test_light_modules_import_alone_without_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
