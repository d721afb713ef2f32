"""Sessionize: batch (FnApiRunner) and streaming (BundleBasedDirectRunner + TestStream)."""
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp

from schemas import SESSIONS
from transforms.parse import RecordChunk
from transforms.sessionize import COUNTER_NAMESPACE, Sessionize, _ExplodeRequests, page_view_mask, rows_to_chunk
from transforms.write import WriteParquetPartitions

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
COLUMNS = ("client_id", "host", "received_at", "url_path", "bytes_sent", "status", "method", "is_bot")
SESSION_COLUMNS = [f.name for f in SESSIONS]


def at(minutes=0, seconds=0, base=T0):
    return base + timedelta(minutes=minutes, seconds=seconds)


def req(client, host, when, path="/", sent=100, status=200, method="GET", bot=False):
    return (client, host, when, path, sent, status, method, bot)


def access_chunk(rows, first_line=1):
    cols = list(zip(*rows)) if rows else [[]] * len(COLUMNS)
    types = [pa.string(), pa.string(), pa.timestamp("us", tz="UTC"), pa.string(), pa.int64(), pa.int16(),
             pa.string(), pa.bool_()]
    table = pa.table({name: pa.array(list(col), t) for name, col, t in zip(COLUMNS, cols, types)})
    return RecordChunk("access.log", "feedfacecafebeef", first_line, len(rows), table)


def session_rows(chunk):
    """RecordChunk -> tuples of the sessions columns."""
    return [tuple(r[c] for c in SESSION_COLUMNS) for r in chunk.records.to_pylist()]


def session(client, host, start, end, requests, pages, sent, entry, exit_):
    return (client, host, start, end, requests, pages, sent, entry, exit_)


def batch_pipeline():
    return BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def streaming_pipeline():
    options = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    options.view_as(StandardOptions).streaming = True
    return BeamTestPipeline(options=options)


def counter(result, name):
    found = result.metrics().query(MetricsFilter().with_namespace(COUNTER_NAMESPACE).with_name(name))["counters"]
    return sum(c.committed if c.committed is not None else c.attempted for c in found)


# -- batch --------------------------------------------------------------------------------------

MIDNIGHT = datetime(2026, 11, 21, tzinfo=UTC)
BATCH_CHUNKS = [
    access_chunk([
        req("a", "h1", at(0), "/", sent=100),
        req("a", "h1", at(0, 5), "/static/app.CSS", sent=5000),          # asset: request, not page
        req("a", "h1", at(29, 59), "/pricing", sent=None),                # gap 29:54 (below 30 min)
        req("a", "h2", at(10), "/x", sent=7),                             # other host: own session
        req(None, "h1", at(1), "/", sent=1),                              # no client_id: skipped
        req("b", "h1", at(0), "/", bot=True),                             # bot: not a page
        req("b", "h1", at(1), "/login", method="POST"),                   # POST: not a page
        req("b", "h1", at(2), "/missing", status=404),                    # 404: not a page
    ], first_line=1),
    access_chunk([
        req("a", "h1", at(59, 59), "/about", status=304, method="HEAD", sent=0),  # gap exactly 30:00: same
        req("a", "h1", at(89, 59) + timedelta(milliseconds=1), "/z", sent=1),     # gap 30:00.001: new
        req("a", "h1", at(89, 59) + timedelta(milliseconds=1), "/blog", sent=2),  # same µs: tie by path
        req("a", "h1", at(95), "/feed.xml", sent=3),                            # asset after last page
        req("c", None, MIDNIGHT - timedelta(minutes=10), "/late-night"),         # spans midnight (same
        req("c", None, MIDNIGHT + timedelta(minutes=10), "/morning"),            #  client_id): 2 sessions
    ], first_line=9),
]
BATCH_SESSIONS = [
    session("a", "h1", at(0), at(59, 59), 4, 3, 5100, "/", "/about"),
    session("a", "h1", at(89, 59) + timedelta(milliseconds=1), at(95), 3, 2, 6, "/blog", "/z"),
    session("a", "h2", at(10), at(10), 1, 1, 7, "/x", "/x"),
    session("b", "h1", at(0), at(2), 3, 0, 300, None, None),
    session("c", None, MIDNIGHT - timedelta(minutes=10), MIDNIGHT - timedelta(minutes=10), 1, 1, 100,
            "/late-night", "/late-night"),
    session("c", None, MIDNIGHT + timedelta(minutes=10), MIDNIGHT + timedelta(minutes=10), 1, 1, 100,
            "/morning", "/morning"),
]


def test_page_view_rule():
    chunk = access_chunk([
        req("a", "h", at(0), "/"), req("a", "h", at(0), "/a.JSON"), req("a", "h", at(0), "/v1.2/report"),
        req("a", "h", at(0), "/", method="HEAD", status=304), req("a", "h", at(0), "/", status=301),
        req("a", "h", at(0), "/", bot=None), req("a", "h", at(0), "/", bot=True), req("a", "h", at(0), None),
        req("a", "h", at(0), "/", method="POST"), req("a", "h", at(0), "/woff2.html"),
    ])
    assert page_view_mask(chunk.records).tolist() == [True, False, True, True, False, True, False, False, False,
                                                      True]


def test_sessionize_batch():
    p = batch_pipeline()
    sessions = p | beam.Create(BATCH_CHUNKS) | Sessionize(gap_minutes=30)
    assert_that(sessions | beam.FlatMap(session_rows), equal_to(BATCH_SESSIONS), label="sessions")
    assert_that(sessions | beam.Map(lambda c: (c.table, c.lines, c.source)) | beam.Distinct(),
                equal_to([("sessions", 0, "sessionize")]), label="chunk metadata")
    result = p.run()
    result.wait_until_finish()
    assert counter(result, "requests_without_client_id") == 1
    assert counter(result, "requests") == 13


def test_sessionize_batch_gap_is_configurable():
    rows = [req("a", "h", at(0), "/one"), req("a", "h", at(10), "/two"), req("a", "h", at(25), "/three")]
    with batch_pipeline() as p:
        sessions = p | beam.Create([access_chunk(rows)]) | Sessionize(gap_minutes=12)
        assert_that(sessions | beam.FlatMap(session_rows),
                    equal_to([session("a", "h", at(0), at(10), 2, 2, 200, "/one", "/two"),
                              session("a", "h", at(25), at(25), 1, 1, 100, "/three", "/three")]))


def test_sessionize_batch_long_sessions_across_chunks():
    """A chunk's run of requests longer than the gap travels as one partial session (plus markers);
    requests from other chunks merge with it exactly as single requests would."""
    steady = [req("a", "h", at(m), f"/p{m}") for m in range(0, 101, 20)]          # 10:00..11:40, every 20 min
    other = [req("a", "h", at(50), "/inside"), req("a", "h", at(129), "/after"),  # 29 min after 11:40
             req("a", "h", at(160), "/new-visit"),                                # 31 min after 12:09
             req("a", "h", at(-30), "/before")]                                   # exactly 30 min before
    with batch_pipeline() as p:
        sessions = p | beam.Create([access_chunk(steady), access_chunk(other, 7)]) | Sessionize()
        assert_that(sessions | beam.FlatMap(session_rows),
                    equal_to([session("a", "h", at(-30), at(129), 9, 9, 900, "/before", "/after"),
                              session("a", "h", at(160), at(160), 1, 1, 100, "/new-visit", "/new-visit")]))


def test_explode_sends_partial_sessions_with_markers_at_most_a_gap_apart():
    gap = 30 * 60_000_000
    rows = [req("a", "h", at(m), "/") for m in (0, 1, 2, 20, 40, 60, 61, 62, 63, 120)]
    rows += [req("b", "h", at(0), "/x.css")]
    out = list(_ExplodeRequests(gap).process(access_chunk(rows)))
    by_key = {}
    for tv in out:
        (client, _host, _day), acc = tv.value
        by_key.setdefault(client, []).append((tv.timestamp.micros, acc[0]))
    a = sorted(by_key["a"])
    # partial 10:00-11:03 (9 requests) as markers + its accumulator at 11:03; 12:00 alone
    assert [n for _, n in a] == [0, 0, 0, 9, 1] and a[3][0] == ts(at(63)).micros
    stamps = [t for t, _ in a[:4]]
    assert stamps[0] == ts(at(0)).micros and all(b - a_ <= gap for a_, b in zip(stamps, stamps[1:]))
    assert by_key["b"] == [(ts(at(0)).micros, 1)]


def test_sessionize_writes_sessions_partitions(tmp_path):
    with batch_pipeline() as p:
        (p | beam.Create(BATCH_CHUNKS) | Sessionize()
           | WriteParquetPartitions(str(tmp_path), "run1", "sessions"))
    staged = tmp_path / "_staging" / "run1" / "sessions"
    days = sorted(d.name for d in staged.iterdir())
    assert days == ["date=2026-11-20", "date=2026-11-21"]
    table = pa.concat_tables([pq.read_table(f) for f in sorted(staged.rglob("*.parquet"))])
    assert table.column_names == SESSION_COLUMNS  # the in-memory _pane columns are not written
    got = [tuple(r[c] for c in SESSION_COLUMNS) for r in table.to_pylist()]
    assert sorted(got, key=str) == sorted(BATCH_SESSIONS, key=str)


def test_rows_to_chunk_is_deterministic():
    rows = [{"client_id": "a", "host": "h", "session_start": 2, "session_end": 3, "requests": 1, "pages": 1,
             "bytes_sent": 5, "entry_path": "/", "exit_path": "/", "_pane_index": 0, "_pane_timing": "ON_TIME",
             "_pane_is_last": True},
            {"client_id": "b", "host": None, "session_start": 1, "session_end": 1, "requests": 1, "pages": 0,
             "bytes_sent": 0, "entry_path": None, "exit_path": None, "_pane_index": 0,
             "_pane_timing": "ON_TIME", "_pane_is_last": True}]
    one, two = rows_to_chunk(rows), rows_to_chunk(rows[::-1])
    assert one.input_id == two.input_id and one.records.equals(two.records)
    assert one.records["client_id"].to_pylist() == ["b", "a"]
    assert one.table == "sessions" and one.lines == 0


# -- streaming ----------------------------------------------------------------------------------


def ts(when):
    return Timestamp(micros=int(when.timestamp() * 1_000_000))


def event(*rows):
    """One access chunk, stamped with its first request's time."""
    return beam.window.TimestampedValue(access_chunk(list(rows)), ts(rows[0][2]))


def pane_rows(chunk):
    return [tuple(r[c] for c in SESSION_COLUMNS) + (r["_pane_timing"],) for r in chunk.records.to_pylist()]


def final_panes(rows):
    """The last pane of each session: a session's rows are superseded by a later pane whose range covers
    them (the downstream upsert rule in transforms.sessionize)."""
    final = []
    for row in rows:
        covered = [o for o in rows if o is not row and o[:2] == row[:2] and o[2] <= row[2] and row[3] <= o[3]
                   and (o[4], o[2], o[3]) > (row[4], row[2], row[3])]
        if not covered:
            final.append(row[:9])
    return final


def test_sessionize_streaming_late_event_merges_sessions_and_too_late_is_dropped():
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([event(req("a", "h1", at(0), "/"), req("a", "h1", at(5), "/docs"))])
              .add_elements([event(req("a", "h1", at(50), "/pricing"), req("b", "h2", at(51), "/"))])
              .add_elements([event(req("a", "h1", at(55), "/buy", sent=1000))])
              # watermark jump: every window so far closes (on time)
              .advance_watermark_to(ts(at(90)))
              # late but within allowed lateness (own window ends 10:58 + 60 min): fills the 45 min
              # gap between 10:05 and 10:50, so both sessions merge into one
              .add_elements([event(req("a", "h1", at(28), "/late", sent=1))])
              .advance_watermark_to(ts(at(120)))
              # beyond allowed lateness (own window 09:45-10:15, + 60 min < 12:00): dropped, even
              # though it would have extended the merged session
              .add_elements([event(req("a", "h1", at(-15), "/too-late"))])
              .advance_watermark_to_infinity())
    p = streaming_pipeline()
    sessions = p | stream | Sessionize(gap_minutes=30, allowed_lateness_minutes=60)
    panes = sessions | "Panes" >> beam.FlatMap(pane_rows)
    expected_panes = [
        session("a", "h1", at(0), at(5), 2, 2, 200, "/", "/docs") + ("ON_TIME",),
        session("a", "h1", at(50), at(55), 2, 2, 1100, "/pricing", "/buy") + ("ON_TIME",),
        session("b", "h2", at(51), at(51), 1, 1, 100, "/", "/") + ("ON_TIME",),
        session("a", "h1", at(0), at(55), 5, 5, 1301, "/", "/buy") + ("LATE",),
    ]
    assert_that(panes, equal_to(expected_panes), label="panes")
    final = equal_to([session("a", "h1", at(0), at(55), 5, 5, 1301, "/", "/buy"),
                      session("b", "h2", at(51), at(51), 1, 1, 100, "/", "/")])
    assert_that(panes, lambda actual: final(final_panes(actual)), label="final panes")
    # 7 requests went in; the final panes hold 6: the one beyond allowed lateness was dropped.
    # (The `requests` counter is not asserted here: on BundleBasedDirectRunner with TestStream,
    # user counters of the bundles after the first were not reported (Beam 2.77); batch checks it.)
    p.run().wait_until_finish()


def test_sessionize_streaming_on_time_sessions_close_at_end_plus_gap():
    """A session fires when the watermark passes session_end + gap: an event 29 minutes after the last
    one, arriving while the watermark is at +29 min, still joins the (not yet fired) session."""
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([event(req("a", "h1", at(0), "/"))])
              .advance_watermark_to(ts(at(29)))
              .add_elements([event(req("a", "h1", at(29), "/next"))])
              .advance_watermark_to(ts(at(58)))     # before 10:29 + 30 min: nothing fires
              .add_elements([event(req("a", "h1", at(58), "/third"))])
              .advance_watermark_to(ts(at(200)))
              .add_elements([event(req("a", "h1", at(201), "/again"))])
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        panes = p | stream | Sessionize() | beam.FlatMap(pane_rows)
        assert_that(panes, equal_to([
            session("a", "h1", at(0), at(58), 3, 3, 300, "/", "/third") + ("ON_TIME",),
            session("a", "h1", at(201), at(201), 1, 1, 100, "/again", "/again") + ("ON_TIME",),
        ]))


@pytest.mark.parametrize("gap_minutes", [0, -1])
def test_sessionize_rejects_bad_gap(gap_minutes):
    with pytest.raises(ValueError):
        Sessionize(gap_minutes=gap_minutes)
