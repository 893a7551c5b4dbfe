"""edgescope-report: the characterisation tables and plots, read back from Prometheus."""
