"""The decision core: pure functions and immutable values (see docs/architecture.md).

Nothing here reads a clock, a file, the environment or the network, starts a thread or logs:
the import contract in pyproject.toml allows the core only the modules it lists.
"""
