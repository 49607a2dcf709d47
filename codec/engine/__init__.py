"""Images <-> files, one stack, lowest first: tiles and the memory check (:mod:`.tiling`),
the verified-hash cache (:mod:`.verified`), the torch-free decoder (:mod:`.decoding`), the
shipped models by name (:mod:`.registry`), the encoder's effort (:mod:`.effort`), the torch
codecs (:mod:`.api`, :mod:`.layered_codec`), and codecs and decoders built from bundles
(:mod:`.loading`)."""
