"""The plumbing below the services: what every service uses and none owns.

    kafka_io.py       the Kafka client factories and one-shot operations (publish, topics, read, offsets)
    batch_sender.py   many Kafka messages at once, grouped by partition (the monitor's stages)
    kafka_local.py    the local single-node broker for development and tests
    kafka_tools.py    Kafka's own command-line tools, run from the jar cache
    consumer_lag.py   the consumer-lag gauge of every process that consumes
    settings.py       every POVWATCH_* setting (pydantic-settings)
    processes.py      povwatch's long-lived processes run as children (demo, benchmark, tests), their /metrics
    http_serving.py   serving an ASGI app (the intake, the desk) with uvicorn
    backoff.py        the retry schedule of outages
    logs.py           one log line per record (no tracebacks from libraries)
    toml_config.py    small TOML configuration files read key by key
    table.py          the one terminal table
    clock.py          the one injected clock (Clock, utc_now)

It imports `schemas` and nothing of `connectors` or `services` (tests/unit/test_layers.py holds it to that).
"""
