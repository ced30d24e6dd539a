"""agent/doors/batch."""
