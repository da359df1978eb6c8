"""steer's tools, built on the library but not part of it: the ``steer`` command (cli), ``steer demo``,
``steer replay``, the loopback fake provider (devserver) and a private Arize Phoenix (phoenix).

Nothing in the library imports from here (the import-linter contracts in pyproject.toml say so).
"""
