"""The README's examples run as written (as constriction runs its documentation examples):
every Python block, in order, in one namespace, and every `codec encode|decode|info|truncate`
line of its shell blocks (and `models`, `gallery`), in a scratch folder holding a `photo.png`."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.cli import main
from codec.demo import sample_image_path

README = Path(__file__).resolve().parents[1] / "README.md"
RUN = ("encode", "decode", "info", "truncate", "models", "gallery")


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(\w*)\n(.*?)```", README.read_text(), flags=re.S)


def shell_lines() -> list[str]:
    out = []
    for lang, code in blocks():
        if lang == "bash":
            for line in code.splitlines():
                cmd = line.split("  #")[0].strip()
                if cmd.startswith("codec ") and cmd.split()[1] in RUN:
                    out.append(cmd)
    return out


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CODEC_MODEL", raising=False)
    img = np.asarray(Image.open(sample_image_path()).convert("RGB"))[:128, :192]
    Image.fromarray(img).save(tmp_path / "photo.png")
    return tmp_path


def test_readme_has_examples():
    assert len(shell_lines()) >= 10 and sum(lang == "python" for lang, _ in blocks()) >= 4


def test_shell_examples_run(scratch, capsys):
    for cmd in shell_lines():
        rc = main(shlex.split(cmd)[1:])
        assert rc == 0, (cmd, capsys.readouterr().err)


def test_python_examples_run(scratch):
    namespace: dict = {}
    assert main(["encode", "photo.png", "-o", "photo.pqm"]) == 0  # what the shell block made
    for lang, code in blocks():
        if lang == "python":
            exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
