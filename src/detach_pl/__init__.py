"""detach_pl: DETACH exocentric-video / ambient-sensor alignment in PyTorch Lightning."""

__version__ = "0.1.0"
