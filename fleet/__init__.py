"""edgescope-fleet-sim: many simulated Jetsons (exporter + trainer) on loopback ports."""
