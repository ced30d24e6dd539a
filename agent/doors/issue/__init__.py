"""agent/doors/issue."""
