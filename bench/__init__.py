"""Side-by-side benchmarks of axe against raw restic, borgmatic and restic copy."""
