"""The plumbing below the services: what every service uses and none owns. It imports `schemas` and
`connectors`' nothing, and nothing of `services` (tests/unit/test_layers.py holds it to that)."""
