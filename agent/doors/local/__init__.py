"""agent/doors/local."""
