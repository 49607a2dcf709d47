"""The one exception users need to catch."""


class CodecError(Exception):
    """A bitstream is corrupt, truncated, of an unknown version, made with another model,
    or describes an image that is refused (too large); the message says which."""
