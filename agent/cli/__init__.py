"""The command line: typer faces over the front doors in :mod:`agent.doors`, and nothing else.

``main`` is the ``mendloop`` app (its commands and its one error edge); ``shared`` the console, progress lines and the
option table; ``solve``, ``fix``, ``batch``, ``local`` (demo, serve-local) and ``tools`` (trace, doctor, sandbox
prune) one command or group each. Arrows point one way: ``main`` imports the command modules, never the reverse.
"""
