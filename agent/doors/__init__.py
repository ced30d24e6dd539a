"""The front doors: what each way of using mendloop does, around the one repair loop (:func:`agent.runner.solve`).

``issue/`` solves a GitHub issue (and may open a pull request), ``precommit`` repairs failing checks of staged
changes, ``batch/`` runs many tasks resumably, ``local/`` runs a small model on this machine, ``doctor`` checks the
setup, and ``gitops`` holds the writes to users' repositories and remotes. No CLI framework here: ``agent/cli``
parses the command line and calls these.
"""
