"""The usage report page: one self-contained HTML file (`accesslog report`), or the same page
served live (`accesslog serve`, accesslog.serve).

`build_report` runs every accesslog.stats report over a warehouse and `render_page` lays them
out: totals, then one panel per report (a `<details>` that opens and closes), grouped in
sections, with charts drawn as inline SVG (accesslog.charts) and each table's rows in the
markup. Without script the page reads in order and every row is there. Its one script
(report.js, inlined) makes columns sortable, adds a filter box and "show all" per table and,
on a served page, polls the server and swaps in new content when a run commits.

The page loads nothing: its Content-Security-Policy allows that script and the style block
by their sha256 and nothing else (no URL, font, image, frame, or inline handler); a served
page may also fetch and submit to its own origin. Every value from the warehouse is
HTML-escaped (paths, referrers and user agents are user input), and the script moves values
as DOM text only, so no log line can put markup or script on the page.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from accesslog.charts import PALETTE, Bar, bar_chart, esc, line_chart
from accesslog.stats import REPORTS, StatsFilter, connect, usage_stats
from schemas.errors import AccesslogError
from storage.warehouse import replacing

# Every stats report: the header shows the one-row summaries, a panel each of the others.
REPORT_NAMES = tuple(REPORTS)
HEADER_REPORTS = ("totals", "error_rate", "bot_share")
PAGE_TOP = 50       # rows of each ranked table on the page (the script shows 10 until "show all")
CHART_ROWS = 10     # bars of a ranked report's chart
STATUS_COLOURS = {"1xx": "#718096", "2xx": "#2f855a", "3xx": "#2b6cb0", "4xx": "#dd6b20", "5xx": "#c53030"}

# section id, heading, its panels (report names) in order
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("traffic-section", "Traffic", ("traffic", "hours_of_day", "weekdays", "virtual_hosts")),
    ("pages-section", "Pages", ("top_pages", "entry_pages", "exit_pages", "static_files")),
    ("acquisition-section", "Where visitors come from", ("channels", "referrer_hosts", "referrer_urls",
                                                         "campaigns")),
    ("audience-section", "Audience", ("browsers", "browser_versions", "operating_systems", "devices", "countries",
                                      "languages", "asns", "sessions")),
    ("requests-section", "Requests and responses", ("status_classes", "status_codes", "methods", "protocols",
                                                    "tls_protocols", "cache_statuses", "mime_types")),
    ("errors-section", "Errors", ("not_found", "top_failing_paths", "errors_by_level", "error_patterns")),
    ("latency-section", "Latency", ("latency", "latency_by_path")),
)

# report -> (panel caption, open at first, what an empty panel says)
PANELS: dict[str, tuple[str, bool, str]] = {
    "traffic": ("Requests and unique visitors per day", True, "No requests."),
    "hours_of_day": ("Requests by hour of day (UTC)", True, "No requests."),
    "weekdays": ("Requests by weekday", False, "No requests."),
    "virtual_hosts": ("Virtual hosts by requests", False, "No request carries a host (the log format has no "
                                                         "$host, $server_name or %v)."),
    "top_pages": ("Top pages by page views", True, "No page views."),
    "entry_pages": ("Entry pages (first page of a visit)", False, "No visits."),
    "exit_pages": ("Exit pages (last page of a visit)", False, "No visits."),
    "static_files": ("Static files by requests", False, "No static files requested."),
    "channels": ("Referrer channels (direct, internal, search, social, email, other) by visitors", True,
                 "No page views."),
    "referrer_hosts": ("Referrer hosts by visitors", True, "No page view came with a referrer."),
    "referrer_urls": ("Referrer URLs by requests", False, "No request came with a referrer."),
    "campaigns": ("UTM campaigns (utm_source, utm_medium, utm_campaign)", False, "No request carried UTM "
                                                                                 "parameters."),
    "browsers": ("Browsers by visitors", True, "No page views."),
    "browser_versions": ("Browser versions by visitors", False, "No page views."),
    "operating_systems": ("Operating systems by visitors", True, "No page views."),
    "devices": ("Devices by visitors", True, "No page views."),
    "countries": ("Countries by visitors", False, "No country: runs need a GeoIP database (--geoip-db)."),
    "languages": ("Languages by visitors", False, "No language: the log format has no Accept-Language."),
    "asns": ("Networks (ASN) by visitors", False, "No network: runs need an ASN database (--asn-db)."),
    "sessions": ("Visits", True, "No visits."),
    "status_classes": ("Requests by HTTP status class (all requests, bots included)", True, "No requests."),
    "status_codes": ("Requests by HTTP status code", True, "No requests."),
    "methods": ("Request methods", False, "No requests."),
    "protocols": ("HTTP protocols", False, "No requests."),
    "tls_protocols": ("TLS protocols", False, "No TLS protocol logged (nginx $ssl_protocol, Apache "
                                              "%{SSL_PROTOCOL}x)."),
    "cache_statuses": ("Cache statuses", False, "No cache status logged (nginx $upstream_cache_status)."),
    "mime_types": ("Response MIME types", False, "No content type logged (nginx $sent_http_content_type)."),
    "not_found": ("Not found (404) paths", True, "No 404 responses."),
    "top_failing_paths": ("Paths answered with 4xx or 5xx", False, "No failed requests."),
    "errors_by_level": ("Error-log entries by level", True, "No error-log entries."),
    "error_patterns": ("Most frequent error messages", False, "No error-log entries."),
    "latency": ("Response time percentiles", True, "No request has a response time (the log format has no "
                                                   "$request_time or %D)."),
    "latency_by_path": ("Response time percentiles (ms) of the paths with most timed requests", False,
                        "No request has a response time."),
}
# ranked report -> (label column, value column, unit) of its chart
CHARTS = {"top_pages": ("url_path", "pages", "page views"), "channels": ("channel", "visitors", "visitors"),
          "referrer_hosts": ("referrer_host", "visitors", "visitors"), "browsers": ("browser", "visitors", "visitors"),
          "operating_systems": ("os", "visitors", "visitors"), "devices": ("device", "visitors", "visitors"),
          "countries": ("country", "visitors", "visitors"), "hours_of_day": ("hour_utc", "requests", "requests"),
          "weekdays": ("weekday", "requests", "requests"), "not_found": ("url_path", "requests", "requests"),
          "virtual_hosts": ("host", "requests", "requests")}
LABEL_NUMBERS = {"asn", "hour_utc", "status"}     # integer columns that name things: no thousands separator
SHARE_COLUMNS = {"share", "share_4xx", "share_5xx", "error_share", "failure_share", "bounce_rate"}

CSS = """
body { font-family: system-ui, sans-serif; color: #222; max-width: 1320px; margin: 0 auto; padding: 12px 24px; }
header { border-bottom: 2px solid #2b6cb0; margin-bottom: 12px; }
h1 { margin: 0 0 4px; } h2 { margin: 24px 0 8px; font-size: 1.25em; }
nav { font-size: .9em; margin: 6px 0; } nav a { margin-right: 14px; color: #2b6cb0; }
form#filters { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: end; margin: 8px 0; font-size: .9em; }
form#filters input { width: 11em; } #live-status { color: #2f855a; font-size: .85em; min-height: 1.2em; }
dl.figures { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 12px 0; }
dl.figures div { min-width: 120px; } dt { color: #555; font-size: .85em; } dd { margin: 0; font-size: 1.35em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(600px, 1fr)); gap: 4px 28px; align-items: start; }
details.panel { border: 1px solid #e2e2e2; border-radius: 4px; padding: 4px 10px; margin: 6px 0; }
details#traffic { grid-column: 1 / -1; }
details.panel > summary { font-weight: 600; cursor: pointer; padding: 4px 0; }
svg { max-width: 100%; height: auto; display: block; }
.tools { display: flex; gap: 10px; align-items: center; margin: 6px 0; font-size: .85em; color: #555; }
table { border-collapse: collapse; font-size: .9em; margin: 6px 0; width: 100%; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e2e2e2; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.t { max-width: 520px; overflow-wrap: anywhere; }
th button.sort { font: inherit; font-weight: 600; border: 0; background: none; padding: 0; cursor: pointer;
  color: inherit; }
th[aria-sort=ascending] button.sort::after { content: " \\25B2"; }
th[aria-sort=descending] button.sort::after { content: " \\25BC"; }
.empty { color: #666; font-style: italic; } .note { color: #555; font-size: .85em; }
"""
SCRIPT = Path(__file__).with_name("report.js").read_text(encoding="utf-8")
NUMERIC_CLASS = ' class="n"'


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(live: bool = False) -> str:
    """The page's policy: its own script and style (by hash) and nothing else; a served page may
    also fetch from and submit its filter form to its own origin."""
    own = "'self'" if live else "'none'"
    return (f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(CSS)}; img-src 'none'; "
            f"connect-src {own}; form-action {own}; base-uri 'none'")


CSP = content_security_policy()


@dataclass(frozen=True)
class Live:
    """What a served page adds: the warehouse version it shows (the script polls for a newer one),
    the poll interval, the filter form's current values and the hosts it offers."""

    version: str
    poll_ms: int = 2000
    date_from: str = ""
    date_to: str = ""
    host: str = ""
    hosts: tuple[str, ...] = ()


def build_report(warehouse: str | Path, flt: StatsFilter = StatsFilter(), title: str | None = None,
                 min_visitors: int | None = None, top_n: int = PAGE_TOP) -> str:
    """The HTML page (a str) of the usage statistics of `warehouse` within `flt`.

    title defaults to "Usage report" (plus the host when the filter has one). A warehouse, or
    a filter, with no data gives a page that says so. Raises AccesslogError for a missing
    warehouse or an inverted date range (from accesslog.stats).
    """
    con = connect(warehouse)
    try:
        reports = usage_stats(con, flt, REPORT_NAMES, top_n=top_n, min_visitors=min_visitors)
    finally:
        con.close()
    return render_page(reports, flt, default_title(title, flt), min_visitors)


def default_title(title: str | None, flt: StatsFilter) -> str:
    return title or ("Usage report" + (f" — {flt.host}" if flt.host else ""))


def render_page(reports: dict[str, pa.Table], flt: StatsFilter, title: str, min_visitors: int | None = None,
                live: Live | None = None) -> str:
    """Lay out `reports` (usage_stats' result for REPORT_NAMES) as the HTML page; `min_visitors`:
    the K the ranked tables were suppressed with, stated on the page; `live`: served by
    `accesslog serve` (filter form, live updates)."""
    totals = _row(reports["totals"])
    has_data = totals["requests"] > 0 or reports["errors_by_level"].num_rows > 0
    content = [_summary(totals, reports, flt)]
    if min_visitors and min_visitors > 1:
        content.append(f'<p id="min-visitors">Ranked tables show no row seen by fewer than {int(min_visitors)} '
                       f"distinct visitors: such rows are merged into one &quot;(fewer than {int(min_visitors)} "
                       "visitors)&quot; row.</p>")
    if not has_data:
        content.append('<p class="empty" id="no-data">No data: the warehouse has no requests or error-log entries '
                       'for this selection. Ingest logs with <code>accesslog run</code>, or widen '
                       '<code>--from</code>/<code>--to</code>/<code>--host</code>.</p>')
    else:
        content.append('<p class="note">Page views: GET/HEAD answered 2xx/304, without static assets and bots. '
                       'Visitors are counted per day (daily pseudonyms), so over several days they are '
                       'visitor-days. Request figures count every request, bots included.</p>')
        content += [_section(section, heading, names, reports) for section, heading, names in SECTIONS]
    body_attrs = "" if live is None else (f' data-live="1" data-version="{esc(live.version)}" '
                                          f'data-poll="{int(live.poll_ms)}"')
    header = f"<header><h1>{esc(title)}</h1>{_filters(live) if live else ''}"
    if has_data:
        header += "<nav>" + "".join(f'<a href="#{section}">{esc(heading)}</a>' for section, heading, _ in SECTIONS)
        header += "</nav>"
    header += "</header>"
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(content_security_policy(live is not None))}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body{body_attrs}>\n{header}\n"
            '<main id="content">\n' + "\n".join(content) + "\n</main>\n"
            f"<script>{SCRIPT}</script>\n</body></html>\n")


def _filters(live: Live) -> str:
    """The served page's filter form: its values go to the URL (?from=&to=&host=), which the server reads."""
    hosts = "".join(f'<option value="{esc(h)}">' for h in live.hosts)
    return ('<form id="filters" method="get">'
            f'<label>From <input name="from" value="{esc(live.date_from)}" placeholder="2026-11-01 or -7d"></label>'
            f'<label>To <input name="to" value="{esc(live.date_to)}" placeholder="today"></label>'
            f'<label>Host <input name="host" list="hosts" value="{esc(live.host)}" placeholder="all hosts"></label>'
            f'<datalist id="hosts">{hosts}</datalist><button type="submit">Apply</button></form>'
            '<p id="live-status" role="status">Live: the page updates when new data is committed.</p>')


# -- sections ------------------------------------------------------------------------------------

def _summary(totals: dict, reports: dict[str, pa.Table], flt: StatsFilter) -> str:
    first, last = totals.get("first_received_at"), totals.get("last_received_at")
    date_from = flt.date_from or (first.date() if first else None)
    date_to = flt.date_to or (last.date() if last else None)
    period = f"{date_from or '…'} to {date_to or '…'} (UTC days)" if date_from or date_to else "no requests"
    scope = [f"host {flt.host}"] if flt.host else []
    scope += [f"paths starting with {flt.path_prefix}"] if flt.path_prefix else []
    scope += [f"without paths {', '.join(flt.exclude_paths)}"] if flt.exclude_paths else []
    scope += [f"not pages: {', '.join(flt.not_pages)}"] if flt.not_pages else []
    figures = [("Requests", _count(totals["requests"])), ("Page views", _count(totals["pages"])),
               ("Visitor-days", _count(totals["visitor_days"])), ("Data sent", _bytes(totals["bytes"])),
               ("Days with requests", _count(totals["days"])),
               ("Error share (4xx+5xx)", _share(_row(reports["error_rate"]).get("error_share"))),
               ("Bot share of requests", _share(_row(reports["bot_share"]).get("share")))]
    cells = "".join(f"<div><dt>{esc(name)}</dt><dd>{esc(value)}</dd></div>" for name, value in figures)
    return (f'<p id="period">Period: <strong>{esc(period)}</strong>'
            + (f" — {esc('; '.join(scope))}" if scope else "") + f'</p><dl class="figures" id="totals">{cells}</dl>')


def _section(section: str, heading: str, names: tuple[str, ...], reports: dict[str, pa.Table]) -> str:
    panels = "".join(_panel(name, reports) for name in names)
    return f'<section id="{esc(section)}"><h2>{esc(heading)}</h2><div class="grid">{panels}</div></section>'


def _panel(name: str, reports: dict[str, pa.Table]) -> str:
    caption, opened, empty = PANELS[name]
    table = reports[name]
    if name == "traffic":
        content = _traffic(table)
    elif name == "sessions":
        content = _sessions(_row(table))
    elif name == "latency":
        content = _latency(table)
    elif not table.num_rows:
        content = f'<p class="empty">{esc(empty)}</p>'
    else:
        content = _chart(name, table) + _table(name, table, caption)
    return (f'<details class="panel" id="{esc(name)}"{" open" if opened else ""}><summary>{esc(caption)}</summary>'
            f"{content}</details>")


def _chart(name: str, table: pa.Table) -> str:
    rows = table.to_pylist()[:CHART_ROWS]
    if name == "status_classes":
        bars = [Bar(r["status_class"], r["requests"], f"{r['requests']:,} ({r['share']:.1%})",
                    STATUS_COLOURS.get(r["status_class"])) for r in rows]
        return bar_chart(name, bars, description="Requests by status class", unit="requests", label_chars=6)
    if name == "errors_by_level":
        bars = [Bar(r["level"] or "(none)", r["entries"], f"{r['entries']:,} ({r['share']:.1%})", PALETTE[3])
                for r in rows]
        return bar_chart(name, bars, description="Error-log entries by level", unit="entries", label_chars=8)
    if name not in CHARTS:
        return ""
    label, value, unit = CHARTS[name]
    if name == "hours_of_day":   # all 24 hours in order, also the ones without requests
        by_hour = {r["hour_utc"]: r[value] for r in table.to_pylist()}
        bars = [Bar(f"{h:02d}", by_hour.get(h, 0), _count(by_hour.get(h, 0))) for h in range(24)]
        return bar_chart(name, bars, description=f"{PANELS[name][0]}", unit=unit, label_chars=3)
    bars = [Bar(_label(r[label]), r[value], _count(r[value])) for r in rows]
    return bar_chart(name, bars, description=f"{PANELS[name][0]}", unit=unit)


def _traffic(traffic: pa.Table) -> str:
    rows = traffic.to_pylist()
    if not rows:
        return '<p class="empty">No requests.</p>'
    labels = [row["date"].isoformat() for row in rows]
    # Two scales: visitors are a fraction of requests and would be a flat line on the requests axis.
    chart = line_chart(labels, {"requests": [r["requests"] for r in rows]},
                       right={"unique visitors": [r["unique_visitors"] for r in rows]},
                       description="Requests (left axis) and unique visitors (right axis) per day", width=1180,
                       y_title="requests per day", right_title="visitors per day", x_title="day (UTC)")
    return (chart + '<p class="note">Visitors: distinct pseudonyms with a page view that day.</p>'
            + _table("traffic", traffic, PANELS["traffic"][0]))


def _latency(latency_table: pa.Table) -> str:
    latency = _row(latency_table)
    names = [c for c in latency_table.column_names if c.startswith("p") and c.endswith("_ms")]
    bars = [Bar(name.removesuffix("_ms"), latency[name], _ms(latency[name]), PALETTE[1])
            for name in names if latency.get(name) is not None]
    if not bars:
        return f'<p class="empty">{esc(PANELS["latency"][2])}</p>'
    return (f'<p class="note">Over {_count(latency.get("timed_requests") or 0)} timed requests.</p>'
            + bar_chart("latency", bars, description="Response time percentiles in milliseconds", unit="",
                        label_chars=6))


def _sessions(sessions: dict) -> str:
    figures = [("Visits", _count(sessions.get("visits") or 0)),
               ("Pages per visit", _number(sessions.get("pages_per_visit"))),
               ("Bounce rate (one-page visits)", _share(sessions.get("bounce_rate"))),
               ("Median visit duration", _seconds(sessions.get("median_duration_s")))]
    cells = "".join(f"<div><dt>{esc(name)}</dt><dd>{esc(value)}</dd></div>" for name, value in figures)
    return (f'<dl class="figures" id="sessions-figures">{cells}</dl>'
            '<p class="note">A visit is one pseudonym\'s page views on one host without a 30-minute gap.</p>')


# -- building blocks -----------------------------------------------------------------------------

def _table(name: str, table: pa.Table, caption: str) -> str:
    """A data table: numeric columns carry their raw value in data-v (the script sorts by it)."""
    columns = table.column_names
    numeric = {c: pa.types.is_integer(table.schema.field(c).type) or pa.types.is_floating(table.schema.field(c).type)
               for c in columns}
    head = "".join(f'<th{NUMERIC_CLASS if numeric[c] else ""} scope="col" '
                   f'data-type="{"num" if numeric[c] else "text"}">{esc(c)}</th>' for c in columns)
    rows = "".join("<tr>" + "".join(_cell(c, row[c], numeric[c]) for c in columns) + "</tr>"
                   for row in table.to_pylist())
    return (f'<table class="data" data-report="{esc(name)}" aria-label="{esc(caption)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _cell(column: str, value: object, numeric: bool) -> str:
    if value is None:
        return f'<td{NUMERIC_CLASS if numeric else ""} data-v="">–</td>'
    if isinstance(value, dt.date):
        return f"<td>{esc(value.isoformat())}</td>"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f'<td class="t">{esc(value)}</td>'
    if column in SHARE_COLUMNS:
        text = _share(value)
    elif column in LABEL_NUMBERS:
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:,.1f}"
    else:
        text = f"{value:,}"
    return f'<td class="n" data-v="{esc(value)}">{esc(text)}</td>'


def _row(table: pa.Table) -> dict:
    return table.to_pylist()[0] if table.num_rows else {}


def _label(value: object) -> str:
    return "(none)" if value is None else str(value)


def _count(value: int) -> str:
    return f"{value:,}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float) -> str:
    return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.0f} ms"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _bytes(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def write_page(path: Path, page: str) -> None:
    """Write atomically (temp file in the same folder, then rename): a reader never sees half a page."""
    if not path.parent.is_dir():
        raise AccesslogError(f"folder {path.parent} does not exist: create it or choose another -o path")
    if path.is_dir():
        raise AccesslogError(f"{path} is a folder: pass a file name with -o, e.g. {path / 'report.html'}")
    with replacing(path) as temp:
        temp.write_text(page, encoding="utf-8")
