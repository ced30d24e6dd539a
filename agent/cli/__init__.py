"""agent/cli."""
