"""edgescope-experiment: the reference procedure as a resumable sweep."""
