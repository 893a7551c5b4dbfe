"""edgescope exporter: per-device power, energy, thermals, disk and page-cache metrics."""

__version__ = "0.1.0"
