"""mendloop's repair loop and its front doors - the map a newcomer reads first.

Arrows point one way: front doors -> the loop -> the three seams (model, sandbox, workspace).

* ``cli/`` - the typer faces only: ``main`` registers the commands and is the one error edge; ``shared`` holds the one
  option table every command is built from.
* ``doors/`` - what each use does, no CLI framework inside: ``issue/`` (GitHub issues and pull requests),
  ``precommit``, ``batch/`` (many tasks, resumable, local or Ray), ``local/`` (a model on this CPU, the demo),
  ``doctor``, ``gitops`` (writes to users' repositories).
* the loop: ``runner.solve`` builds the ``graph`` (prepare -> reproduce -> write -> verify -> finish) over the
  checkpointable ``state`` and the live ``context``; ``config`` is the one settings object (with ``tuned``: the
  measured profile for a small local model), ``budget`` the limits, ``report`` the run's report.md, ``records``
  the writes that stay whole on a full disk.
* ``nodes/`` - the graph's nodes and what they share (``common.ask``: one model turn; ``fresh``: a round rebuilt
  from the code and the latest evidence; ``converse`` and ``protocol``: CWM's conversation; ``evidence``: what a
  round is shown of a failure; ``prompting``: requests and histories that fit the context; ``selection``: the
  winner among candidates, CWM's test matrix).
* ``model`` - the one seam to a model (retries, budgets, ``n`` samples, the context window), which streams single
  answers through ``streaming`` when someone watches; ``dialects/`` - how a model family is prompted and read;
  ``prompts/`` - the prompt texts.
* what a person sees: ``rounds`` (one round, told the same way by every view), ``live/`` (the live terminal view of
  a repair and of a batch: observers, never part of the loop), ``show/`` (a run or batch read back: the terminal
  view and the self-contained report.html).

What the agent does to code (patching, tests, traces, the scratch workspace) lives in ``tools/``; where code runs, in
``sandboxes/``.
"""
