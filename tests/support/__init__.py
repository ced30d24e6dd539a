"""Test helpers shared across test packages (fake servers, fixtures that build real git repositories)."""
