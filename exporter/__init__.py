"""edgescope exporter: per-device power, energy, thermals, disk and page-cache metrics."""
