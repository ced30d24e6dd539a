"""A tiny statistics package with a bug, used by mendloop's README demo and end-to-end tests."""

from stats.core import mean, median

__all__ = ["mean", "median"]
