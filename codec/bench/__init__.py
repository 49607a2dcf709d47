"""Rate-distortion benchmarking: BD-rate, codec sweeps, reports (``codec bench``)."""
