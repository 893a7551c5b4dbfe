"""One module per source; every source is a `Source` (see base.py) and fails alone."""
