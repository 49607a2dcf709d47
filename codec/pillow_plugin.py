"""Pillow plugin: after ``import codec``, ``Image.open("x.pqm")`` decodes and
``img.save("x.pqm")`` encodes, with the default model bundle (see :mod:`codec.zoo`).
Decoding happens on first access to the pixels, not on open."""

from __future__ import annotations

from PIL import Image, ImageFile

from . import bitstream


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
            from .zoo import get_codec

            pixels = get_codec().decompress(self._pqm)
            self.im = Image.fromarray(pixels).im
            self._pqm = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from .zoo import get_codec

    fp.write(get_codec().compress(im.convert("RGB")))


def register() -> None:
    Image.register_open(PqmImageFile.format, PqmImageFile, _accept)
    Image.register_save(PqmImageFile.format, _save)
    Image.register_extension(PqmImageFile.format, bitstream.FILE_EXTENSION)
