"""Prometheus figures of the API: requests, answers by source, cache hits, skips, timings, and the
watch figures of the last day, read from the store when `/metrics` is scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from lotlens.service import BatchStats, Result
from lotlens.store import Store


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lotlens_requests_total", "HTTP requests", ["path", "status"], registry=r)
        self.images = Counter("lotlens_images_total", "images answered, by source", ["source"], registry=r)
        self.cache_hits = Counter("lotlens_cache_hits_total", "cache hits by key kind", ["kind"], registry=r)
        self.skipped = Counter("lotlens_skipped_total", "skipped images by reason", ["reason"], registry=r)
        self.fetch = Histogram("lotlens_fetch_seconds", "download time of a batch's misses", registry=r)
        self.inference = Histogram("lotlens_inference_seconds", "model time of a batch", registry=r)
        self.untrusted = Counter(
            "lotlens_hosts_untrusted_total", "hosts whose headers stopped being trusted", registry=r
        )
        self.verifications = Counter(
            "lotlens_header_key_checks_total", "header-key hits fetched anyway, by outcome", ["outcome"], registry=r
        )
        self.model = Gauge("lotlens_model_info", "the model serving answers", ["version"], registry=r)

    def batch(self, results: list[Result], s: BatchStats) -> None:
        """Count one batch's answers and costs."""
        self.cache_hits.labels("url").inc(s.url_hits)
        self.cache_hits.labels("header").inc(s.header_hits)
        self.cache_hits.labels("content").inc(s.content_hits)
        self.cache_hits.labels("near_duplicate").inc(s.near_duplicates)
        for reason, n in s.skipped.items():
            self.skipped.labels(reason.split(":")[0]).inc(n)
        for r in results:
            if r.source:
                self.images.labels(r.source).inc()
        self.fetch.observe(s.fetch_seconds)
        self.inference.observe(s.inference_seconds)
        self.untrusted.inc(len(s.hosts_distrusted))
        self.verifications.labels("same_bytes").inc(s.verified)
        self.verifications.labels("new_bytes").inc(s.header_key_mismatches)


class WatchCollector:
    """The watch figures of the last day per model version, computed when /metrics is read."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from lotlens.train.monitor import watch

        answers = GaugeMetricFamily(
            "lotlens_answers_last_day", "answers today, by model version", labels=["model_version"]
        )
        rate = GaugeMetricFamily(
            "lotlens_fix_rate_per_1000_last_day", "fixes per 1,000 answers today", labels=["model_version"]
        )
        per_version: dict[str, list[int]] = {}
        for f in watch(self.store, days=1).recent:
            agg = per_version.setdefault(f.model_version, [0, 0])
            agg[0] += f.answers
            agg[1] += f.fixes
        for version, (n, fixes) in sorted(per_version.items()):
            answers.add_metric([version], n)
            rate.add_metric([version], 1000.0 * fixes / n if n else 0.0)
        yield answers
        yield rate
