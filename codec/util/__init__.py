"""The lowest helpers: atomic file writes, the hardware (threads, autocast), image reading
and quality metrics. They import nothing of the package but :mod:`codec.errors`."""
