"""Fixtures of the training tests (the builders themselves live in builders.py)."""

import pytest
from builders import tiny_config, write_images


@pytest.fixture
def tiny_cfg():
    """``tiny_cfg(tmp_path, stage="autoencoder", **fields)``: see builders.tiny_config."""
    return tiny_config


@pytest.fixture
def tiny_images(tmp_path):
    """Two synthetic 40x48 images in a folder."""
    return write_images(tmp_path / "images")
