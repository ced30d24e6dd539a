"""What the agent works with, free of any model code: the scratch workspace and git (``workspace``, ``git``,
``proc``), the edits a model asks for and how they are applied (``edits``, ``patching/``), running tests and judging
a reproduction (``testing``, ``testgen``), and real execution traces (``tracing/``)."""
