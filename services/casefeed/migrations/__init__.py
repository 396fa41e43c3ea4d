"""The case DB's schema migrations (Alembic): `env.py`, `script.py.mako`, `versions/`.

`services.casefeed.db.open_database` runs them (to head) on every open; see `services.casefeed.schema`.
A new revision: `.venv/bin/python -m services.casefeed.schema revision -m "what changes"` writes
`versions/NNNN_<slug>.py` from the template, to be filled by hand (or with `--autogenerate`).
"""
