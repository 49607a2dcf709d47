"""Pillow plugin: after ``import codec``, ``Image.open("x.pqm")`` decodes and
``img.save("x.pqm")`` encodes, with the default model bundle (see :mod:`codec.engine.registry`).
Decoding happens on first access to the pixels, not on open.

Saving to a path: Pillow opens (and so truncates) the file before any format plugin runs,
and leaves it behind if the plugin fails (documented in ``Image.save``; its own PNG writer
does the same). Where an existing file must survive a failed save, save to a ``BytesIO``
or use ``codec.compress`` / ``codec encode``, which write nothing until the file is whole."""

from __future__ import annotations

from PIL import Image, ImageFile

from .format import bitstream
from .format.checks import RATE_ARGS


def _accept(prefix: bytes) -> bool:
    return prefix[:3] == bitstream.MAGIC


class PqmImageFile(ImageFile.ImageFile):
    format = "PQM"
    format_description = "codec learned image codec (.pqm)"

    def _open(self) -> None:
        data = self.fp.read()
        if not _accept(data):
            raise SyntaxError("not a .pqm file")
        header, _ = bitstream.unpack(data)  # CodecError with the reason for a damaged file
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self._pqm = data
        self.tile = []

    def load(self):
        if self._pqm is not None:
            from .engine.loading import decoder_for_file

            pixels = decoder_for_file(self._pqm).decompress(self._pqm)  # the file's own model
            self.im = Image.fromarray(pixels).im
            self._pqm = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    """``img.save("x.pqm", bpp=0.2)``: the keyword arguments of :func:`codec.compress`
    (``model``, ``bpp``, ``size``, ``quality``, ``m``, ``effort``), checked by the same rules
    (:func:`codec.format.checks.checked_rate`: ValueError for several rates or an invalid one)."""
    from .simple import compress

    info = im.encoderinfo
    kwargs = {k: info[k] for k in (*RATE_ARGS, "effort") if info.get(k) is not None}
    # The image as it is: compress converts it as for any caller (16-bit and float modes
    # scaled, EXIF orientation, ICC profile); im.convert("RGB") would clip 16-bit to white.
    fp.write(compress(im, info.get("model"), **kwargs))


def register() -> None:
    Image.register_open(PqmImageFile.format, PqmImageFile, _accept)
    Image.register_save(PqmImageFile.format, _save)
    Image.register_extension(PqmImageFile.format, bitstream.FILE_EXTENSION)
