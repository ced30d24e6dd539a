"""python -m agent.cli: the mendloop command."""

from agent.cli.main import main

raise SystemExit(main())
