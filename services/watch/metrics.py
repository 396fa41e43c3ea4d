"""The watch service's /metrics (prometheus_client, a registry of its own)."""
from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from connectors.framework import Summary
from schemas.errors import ConfigError

__all__ = ["WatchMetrics"]


class WatchMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["department", "feed"]
        self.read = Counter("povwatch_connector_rows_read", "Rows read (files and SQL sources)", labels,
                            registry=self.registry)
        self.published = Counter("povwatch_connector_rows_published", "Rows published as events", labels,
                                 registry=self.registry)
        self.rejected = Counter("povwatch_connector_rows_rejected", "Rows rejected (dead-lettered)", labels,
                                registry=self.registry)
        self.duplicates = Counter("povwatch_connector_rows_duplicate", "Exact duplicate rows skipped", labels,
                                  registry=self.registry)
        self.files = Counter("povwatch_connector_files", "Files finished, by outcome (done, failed)",
                             labels + ["outcome"], registry=self.registry)
        self.last_success = Gauge("povwatch_connector_last_success_timestamp_seconds",
                                  "When the source last completed a file or a poll (Unix time)", ["source"],
                                  registry=self.registry)
        self.lag = Gauge("povwatch_connector_source_lag_seconds",
                         "Drop folder: age of the oldest file waiting; SQL: time since the update time of the "
                         "cursor's last row", ["source"], registry=self.registry)
        self.errors = Counter("povwatch_connector_source_errors", "Attempts that failed (broker or database "
                              "unavailable, bad source)", ["source"], registry=self.registry)

    def serve(self, port: int) -> None:
        if port:
            try:
                start_http_server(port, registry=self.registry)
            except OSError as exc:
                raise ConfigError(f"cannot serve /metrics on port {port}: {exc}") from None

    def tracker(self, department: str, feed: str) -> Callable[[Summary], None]:
        """An on_progress callback: adds what a summary counted since its last call."""
        last = Summary(department, feed, "")

        def track(summary: Summary) -> None:
            for name, counter in (("read", self.read), ("published", self.published),
                                  ("rejected", self.rejected), ("duplicates", self.duplicates)):
                delta = getattr(summary, name) - getattr(last, name)
                if delta > 0:
                    counter.labels(department, feed).inc(delta)
                    setattr(last, name, getattr(summary, name))

        return track
