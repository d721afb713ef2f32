"""How fast is `accesslog stats` on a big warehouse?

    python benchmarks/stats_speed.py [--rows 10000000] [--days 30] [--repeat 5] [--workdir DIR] [--threads N]
                                     [--skip-baseline]

Builds (once, cached in --workdir) a warehouse of synthetic `access` rows WITHOUT running the
pipeline: Parquet partitions are generated directly with numpy + pyarrow, in the pipeline's layout
(access/date=YYYY-MM-DD/<16hex>-<10 digit first line>.parquet, zstd, sorted by received_at,
several files per day, schemas.ACCESS columns). Distributions are meant to look like a real site:

  * ~200k distinct client_ids per day (a new pseudonym set every day, as with daily keys), a few
    clients very active, most with one or two requests, grouped into visits (gaps ~ 1 min, now and
    then > 30 min) that start on a day/night curve;
  * Zipf-distributed paths over a catalogue of pages and static assets; GET/HEAD/POST;
    statuses 2xx/3xx/304/4xx/5xx; bytes and durations lognormal, durations at nginx's ms resolution;
  * user agents with browser/os/device/is_bot (~9 % of requests from bots), countries, ASNs, languages,
    referrers (direct, internal, search engines, social), three virtual hosts.

Then it times (DuckDB with --threads, default 2):
  default       `usage_stats(connect(wh), StatsFilter())`: the first call on a new connection
                (computes the per-day aggregates), then the median of --repeat more calls on it;
  latency_by_path, the one report that reads the files on every call (not in the default set);
  cache cleared each call: what every default call would cost without the cache;
  filtered      --from/--to one week and --host: first call, then the median;
  cache file    a new connection per call with `connect(cache_file=...)`, as the CLI would run:
                the first process fills the file, the next ones start warm;
  before        accesslog/stats.py as of BASELINE_COMMIT (5 reports, one scan each, no cache).
Target (the issue): the default report < 1 s after the first run on 10M rows with 2 cores.
Timings on a shared machine vary by +-30 %; compare runs made back to back.

Always exits 0: a benchmark reports, it does not gate.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import schemas  # noqa: E402
from accesslog import stats  # noqa: E402

FIRST_DAY = dt.date(2026, 10, 1)
BASELINE_COMMIT = "097ee51"   # the last commit before the per-day aggregates
ROWS_PER_FILE = 50_000
HOSTS = (["www.example.com", "blog.example.com", "api.example.com"], [0.8, 0.15, 0.05])
# (user agent, browser, version, os, device, is_bot), weight
USER_AGENTS = [
    (("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/130.0", "Chrome", "130", "Windows", "desktop", False), 30),
    (("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/17.5", "Safari", "17", "macOS", "desktop", False), 9),
    (("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile Safari/17.5", "Mobile Safari", "17", "iOS", "mobile", False), 16),
    (("Mozilla/5.0 (Linux; Android 14) Chrome/130.0 Mobile", "Chrome Mobile", "130", "Android", "mobile", False), 14),
    (("Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Firefox/131.0", "Firefox", "131", "Linux", "desktop", False), 5),
    (("Mozilla/5.0 (Windows NT 10.0; rv:131.0) Firefox/131.0", "Firefox", "131", "Windows", "desktop", False), 4),
    (("Mozilla/5.0 (Windows NT 10.0) Edg/130.0", "Edge", "130", "Windows", "desktop", False), 7),
    (("Mozilla/5.0 (iPad; CPU OS 17_5) Safari/17.5", "Mobile Safari", "17", "iOS", "tablet", False), 3),
    (("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "2", "Other", "bot",
      True), 4),
    (("Mozilla/5.0 (compatible; bingbot/2.0)", "bingbot", "2", "Other", "bot", True), 2),
    (("curl/8.5.0", "curl", "8", "Other", "bot", True), 1),
    (("python-requests/2.32", "Python Requests", "2", "Other", "bot", True), 1),
    (("Mozilla/5.0 (compatible; AhrefsBot/7.0)", "AhrefsBot", "7", "Other", "bot", True), 1),
]
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "CA", "NL", "JP", "ES", "IT", "PL", "SE", "AU", "CH", "AT", "BE",
             "MX", "KR", "CN", "RU", "UA", "CZ", "DK", "NO", "FI", "IE", "PT", "TR", "ZA", None]
LANGUAGES = ["en", "de", "fr", "es", "pt", "ja", "nl", "it", "pl", "sv", "ko", "zh", "ru", "uk", "cs", None]
REFERRERS = [None, "https://www.google.com/", "https://www.bing.com/search?q=x", "https://duckduckgo.com/",
             "https://t.co/abc", "https://news.ycombinator.com/item?id=1", "https://www.reddit.com/r/x",
             "android-app://com.google.android.gm/"]
ASSET_EXTENSIONS = ["css", "js", "png", "jpg", "svg", "woff2", "ico", "webp", "json", "map"]


def zipf_weights(n: int, a: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return w / w.sum()


def path_catalogue(rng: np.random.Generator, n: int = 20_000) -> np.ndarray:
    """n paths, ~35 % static assets, in Zipf rank order (so `/` and a stylesheet are on top)."""
    paths = ["/", "/static/site.css", "/static/app.js", "/favicon.ico", "/blog/", "/about", "/pricing",
             "/img/logo.svg", "/docs/", "/login"]
    sections = ["blog", "docs", "product", "tag", "user", "news"]
    while len(paths) < n:
        i = len(paths)
        if rng.random() < 0.35:
            paths.append(f"/static/{i:x}.{ASSET_EXTENSIONS[i % len(ASSET_EXTENSIONS)]}")
        else:
            paths.append(f"/{sections[i % len(sections)]}/item-{i}")
    return np.array(paths, dtype=object)


def hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """n random 32-hex-digit strings (the shape of a client_id), vectorized."""
    digits = np.frombuffer(b"0123456789abcdef", dtype="S1")
    chars = digits[rng.integers(0, 16, size=(n, 32), dtype=np.uint8)]
    return pa.array(chars.view("S32").ravel()).cast(pa.string())


def dictionary(indices: np.ndarray, values: list) -> pa.DictionaryArray:
    """values[indices] as a dictionary array; a None value becomes a null index (Parquet
    cannot write nulls inside a dictionary)."""
    indices = indices.astype(np.int32)
    mask = np.isin(indices, [i for i, v in enumerate(values) if v is None])
    placeholders = ["" if v is None else v for v in values]
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=mask), pa.array(placeholders, pa.string()))


def categorical(rng: np.random.Generator, values: list, weights, n: int) -> pa.DictionaryArray:
    w = np.asarray(weights, dtype=float)
    return dictionary(rng.choice(len(values), size=n, p=w / w.sum()), values)


def day_table(rng: np.random.Generator, day: dt.date, rows: int, clients: int, paths: np.ndarray) -> pa.Table:
    """One day's access rows, sorted by received_at."""
    clients = min(clients, rows)
    # every client has >= 1 request; the rest go to clients by a heavy-tailed activity
    activity = rng.lognormal(0, 1.5, clients)
    per_client = 1 + rng.multinomial(rows - clients, activity / activity.sum())
    client = np.repeat(np.arange(clients), per_client)
    first_of_client = np.r_[0, np.cumsum(per_client)[:-1]]
    # visit start on a day/night curve (peak ~14:00 UTC), then gaps of ~1 min; 8 % > 30 min
    hour = rng.choice(24, size=clients, p=_diurnal())
    start_s = hour * 3600 + rng.uniform(0, 3600, clients)
    gaps = rng.exponential(60, rows)
    long_gap = rng.random(rows) < 0.08
    gaps[long_gap] = 1800 + rng.exponential(3600, int(long_gap.sum()))
    gaps[first_of_client] = 0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first_of_client], per_client)
    seconds = np.minimum(np.repeat(start_s, per_client) + offset, 86_400 - 1e-6)
    midnight_us = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    received_us = midnight_us + (seconds * 1e6).astype(np.int64)
    order = np.argsort(received_us, kind="stable")
    received_us, client = received_us[order], client[order]

    n = rows
    path_idx = rng.choice(len(paths), size=n, p=zipf_weights(len(paths), 1.05))
    duration = np.round(rng.lognormal(np.log(25), 1.0, n))  # whole ms, as nginx's $request_time
    statuses = [200, 304, 301, 302, 404, 403, 500, 502, 503, 206]
    status = rng.choice(statuses, size=n, p=[0.84, 0.05, 0.015, 0.015, 0.05, 0.005, 0.01, 0.004, 0.001, 0.01])
    ua_weights = np.array([w for _, w in USER_AGENTS], dtype=float)
    ua_idx = rng.choice(len(USER_AGENTS), size=clients, p=ua_weights / ua_weights.sum())[client]  # one per client

    def from_ua(i: int, type_=pa.string()) -> pa.Array:
        values = [u[i] for u, _ in USER_AGENTS]
        if type_ == pa.bool_():
            return pa.array(np.array(values)[ua_idx], pa.bool_())
        return dictionary(ua_idx, values)

    def per_client(values: list, weights) -> pa.Array:
        w = np.asarray(weights, dtype=float)
        return dictionary(rng.choice(len(values), size=clients, p=w / w.sum())[client], values)

    host_idx = rng.choice(len(HOSTS[0]), size=clients, p=HOSTS[1])[client]
    hosts = dictionary(host_idx, HOSTS[0])
    referrer_idx = rng.choice(len(REFERRERS) + 1, size=n, p=[0.45, 0.2, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.2])
    own = [f"https://{h}/blog/" for h in HOSTS[0]]
    referrers = dictionary(np.where(referrer_idx == len(REFERRERS), len(REFERRERS) + host_idx, referrer_idx),
                           REFERRERS + own)
    asns = rng.choice(40, size=clients, p=zipf_weights(40))[client]
    methods = categorical(rng, ["GET", "HEAD", "POST", "PUT", "OPTIONS"], [0.93, 0.02, 0.04, 0.005, 0.005], n)
    received = pa.array(received_us, pa.timestamp("us", tz="UTC"))
    columns = {
        "received_at": received,
        "responded_at": pa.array(received_us + (duration * 1000).astype(np.int64), pa.timestamp("us", tz="UTC")),
        "duration_ms": pa.array(duration),
        "method": methods,
        "url_path": pa.DictionaryArray.from_arrays(pa.array(path_idx.astype(np.int32)), pa.array(paths, pa.string())),
        "protocol": categorical(rng, ["HTTP/1.1", "HTTP/2.0"], [0.4, 0.6], n),
        "status": pa.array(status.astype(np.int16)),
        "bytes_sent": pa.array(np.where(status == 304, 0, rng.lognormal(8, 1.5, n)).astype(np.int64)),
        "referrer": referrers,
        "user_agent": from_ua(0), "browser": from_ua(1), "browser_version": from_ua(2), "os": from_ua(3),
        "device": from_ua(4), "is_bot": from_ua(5, pa.bool_()),
        "language": per_client(LANGUAGES, zipf_weights(len(LANGUAGES), 1.3)),
        "client_id": pa.DictionaryArray.from_arrays(pa.array(client.astype(np.int32)), hex_ids(rng, clients)),
        "client_network": pa.DictionaryArray.from_arrays(pa.array((client % 5000).astype(np.int32)), pa.array(
            [f"198.{i // 250 % 256}.{i % 250}.0/24" for i in range(5000)], pa.string())),
        "country": per_client(COUNTRIES, zipf_weights(len(COUNTRIES), 1.2)),
        "asn": pa.array(64500 + asns),
        "as_org": pa.DictionaryArray.from_arrays(pa.array(asns.astype(np.int32)),
                                                 pa.array([f"Example Net {i}" for i in range(40)], pa.string())),
        "host": hosts,
        "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                 pa.array([f"access.log-{day:%Y%m%d}"], pa.string())),
        "source_line": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "key_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([day.isoformat()])),
    }
    arrays, fields = [], []
    for f in schemas.ACCESS:
        col = columns.get(f.name, pa.nulls(n, f.type))
        arrays.append(col)
        fields.append(f.with_type(col.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _diurnal() -> np.ndarray:
    w = 1.2 + np.sin((np.arange(24) - 8) / 24 * 2 * np.pi)
    return w / w.sum()


def build_warehouse(root: Path, rows: int, days: int, clients_per_day: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    paths = path_catalogue(rng)
    per_day = np.full(days, rows // days)
    per_day[: rows % days] += 1
    for d in range(days):
        day = FIRST_DAY + dt.timedelta(days=d)
        table = day_table(rng, day, int(per_day[d]), clients_per_day, paths)
        folder = root / "access" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        input_id = f"{rng.integers(0, 2**63):016x}"
        for first in range(0, table.num_rows, ROWS_PER_FILE):
            # plain strings: the writer then builds each file's own dictionary, as the pipeline's
            # chunks do (a slice would carry the whole day's dictionary into every file)
            part = table.slice(first, ROWS_PER_FILE).cast(schemas.ACCESS)
            pq.write_table(part, folder / f"{input_id}-{first + 1:010d}.parquet", compression="zstd",
                           store_schema=False, sorting_columns=[pq.SortingColumn(0)])


def cached_warehouse(work: Path, rows: int, days: int, clients: int, seed: int) -> Path:
    """The warehouse for these parameters, generated unless a complete one is in `work`."""
    params = {"rows": rows, "days": days, "clients_per_day": clients, "seed": seed, "version": 1}
    root = work / f"warehouse-{rows}-{days}-{seed}"
    marker = root / "_benchmark.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        print(f"reusing {root}")
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    build_warehouse(root, rows, days, clients, seed)
    marker.write_text(json.dumps(params))
    print(f"generated {rows:,} rows over {days} days in {time.perf_counter() - started:.1f} s -> {root}")
    return root


def timed(fn, *args, **kwargs) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


def refilled(con) -> None:
    """usage_stats as if nothing were cached: what every call would cost without the cache."""
    stats.clear_cache(con)
    stats.usage_stats(con)


def baseline(wh: Path, threads: int, repeat: int) -> tuple[float, float] | None:
    """The stats module as committed before the per-day cache (5 reports, one scan each), if git has it."""
    import subprocess
    import types
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(["git", "-C", str(root), "show", f"{BASELINE_COMMIT}:accesslog/stats.py"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    old = types.ModuleType("stats_before")
    sys.modules[old.__name__] = old   # dataclasses look their module up
    exec(compile(proc.stdout, "stats_before.py", "exec"), old.__dict__)
    con = old.connect(wh, threads=threads)
    runs = [timed(old.usage_stats, con, old.StatsFilter()) for _ in range(repeat + 1)]
    con.close()
    return runs[0], statistics.median(runs[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--clients-per-day", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (default 2, the target machine)")
    ap.add_argument("--workdir", default=None, help="where the generated warehouse is cached "
                    "(default: $TMPDIR/accesslog-stats-bench)")
    ap.add_argument("--skip-baseline", action="store_true", help=f"do not time stats.py of {BASELINE_COMMIT}")
    args = ap.parse_args()
    work = Path(args.workdir or Path(tempfile.gettempdir()) / "accesslog-stats-bench")
    work.mkdir(parents=True, exist_ok=True)
    wh = cached_warehouse(work, args.rows, args.days, args.clients_per_day, args.seed)
    week = stats.StatsFilter(date_from=FIRST_DAY + dt.timedelta(days=7), date_to=FIRST_DAY + dt.timedelta(days=13),
                             host=HOSTS[0][0])
    print(f"DuckDB threads={args.threads}; {len(stats.DEFAULT_REPORTS)} default reports")
    rows = []   # (label, cold s, warm median s)
    for label, flt in [("default", stats.StatsFilter()), ("--from/--to 1 week + --host", week)]:
        con = stats.connect(wh, threads=args.threads)
        cold = timed(stats.usage_stats, con, flt)
        warm = statistics.median(timed(stats.usage_stats, con, flt) for _ in range(args.repeat))
        rows.append((label, cold, warm))
        if label == "default":
            rows.append(("latency_by_path (not cached)", None,
                         statistics.median(timed(stats.latency_by_path, con) for _ in range(args.repeat))))
            rows.append(("default, cache cleared each call", None,
                         statistics.median(timed(refilled, con) for _ in range(max(1, args.repeat // 2)))))
        con.close()
    # The CLI is one process per call: with a cache file, the next process starts warm.
    cache_file = work / "stats-cache.duckdb"
    cache_file.unlink(missing_ok=True)
    firsts = []
    for _ in range(args.repeat + 1):
        started = time.perf_counter()
        con = stats.connect(wh, threads=args.threads, cache_file=cache_file)
        stats.usage_stats(con)
        con.close()
        firsts.append(time.perf_counter() - started)
    rows.append(("new connection + cache file", firsts[0], statistics.median(firsts[1:])))
    cache_file.unlink(missing_ok=True)
    before = None if args.skip_baseline else baseline(wh, args.threads, args.repeat)
    if before:
        rows.append((f"before: stats.py of {BASELINE_COMMIT} (5 reports)", *before))

    print(f"{'call':<44}{'first s':>9}{'then, median s':>16}")
    for label, first, then in rows:
        print(f"{label:<44}{'' if first is None else f'{first:.2f}':>9}{then:>16.3f}")
    warm = rows[0][2]
    print(f"default report after the first run: {warm:.3f} s -> {'meets' if warm < 1.0 else 'misses'} "
          f"the < 1 s target on {args.rows:,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
