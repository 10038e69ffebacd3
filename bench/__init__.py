# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""`make bench`: Guard's per-call overhead against a bare call, the SQLite floor, DBOS and Edictum."""
