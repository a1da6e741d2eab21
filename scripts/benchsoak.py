"""The soak benchmark (``scripts/bench --soak MINUTES``): steady paced ingest plus dashboard
queries on one server for a long time, to see whether memory stays flat.

A paced sender posts batches of page views (``--soak-rate`` events/s, visitors from a pool of
addresses through X-Forwarded-For, pages from a bounded set, so the string table must stop
growing once every page and referrer was seen); a query thread asks the dashboard's JSON
questions (top line, time series, four breakdowns, the traffic report) in a loop. Visits time
out after ``--soak-visit-timeout`` minutes (default 1), so open visits reach their steady
level within a short run. Every ``--soak-interval`` seconds (default 60) one row: resident
memory of all the server's processes (heap and file-backed apart: the LMDB map's pages count
in RSS but the kernel takes them back under pressure), the sketch and column-block caches'
sizes, open visits, string-table size, the live ring buffer,
events waiting for aggregation (from ``/metrics``), and p50/p99 of ingest and query latency in
that interval. At the end: the memory curve, its slope over the second half (MB per minute),
and the lost-event check (every acknowledged event counted by the stats).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchlib import (
    SITE,
    BenchError,
    Client,
    percentile,
    settled_counts,
    start_footfall,
)
from prometheus_client.parser import text_string_to_metric_families

PAGES = 500
REFERRERS = ("https://www.google.com/", "https://news.ycombinator.com/", "https://duckduckgo.com/", "", "")
BROWSERS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
)
BATCH = 10


class Latencies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: list[float] = []

    def add(self, milliseconds: float) -> None:
        with self._lock:
            self._values.append(milliseconds)

    def take(self) -> list[float]:
        with self._lock:
            values, self._values = self._values, []
        return sorted(values)


class Sender(threading.Thread):
    def __init__(self, url: str, rate: float, seed: int) -> None:
        super().__init__(name="soak-sender", daemon=True)
        self.url, self.rate = url, rate
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.latency = Latencies()
        self.acknowledged = 0
        self.errors = 0

    def run(self) -> None:
        with Client(self.url) as client:
            started = time.monotonic()
            sent = 0
            while not self.stop.is_set():
                due = started + sent / self.rate
                if (wait := due - time.monotonic()) > 0 and self.stop.wait(wait):
                    return
                visitor = self.random.randrange(20_000)
                address = f"10.{visitor >> 16 & 255}.{visitor >> 8 & 255}.{visitor & 255}"
                body = [{
                    "event_type": "page_view", "site": SITE,
                    "metadata": {"page_url": f"http://{SITE}/soak/{self.random.randrange(PAGES)}",
                                 "referrer": self.random.choice(REFERRERS)},
                } for _ in range(BATCH)]
                headers = {"X-Forwarded-For": address, "User-Agent": BROWSERS[visitor % len(BROWSERS)]}
                began = time.perf_counter()
                try:
                    answer = client.post("/api/v1/events", body, headers=headers)
                except OSError:
                    self.errors += 1
                    continue
                self.latency.add((time.perf_counter() - began) * 1000)
                if answer.status_code == 200:
                    self.acknowledged += BATCH
                else:
                    self.errors += 1
                sent += BATCH


class Querier(threading.Thread):
    QUERIES = (
        ("/api/v1/stats/aggregate", {}),
        ("/api/v1/stats/timeseries", {"interval": "hour"}),
        ("/api/v1/stats/breakdown", {"property": "page"}),
        ("/api/v1/stats/breakdown", {"property": "source"}),
        ("/api/v1/stats/breakdown", {"property": "browser"}),
        ("/api/v1/stats/breakdown", {"property": "country"}),
        ("/api/v1/reports/traffic", {}),
    )

    def __init__(self, url: str, token: str, pause: float) -> None:
        super().__init__(name="soak-querier", daemon=True)
        self.url, self.token, self.pause = url, token, pause
        self.stop = threading.Event()
        self.latency = Latencies()
        self.errors = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with Client(self.url, headers=headers) as client:
            while not self.stop.is_set():
                for path, extra in self.QUERIES:
                    began = time.perf_counter()
                    answer = client.get(path, {"site": SITE, "period": "day", **extra})
                    self.latency.add((time.perf_counter() - began) * 1000)
                    if answer.status_code != 200:
                        self.errors += 1
                if self.stop.wait(self.pause):
                    return


def scrape(client: Client) -> dict[str, float]:
    answer = client.get("/metrics")
    if answer.status_code != 200:
        raise BenchError(f"/metrics answered {answer.status_code}")
    values = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
    return values


def _ms(values: list[float], fraction: float) -> float | None:
    return round(percentile(values, fraction), 1) if values else None


def run_soak(minutes: float, *, rate: float, interval: float, visit_timeout: int, query_pause: float,
             seed: int, log, heap: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="footfall-soak-"))
    env = {"FOOTFALL_SITES_VISIT_TIMEOUT_MINUTES": str(visit_timeout)}
    if heap is not None:  # the debugging plugin: tracemalloc reports in ``heap``
        env |= {"FOOTFALL_PLUGINS_DIRECTORY": str(Path(__file__).parent / "soakprobe"),
                "FOOTFALL_PLUGIN_HEAPPROBE_DIR": str(heap.resolve()), "FOOTFALL_PLUGIN_HEAPPROBE_INTERVAL": str(interval)}
    server = start_footfall(work / "data", work / "server.log", env=env)
    rows: list[dict] = []
    try:
        sender = Sender(server.url, rate, seed)
        querier = Querier(server.url, server.token, query_pause)
        metrics = Client(server.url, headers={"Authorization": f"Bearer {server.token}"})
        started = time.monotonic()
        sender.start()
        querier.start()
        end = started + minutes * 60
        log(f"soak: {minutes:g} min, {rate:g} events/s in batches of {BATCH}, visit timeout {visit_timeout} min, "
            f"a row every {interval:g} s")
        header = (f"{'min':>5} {'rss MB':>8} {'anon MB':>8} {'file MB':>8} {'sketch MB':>9} {'blocks MB':>9} "
                  f"{'events':>9} {'open visits':>11} {'strings':>8} "
                  f"{'live':>6} {'pending':>7} {'ingest p50/p99 ms':>18} {'query p50/p99 ms':>17}")
        log(header)
        while (now := time.monotonic()) < end:
            time.sleep(min(interval, end - now))
            rss = server.rss()
            values = scrape(metrics)
            ingest, query = sender.latency.take(), querier.latency.take()
            row = {
                "minute": round((time.monotonic() - started) / 60, 2),
                "rss_mb": round(rss["total"] / 2**20, 1),
                "anon_mb": round(rss["anon"] / 2**20, 1),
                "file_mb": round(rss["file"] / 2**20, 1),  # file-backed: the LMDB map, libraries
                "sketch_cache_mb": round(values.get("footfall_sketch_cache_bytes", -1) / 2**20, 1),
                "column_cache_mb": round(values.get("footfall_column_cache_bytes", -1) / 2**20, 1),
                "events": sender.acknowledged,
                "open_visits": int(values.get("footfall_open_visits", -1)),
                "strings": int(values.get("footfall_string_table_entries", -1)),
                "live_buffer": int(values.get("footfall_live_buffer_events", -1)),
                "pending": int(values.get("footfall_aggregation_pending_events", -1)),
                "ingest_p50_ms": _ms(ingest, 0.5), "ingest_p99_ms": _ms(ingest, 0.99),
                "query_p50_ms": _ms(query, 0.5), "query_p99_ms": _ms(query, 0.99),
            }
            rows.append(row)
            log(f"{row['minute']:>5} {row['rss_mb']:>8} {row['anon_mb']:>8} {row['file_mb']:>8} "
                f"{row['sketch_cache_mb']:>9} {row['column_cache_mb']:>9} {row['events']:>9} "
                f"{row['open_visits']:>11} {row['strings']:>8} {row['live_buffer']:>6} {row['pending']:>7} "
                f"{str(row['ingest_p50_ms']) + ' / ' + str(row['ingest_p99_ms']):>18} "
                f"{str(row['query_p50_ms']) + ' / ' + str(row['query_p99_ms']):>17}")
        sender.stop.set()
        querier.stop.set()
        sender.join(timeout=30)
        querier.join(timeout=60)
        metrics.close()
        counts = settled_counts(server)
    finally:
        server.stop()
    lost = sender.acknowledged - counts.pageviews
    slope, anon_slope, file_slope = (_slope(rows, field) for field in ("rss_mb", "anon_mb", "file_mb"))
    return {
        "minutes": minutes, "rate_events_per_s": rate, "visit_timeout_minutes": visit_timeout,
        "rows": rows, "acknowledged_events": sender.acknowledged, "counted_pageviews": counts.pageviews,
        "lost_events": lost, "ingest_errors": sender.errors, "query_errors": querier.errors,
        "rss_slope_mb_per_minute_second_half": slope, "anon_slope_mb_per_minute_second_half": anon_slope,
        "file_slope_mb_per_minute_second_half": file_slope, "work_dir": str(work),
        "ok": lost == 0 and not sender.errors and not querier.errors,
    }


def _slope(rows: list[dict], field: str) -> float | None:
    """MB per minute of ``field`` over the second half of the rows (first to last row)."""
    second_half = rows[len(rows) // 2:]
    if len(second_half) < 2:
        return None
    span = second_half[-1]["minute"] - second_half[0]["minute"]
    return round((second_half[-1][field] - second_half[0][field]) / span, 2) if span else None


def print_curve(result: dict) -> None:
    rows = result["rows"]
    if not rows:
        return
    low = min(row["rss_mb"] for row in rows)
    high = max(row["rss_mb"] for row in rows)
    print("memory curve (RSS of all server processes):")
    for row in rows:
        bar = "#" * (1 + round(40 * (row["rss_mb"] - low) / (high - low))) if high > low else "#"
        print(f"  {row['minute']:>5} min {row['rss_mb']:>8.1f} MB  {bar}")
    print(f"slope over the second half: {result['rss_slope_mb_per_minute_second_half']} MB/min "
          f"(heap {result['anon_slope_mb_per_minute_second_half']}, "
          f"file-backed {result['file_slope_mb_per_minute_second_half']}); "
          f"acknowledged {result['acknowledged_events']}, counted {result['counted_pageviews']}, "
          f"lost events: {result['lost_events']}, ingest errors {result['ingest_errors']}, "
          f"query errors {result['query_errors']}  ->  {'PASS' if result['ok'] else 'FAIL'}")


def main(args, log) -> int:
    result = run_soak(args.soak, rate=args.soak_rate, interval=args.soak_interval,
                      visit_timeout=args.soak_visit_timeout, query_pause=args.soak_query_pause,
                      seed=args.seed, log=log, heap=args.soak_heap)
    print_curve(result)
    if args.keep:
        print(f"data and logs kept in {result['work_dir']}")
    else:
        shutil.rmtree(result["work_dir"], ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"soak": result}, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0 if result["ok"] else 1
