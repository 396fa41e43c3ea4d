"""A static preview of the Grafana dashboard (deploy/grafana/povwatch.json) without Grafana: each panel's queries
are run against a real Prometheus (`/api/v1/query_range`) and drawn as inline SVG into one HTML page laid out by
the panels' gridPos. `python -m services.dashboard_preview --help`; docs/deployment.md has the how-to.

    board.py       the dashboard JSON read into panels and queries (pure)
    prometheus.py  the HTTP API client, and a scrape configuration for a preview Prometheus
    page.py        panels and their series drawn into HTML with SVG charts (pure)
"""
