"""``mendloop batch``: many repair tasks, a process each, with resumable output files (see :mod:`.run`)."""
