"""igc-nas: multi-objective NAS over interleaved group convolution networks."""

__version__ = "0.1.0"
