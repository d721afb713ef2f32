"""A usage report as one self-contained static HTML page (`accesslog report`).

`build_report` runs the accesslog.stats reports over a warehouse and lays them out as a page
with inline CSS and inline SVG charts (accesslog.charts): no script, no font, no image file,
no URL, and a Content-Security-Policy that forbids loading anything, so the page can be
mailed, archived or opened offline and never calls out. Every value from the warehouse is
HTML-escaped (paths and referrers are user input). Without CSS the page still reads in order:
headings, numbers, charts (their labels are SVG text) and tables.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa

from accesslog.charts import PALETTE, Bar, bar_chart, esc, line_chart
from accesslog.stats import StatsFilter, connect, usage_stats
from schemas.errors import AccesslogError
from storage.warehouse import replacing

# The stats reports the page shows, in the order it needs them.
REPORT_NAMES = ("totals", "traffic", "status_classes", "error_rate", "latency", "latency_by_path", "top_pages",
                "browsers", "devices", "countries", "referrer_hosts", "sessions", "bot_share", "errors_by_level",
                "error_patterns")
STATUS_COLOURS = {"1xx": "#718096", "2xx": "#2f855a", "3xx": "#2b6cb0", "4xx": "#dd6b20", "5xx": "#c53030"}

CSS = """
body { font-family: system-ui, sans-serif; color: #222; max-width: 1240px; margin: 0 auto; padding: 16px 24px; }
header { border-bottom: 2px solid #2b6cb0; margin-bottom: 16px; }
h1 { margin: 0 0 4px; } h2 { margin: 28px 0 8px; font-size: 1.25em; }
dl.figures { display: flex; flex-wrap: wrap; gap: 8px 28px; margin: 12px 0; }
dl.figures div { min-width: 120px; } dt { color: #555; font-size: .85em; } dd { margin: 0; font-size: 1.35em; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 8px 32px; }
figure { margin: 8px 0 16px; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: .9em; margin: 6px 0; }
th, td { padding: 2px 10px; border-bottom: 1px solid #e2e2e2; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.path { max-width: 480px; overflow-wrap: anywhere; }
.empty { color: #666; font-style: italic; } .note { color: #555; font-size: .85em; }
"""
NUMERIC_CLASS = ' class="n"'
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'none'; base-uri 'none'"


def build_report(warehouse: str | Path, flt: StatsFilter = StatsFilter(), title: str | None = None,
                 min_visitors: int | None = None) -> str:
    """The HTML page (a str) of the usage statistics of `warehouse` within `flt`.

    title defaults to "Usage report" (plus the host when the filter has one). A warehouse, or
    a filter, with no data gives a page that says so. Raises AccesslogError for a missing
    warehouse or an inverted date range (from accesslog.stats).
    """
    con = connect(warehouse)
    try:
        reports = usage_stats(con, flt, REPORT_NAMES, min_visitors=min_visitors)
    finally:
        con.close()
    return render_page(reports, flt, title or ("Usage report" + (f" — {flt.host}" if flt.host else "")),
                       min_visitors)


def render_page(reports: dict[str, pa.Table], flt: StatsFilter, title: str, min_visitors: int | None = None) -> str:
    """Lay out `reports` (usage_stats' result for REPORT_NAMES) as the HTML page; `min_visitors`:
    the K the ranked tables were suppressed with, stated on the page."""
    totals = _row(reports["totals"])
    has_data = totals["requests"] > 0 or reports["errors_by_level"].num_rows > 0
    body = [_header(title, totals, reports, flt)]
    if min_visitors and min_visitors > 1:
        body.append(f'<p id="min-visitors">Ranked tables show no row seen by fewer than {int(min_visitors)} '
                    f"distinct visitors: such rows are merged into one &quot;(fewer than {int(min_visitors)} "
                    "visitors)&quot; row.</p>")
    if not has_data:
        body.append('<p class="empty" id="no-data">No data: the warehouse has no requests or error-log entries '
                    'for this selection. Ingest logs with <code>accesslog run</code>, or widen '
                    '<code>--from</code>/<code>--to</code>/<code>--host</code>.</p>')
    else:
        body += [_traffic(reports["traffic"]), _status(reports), _latency(reports),
                 '<h2 id="audience">Audience</h2><p class="note">Page views: GET/HEAD answered 2xx/304, without '
                 'static assets and bots. Visitors are counted per day (daily pseudonyms), so over several days '
                 'they are visitor-days.</p><div class="grid">',
                 _ranking(reports["top_pages"], "top_pages", "url_path", "pages", "Top pages", "page views"),
                 _ranking(reports["referrer_hosts"], "referrer_hosts", "referrer_host", "visitors",
                          "Referrer hosts", "visitors"),
                 _ranking(reports["browsers"], "browsers", "browser", "visitors", "Browsers", "visitors"),
                 _ranking(reports["devices"], "devices", "device", "visitors", "Devices", "visitors"),
                 _ranking(reports["countries"], "countries", "country", "visitors", "Countries", "visitors"),
                 "</div>", _sessions(_row(reports["sessions"])), _errors(reports)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# -- sections ------------------------------------------------------------------------------------

def _header(title: str, totals: dict, reports: dict[str, pa.Table], flt: StatsFilter) -> str:
    first, last = totals.get("first_received_at"), totals.get("last_received_at")
    date_from = flt.date_from or (first.date() if first else None)
    date_to = flt.date_to or (last.date() if last else None)
    period = f"{date_from or '…'} to {date_to or '…'} (UTC days)" if date_from or date_to else "no requests"
    scope = [f"host {flt.host}"] if flt.host else []
    scope += [f"paths starting with {flt.path_prefix}"] if flt.path_prefix else []
    figures = [("Requests", _count(totals["requests"])), ("Page views", _count(totals["pages"])),
               ("Visitor-days", _count(totals["visitor_days"])), ("Data sent", _bytes(totals["bytes"])),
               ("Days with requests", _count(totals["days"])),
               ("Error share (4xx+5xx)", _share(_row(reports["error_rate"]).get("error_share"))),
               ("Bot share of requests", _share(_row(reports["bot_share"]).get("share")))]
    cells = "".join(f"<div><dt>{esc(name)}</dt><dd>{esc(value)}</dd></div>" for name, value in figures)
    return (f'<header><h1>{esc(title)}</h1><p id="period">Period: <strong>{esc(period)}</strong>'
            + (f" — {esc(', '.join(scope))}" if scope else "") + f'</p><dl class="figures" id="totals">{cells}</dl>'
            "</header>")


def _traffic(traffic: pa.Table) -> str:
    rows = traffic.to_pylist()
    if not rows:
        return '<h2 id="traffic-heading">Traffic</h2>' + _figure("traffic", "Traffic per day",
                                                                  '<p class="empty">No requests.</p>')
    labels = [row["date"].isoformat() for row in rows]
    chart = line_chart(labels, {"requests": [r["requests"] for r in rows],
                                "unique visitors": [r["unique_visitors"] for r in rows]},
                       description="Requests and unique visitors per day", y_title="per day", x_title="day (UTC)")
    return '<h2 id="traffic-heading">Traffic</h2>' + _figure(
        "traffic", "Requests and unique visitors per day (visitors: distinct pseudonyms with a page view that day)",
        chart + _table(traffic, ["date", "requests", "pages", "unique_visitors"]))


def _status(reports: dict[str, pa.Table]) -> str:
    classes = reports["status_classes"].to_pylist()
    bars = [Bar(r["status_class"], r["requests"], f"{r['requests']:,} ({r['share']:.1%})",
                STATUS_COLOURS.get(r["status_class"])) for r in classes]
    chart = (bar_chart("status_classes", bars, description="Requests by status class", unit="requests",
                       label_chars=6) if bars else '<p class="empty">No requests.</p>')
    return ('<h2 id="status-heading">Status mix</h2>'
            + _figure("status_classes", "Requests by HTTP status class (all requests, bots included)", chart))


def _latency(reports: dict[str, pa.Table]) -> str:
    latency = _row(reports["latency"])
    names = [c for c in reports["latency"].column_names if c.startswith("p") and c.endswith("_ms")]
    bars = [Bar(name.removesuffix("_ms"), latency[name], _ms(latency[name]), PALETTE[1])
            for name in names if latency.get(name) is not None]
    chart = (bar_chart("latency", bars, description="Response time percentiles in milliseconds", unit="",
                       label_chars=6) if bars else '<p class="empty">No request has a response time (the log '
                                                   'format has no $request_time or %D).</p>')
    caption = f"Response time percentiles over {_count(latency.get('timed_requests') or 0)} timed requests"
    per_path = reports["latency_by_path"]
    table = _table(per_path, per_path.column_names) if per_path.num_rows else ""
    return ('<h2 id="latency-heading">Latency</h2>' + _figure("latency", caption, chart)
            + (_figure("latency_by_path", "Response time percentiles (ms) of the paths with most requests", table)
               if table else ""))


def _ranking(table: pa.Table, series: str, label: str, value: str, caption: str, unit: str) -> str:
    rows = table.to_pylist()
    bars = [Bar(_label(r[label]), r[value], _count(r[value])) for r in rows]
    chart = (bar_chart(series, bars, description=f"{caption} by {unit}", unit=unit) if bars
             else '<p class="empty">No page views.</p>')
    return _figure(series, f"{caption} (by {unit})", chart + (_table(table, table.column_names) if rows else ""))


def _sessions(sessions: dict) -> str:
    figures = [("Visits", _count(sessions.get("visits") or 0)),
               ("Pages per visit", _number(sessions.get("pages_per_visit"))),
               ("Bounce rate (one-page visits)", _share(sessions.get("bounce_rate"))),
               ("Median visit duration", _seconds(sessions.get("median_duration_s")))]
    cells = "".join(f"<div><dt>{esc(name)}</dt><dd>{esc(value)}</dd></div>" for name, value in figures)
    return (f'<h2 id="sessions-heading">Sessions</h2><dl class="figures" id="sessions">{cells}</dl>'
            '<p class="note">A visit is one pseudonym\'s page views on one host without a 30-minute gap.</p>')


def _errors(reports: dict[str, pa.Table]) -> str:
    levels = reports["errors_by_level"].to_pylist()
    bars = [Bar(r["level"] or "(none)", r["entries"], f"{r['entries']:,} ({r['share']:.1%})", PALETTE[3])
            for r in levels]
    chart = (bar_chart("errors_by_level", bars, description="Error-log entries by level", unit="entries",
                       label_chars=8) if bars else '<p class="empty">No error-log entries.</p>')
    patterns = reports["error_patterns"]
    return ('<h2 id="errors-heading">Errors</h2>' + _figure("errors_by_level", "Error-log entries by level", chart)
            + (_figure("error_patterns", "Most frequent error messages", _table(patterns, patterns.column_names))
               if patterns.num_rows else ""))


# -- building blocks -----------------------------------------------------------------------------

def _figure(name: str, caption: str, content: str) -> str:
    return f'<figure id="{esc(name)}"><figcaption>{esc(caption)}</figcaption>{content}</figure>'


def _table(table: pa.Table, columns: list[str]) -> str:
    numeric = {c: pa.types.is_integer(table.schema.field(c).type) or pa.types.is_floating(table.schema.field(c).type)
               for c in columns}
    head = "".join(f'<th{NUMERIC_CLASS if numeric[c] else ""} scope="col">{esc(c)}</th>' for c in columns)
    rows = "".join("<tr>" + "".join(_cell(row[c], numeric[c]) for c in columns) + "</tr>" for row in table.to_pylist())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value: object, numeric: bool) -> str:
    if value is None:
        return f"<td{NUMERIC_CLASS if numeric else ''}>–</td>"
    if isinstance(value, float):
        return f'<td class="n">{esc(f"{value:,.1f}")}</td>'
    if isinstance(value, int):
        return f'<td class="n">{esc(f"{value:,}")}</td>'
    if isinstance(value, dt.date):
        return f"<td>{esc(value.isoformat())}</td>"
    return f'<td class="path">{esc(value)}</td>'


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
