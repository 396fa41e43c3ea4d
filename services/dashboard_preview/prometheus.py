"""Prometheus's HTTP API as the preview uses it (`/api/v1/query_range`, `/api/v1/targets`), and the scrape
configuration of a preview Prometheus pointed at the services' /metrics ports."""
from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused a query (the message says which and why)."""


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (unix seconds, value); NaN and infinities dropped


def _get(base_url: str, path: str, params: Mapping[str, str], timeout: float) -> Any:
    url = f"{base_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:  # a bad query answers 400 with a JSON error
        try:
            body = json.loads(e.read().decode("utf-8"))
        except ValueError:
            raise PrometheusError(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise PrometheusError(f"Prometheus at {base_url} does not answer: {e}") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error", body) if isinstance(body, dict) else body
        raise PrometheusError(f"Prometheus refused {params.get('query', path)!r}: {error}")
    return body["data"]


def query_range(base_url: str, expr: str, start: float, end: float, step: float,
                timeout: float = 10.0) -> list[Series]:
    data = _get(base_url, "/api/v1/query_range",
                {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}, timeout)
    series = []
    for item in data.get("result", []):
        points = tuple((float(t), float(v)) for t, v in item.get("values", []) if math.isfinite(float(v)))
        series.append(Series(dict(item.get("metric", {})), points))
    return series


def targets_up(base_url: str, timeout: float = 5.0) -> dict[str, bool]:
    """Each active target's scrape URL -> whether its last scrape succeeded."""
    data = _get(base_url, "/api/v1/targets", {"state": "active"}, timeout)
    return {str(t["scrapeUrl"]): t.get("health") == "up" for t in data.get("activeTargets", [])}


def legend(template: str, labels: Mapping[str, str]) -> str:
    """Grafana's legendFormat: `{{label}}` replaced by the label's value (empty when the series lacks it); with no
    template, the series' labels as PromQL writes them."""
    if template:
        return re.sub(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def scrape_config(jobs: Mapping[str, Sequence[int]], interval_seconds: float = 1.0) -> str:
    """prometheus.yml scraping 127.0.0.1:<port>/metrics for each job's ports (YAML written by hand: it is small)."""
    lines = ["global:", f"  scrape_interval: {interval_seconds:g}s", f"  evaluation_interval: {interval_seconds:g}s",
             "scrape_configs:"]
    for job, ports in jobs.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", job):
            raise ValueError(f"job name {job!r}: letters, digits, '_', '.' and '-' only")
        lines += [f"  - job_name: {job}", "    static_configs:",
                  "      - targets: [" + ", ".join(f"'127.0.0.1:{int(p)}'" for p in ports) + "]"]
    return "\n".join(lines) + "\n"
