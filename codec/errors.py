"""The one exception users need to catch."""


class CodecError(OSError):
    """A bitstream is corrupt, truncated, of an unknown version, made with another model,
    or describes an image that is refused (too large); the message says which.

    An OSError, as Pillow's errors for damaged files are: ``Image.open("x.pqm").load()``
    callers catch it with their ``except OSError``."""
