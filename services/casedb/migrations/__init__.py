"""The case DB's schema migrations (Alembic): `env.py`, `script.py.mako`, `versions/`.

`services.casedb.database.open_database` runs them (to head) on every open; see `services.casedb.schema`.
A new revision: `.venv/bin/python -m services.casedb.schema revision -m "what changes"` writes
`versions/NNNN_<slug>.py` from the template, to be filled by hand (or with `--autogenerate`).
"""
