"""Descriptive statistics for lists of numbers."""


def mean(values):
    """Arithmetic mean; raises ValueError on an empty list."""
    if not values:
        raise ValueError("mean() of an empty list")
    return sum(values) / len(values)


def median(values):
    """The middle value of the sorted list; the mean of the two middle values when the count is even."""
    if not values:
        raise ValueError("median() of an empty list")
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle]
