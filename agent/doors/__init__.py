"""agent/doors."""
