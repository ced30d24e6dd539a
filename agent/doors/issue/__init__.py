"""``mendloop solve --issue``: GitHub issue in, patch, commit or pull request out (see :mod:`.flow`)."""
