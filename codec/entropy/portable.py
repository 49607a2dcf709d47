"""Portable inference of the entropy models: bit-identical logits on every machine.

The C++ extension (csrc/portable.h) evaluates the trained entropy models with float32
arithmetic whose results are fixed by the inputs alone: every sum in one fixed order, no
fused multiply-add, vector lanes across outputs only, threads across rows only, its own
exp/erf/sin/cos. So an encoder and a decoder on different CPUs, instruction sets, thread
counts or BLAS libraries compute the same logits, hence the same range-coder
distributions; torch's own kernels do not (they differ between 1 and 2 threads here).
The logits agree with the torch model's to float tolerance (about 1e-5; tested), and the
torch model stays the one that trains. No torch here: parameters come as numpy arrays
named as in the torch state_dict.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _rangecoder as _rc
from .range_coder import default_threads


def set_parameter(target, name: str, value: np.ndarray) -> None:
    """``target.set(name, value)`` as float32; a float16 array (as bundles store weights) goes
    over as its bits, which the extension widens exactly: no float32 copy is made here."""
    if value.dtype == np.float16:
        target.set_half(name, np.ascontiguousarray(value).view(np.uint16))
    else:
        target.set(name, np.ascontiguousarray(value, dtype=np.float32))


def set_parameters(target, params: Mapping[str, np.ndarray], prefix: str = "") -> None:
    """:func:`set_parameter` of each of ``params`` under ``prefix`` (the prefix taken off)."""
    for name, value in params.items():
        if name.startswith(prefix):
            set_parameter(target, name[len(prefix) :], value)


def _load(target, params: Mapping[str, np.ndarray], prefix: str = "") -> None:
    set_parameters(target, params, prefix)
    target.finalize()  # ValueError naming any parameter that was not given


class PortableTransformer:
    """codec.models.mim.MaskedEntropyModel: ``logits(tokens, known, query)``.

    ``config``: its MIMConfig fields (M, K, dim, depth, decoder_depth, heads, mlp_ratio);
    ``params``: name -> float array, float16 or wider (the state_dict, without ``prefix``).
    """

    def __init__(self, config: Mapping, params: Mapping[str, np.ndarray], prefix: str = "", threads=None):
        c = config
        self.M, self.K = int(c["M"]), int(c["K"])
        self._model = _rc.MaskedTransformer(
            self.M,
            self.K,
            int(c["dim"]),
            int(c["depth"]),
            int(c["decoder_depth"]),
            int(c["heads"]),
            int(c.get("mlp_ratio", 4)),
        )
        _load(self._model, params, prefix)
        self.threads = threads or default_threads()

    def logits(self, tokens: np.ndarray, known: np.ndarray, query: np.ndarray, offset=(0, 0)) -> np.ndarray:
        """float32 [n_query, M, K] from tokens int [M, h, w] (only ``known`` positions read) and
        flat positions ``known`` [n_known], ``query`` [n_query] (int64, row-major)."""
        return self._model.forward(
            np.ascontiguousarray(tokens, dtype=np.int32),
            np.ascontiguousarray(known, dtype=np.int64),
            np.ascontiguousarray(query, dtype=np.int64),
            int(offset[0]),
            int(offset[1]),
            self.threads,
        )


class PortableChannel:
    """codec.models.layered.ChannelContextModel: ``logits(tokens, g)``.

    ``config``: M, K, channel_dim, channel_depth, groups (a MIMConfig's fields)."""

    def __init__(self, config: Mapping, params: Mapping[str, np.ndarray], prefix: str = "", threads=None):
        c = config
        self.groups = [int(g) for g in c["groups"]]
        self._model = _rc.ChannelConv(
            int(c["M"]), int(c["K"]), int(c["channel_dim"]), int(c["channel_depth"]), self.groups
        )
        _load(self._model, params, prefix)
        self.threads = threads or default_threads()

    def logits(self, tokens: np.ndarray, g: int) -> np.ndarray:
        """float32 [h*w, size_g, K] of group g >= 1 from tokens int [>= first sub-vector of g, h, w]."""
        return self._model.forward(np.ascontiguousarray(tokens, dtype=np.int32), int(g), self.threads)
