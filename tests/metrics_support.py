"""Reading a worker's /metrics through the Prometheus text parser (never string matching)."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels, through the Prometheus parser."""
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def by_label(samples: dict[Any, float], name: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: v
        for (n, labels), v in samples.items()
        if n == name and label in dict(labels)
    }
