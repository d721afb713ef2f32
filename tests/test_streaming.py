"""pipelines.streaming on BundleBasedDirectRunner --streaming with TestStream of raw line bytes."""
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.utils.timestamp import Timestamp

from pipelines.batch import RunConfig, run_batch
from pipelines.entry import flag_name
from pipelines.options import AccessLogOptions
from pipelines.settings import Settings
from pipelines.streaming import StreamingConfig, build_streaming_pipeline, main, read_source
from schemas.errors import AccesslogError, SettingError
from storage.keystore import Keystore
from transforms.formats import resolve_format
from transforms.scrub import Scrubber
from transforms.windows import pane_file_name, source_id

UTC = timezone.utc
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, tzinfo=UTC)
SOURCE = "kafka:nginx"
SID = source_id(SOURCE)


def at(minutes=0.0, base=T0):
    return base + timedelta(minutes=minutes)


def ts(when):
    return Timestamp(micros=int(when.timestamp() * 1_000_000))


def line(when, path="/", ip="198.51.100.23"):
    return (f'{ip} - - [{when:%d/%b/%Y:%H:%M:%S} +0000] "GET {path}?token=s3cret HTTP/1.1" 200 512 '
            f'"-" "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"').encode()


def run_stream(stream, tmp_path, retention_days=90, window_minutes=5, lateness=10, sessions=False, rolling=False,
               early=0):
    options = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    options.view_as(StandardOptions).streaming = True
    warehouse = tmp_path / "wh"
    warehouse.mkdir(parents=True, exist_ok=True)
    keystore = Keystore(tmp_path / "keys.json")
    p = beam.Pipeline(options=options)
    config = StreamingConfig(Settings(warehouse=str(warehouse), retention_days=retention_days), source="kafka",
                             bootstrap_servers="k:9092", topic="nginx", window_minutes=window_minutes,
                             allowed_lateness_minutes=lateness, sessions=sessions, early_firing_seconds=early)
    build_streaming_pipeline(p | stream, config, resolve_format("combined"), keystore, Scrubber(), str(warehouse),
                             NOW, rolling_now=rolling)
    p.run().wait_until_finish()
    return warehouse


def access_files(warehouse: Path) -> dict[str, list[str]]:
    """file name -> url_paths it holds (sorted)."""
    return {f.name: sorted(pq.read_table(f)["url_path"].to_pylist())
            for f in sorted(warehouse.glob("access/date=*/*.parquet"))}


def rejects(warehouse: Path) -> list[tuple]:
    rows = []
    for f in sorted(warehouse.glob("rejects/date=*/*.parquet")):
        rows += [(r["reason"], r["source"], r["line"]) for r in pq.read_table(f).to_pylist()]
    return rows


def wname(when, pane):
    return pane_file_name(SID, ts(when), pane)


def test_on_time_pane_then_late_pane_as_second_file(tmp_path):
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a"), line(at(2), "/b"), line(at(6), "/c")])
              .advance_watermark_to(ts(at(12)))        # windows 10:00 and 10:05 fire on time
              .add_elements([line(at(3), "/late")])    # 10:00 window closes at 10:05 + 10 min: still allowed
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    assert access_files(warehouse) == {
        wname(at(0), 0): ["/a", "/b"],
        wname(at(0), 1): ["/late"],
        wname(at(5), 0): ["/c"],
    }
    assert all(p.parent.name == "date=2026-11-20" for p in warehouse.glob("access/*/*.parquet"))
    table = pq.read_table(next(warehouse.glob("access/*/*-p0.parquet")))
    assert set(table["url_query"].to_pylist()) == {"token=REDACTED"}
    assert "198.51.100.23" not in str(table.to_pylist())
    assert rejects(warehouse) == []
    assert not list(warehouse.rglob(".*.tmp"))


def test_early_on_time_and_late_panes(tmp_path):
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/early")])
              .advance_processing_time(61)             # early firing after 60 s of processing time
              .add_elements([line(at(2), "/on-time")])
              .advance_watermark_to(ts(at(6)))         # the watermark passes the window's end
              .add_elements([line(at(3), "/late")])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path, early=60)
    assert access_files(warehouse) == {wname(at(0), 0): ["/early"], wname(at(0), 1): ["/on-time"],
                                       wname(at(0), 2): ["/late"]}


def test_beyond_allowed_lateness_not_written_but_rejected_as_late(tmp_path):
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a")])
              .advance_watermark_to(ts(at(30)))        # 10:00 window: end 10:05 + 10 min < 10:30
              .add_elements([line(at(2), "/too-late"), line(at(31), "/next")])
              # too late for a window that never had data (09:40 closes at 09:55): rejected too
              .add_elements([line(at(-20), "/unseen-window")])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    assert access_files(warehouse) == {wname(at(0), 0): ["/a"], wname(at(30), 0): ["/next"]}
    assert rejects(warehouse) == [("late", SOURCE, None)] * 2
    for reject_file in warehouse.glob("rejects/*/*.parquet"):
        assert reject_file.parent.name == "date=2026-11-20"      # filed under the record's own date
        assert pq.read_table(reject_file)["source_line"].to_pylist()[0] >= 1   # position in the stream


def test_every_line_is_written_or_rejected(tmp_path):
    """Conservation under a stream of on-time, late, too-late (seen and unseen windows), expired
    and unparsable lines: nothing is silently dropped."""
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(m), f"/on{m}") for m in (1, 4, 6, 11)] + [b"junk"])
              .advance_watermark_to(ts(at(18)))
              .add_elements([line(at(9), "/late-ok"), line(at(2), "/late-ok2")])
              .advance_watermark_to(ts(at(45)))
              .add_elements([line(at(3), "/gone"), line(at(-30), "/never-seen"), line(at(44), "/now"),
                             line(at(-60 * 24 * 200), "/expired")])
              .advance_watermark_to(ts(at(200)))
              .add_elements([line(at(100), "/unseen-but-after-horizon")])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    written = sorted(p for paths in access_files(warehouse).values() for p in paths)
    assert written == sorted(["/on1", "/on4", "/on6", "/on11", "/late-ok", "/now",
                              # its window (11:40) closes after the last close the gate saw pass
                              # (10:55): let through as a late pane, not dropped by Beam
                              "/unseen-but-after-horizon"])
    # /late-ok2 (window 10:00 closed at 10:15), /gone, /never-seen (window 09:30, never had data)
    assert Counter(r[0] for r in rejects(warehouse)) == {
        "late": 3, "expired": 1, "line does not match log format 'combined'": 1}


def test_watermark_jump_closes_several_windows(tmp_path):
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a"), line(at(7), "/b")])
              .add_elements([line(at(12), "/c"), line(at(13), "/d")])
              .advance_watermark_to(ts(at(60)))
              .add_elements([line(at(61), "/e")])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    assert access_files(warehouse) == {
        wname(at(0), 0): ["/a"], wname(at(5), 0): ["/b"], wname(at(10), 0): ["/c", "/d"],
        wname(at(60), 0): ["/e"],
    }


def test_expired_records_go_to_rejects(tmp_path):
    # retention 3 days before 2026-11-24: 2026-11-20 has expired, 2026-11-23 has not
    recent = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/old"), line(recent, "/new"), b"not a log line"])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path, retention_days=3)
    assert access_files(warehouse) == {wname(recent, 0): ["/new"]}
    assert sorted(rejects(warehouse)) == [
        ("expired", SOURCE, None),                          # no content kept past retention
        ("line does not match log format 'combined'", SOURCE, "not a log line"),
    ]
    [expired_file] = warehouse.glob("rejects/*/*-x*.parquet")
    assert expired_file.parent.name == "date=2026-11-24"   # filed under --now, not the expired day


def test_without_now_expiry_follows_the_clock(tmp_path):
    """A long-running job (no --now) expires against the current time of each chunk, not the start."""
    day = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)     # kept at NOW (11-24) - 3 days; expired at the clock
    def stream():
        return BeamTestStream().advance_watermark_to(ts(day)).add_elements([line(day, "/a")])
    fixed = run_stream(stream(), tmp_path / "fixed", retention_days=3)
    assert access_files(fixed) == {wname(day, 0): ["/a"]}
    assert datetime.now(UTC) > datetime(2026, 11, 25, 12, tzinfo=UTC)
    rolling = run_stream(stream(), tmp_path / "rolling", retention_days=3, rolling=True)
    assert access_files(rolling) == {}
    assert rejects(rolling) == [("expired", SOURCE, None)]


def _rows(warehouse: Path) -> Counter:
    out = Counter()
    for f in warehouse.glob("access/date=*/*.parquet"):
        for r in pq.read_table(f).to_pylist():
            r.pop("source")
            r.pop("source_line")
            out[tuple(sorted((k, repr(v)) for k, v in r.items()))] += 1
    return out


def test_windowed_output_equals_batch_output(tmp_path):
    ips = ["198.51.100.23", "203.0.113.77", "2001:db8:abcd:12::7"]
    whens = [at(m) for m in (0.5, 1, 4.9, 5, 9, 14, 22, 23.5)] + [datetime(2026, 11, 21, 23, 58, tzinfo=UTC),
                                                                  datetime(2026, 11, 22, 0, 3, tzinfo=UTC)]
    lines = [line(w, f"/p{i}", ips[i % 3]) for i, w in enumerate(whens)]
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements(lines[:5])
              .add_elements(lines[5:])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    result = run_batch(RunConfig(Settings(warehouse=str(tmp_path / "batch"), log_format="combined",
                                          keys=str(tmp_path / "keys.json"), now=NOW.isoformat()), inputs=[str(log)],
                                 beam_args=["--runner=FnApiRunner"]))
    assert result.ok
    streamed, batched = _rows(warehouse), _rows(tmp_path / "batch")
    assert sum(batched.values()) == len(lines)
    assert streamed == batched
    # several windows and both day partitions were written
    assert len(list(warehouse.glob("access/date=*/*.parquet"))) >= 5
    assert {p.name for p in warehouse.glob("access/date=*")} == {"date=2026-11-20", "date=2026-11-21",
                                                               "date=2026-11-22"}


# -- sessions ----------------------------------------------------------------------------------


def session_rows(warehouse: Path) -> list[tuple]:
    """(client_id, session_start, session_end, requests, pages, entry, exit), sorted."""
    files = sorted(warehouse.glob("sessions/date=*/*.parquet"))
    assert all(f.name == "sessions.parquet" for f in files)
    return sorted((r["client_id"], r["session_start"], r["session_end"], r["requests"], r["pages"],
                   r["entry_path"], r["exit_path"]) for f in files for r in pq.read_table(f).to_pylist())


def test_streaming_sessions_upsert_late_panes_and_merges(tmp_path):
    ip2 = "203.0.113.77"
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(0), "/a"), line(at(10), "/b"),          # visit 1 of client 1
                             line(at(60), "/c"),                              # visit 2 (gap 50 min)
                             line(at(5), "/x", ip2)])                         # client 2
              .advance_watermark_to(ts(at(95)))                               # all three fire on time
              .add_elements([line(at(35), "/fill")])                          # 25 min after /b, 25 before /c
              .add_elements([line(at(6), "/y", ip2)])                         # extends client 2, same range + 1 min
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path, lateness=90, sessions=True)
    rows = session_rows(warehouse)
    assert sorted((r[1], r[2], r[3], r[5], r[6]) for r in rows) == [
        (at(0), at(60), 4, "/a", "/c"),              # the merge replaced both halves
        (at(5), at(6), 2, "/x", "/y"),               # the late pane replaced the on-time one
    ]
    assert len({r[0] for r in rows}) == 2
    # the merged session's requests are the access rows written
    assert sum(len(v) for v in access_files(warehouse).values()) == 6


def test_streaming_sessions_equal_batch_sessions_and_replay_is_idempotent(tmp_path):
    ips = ["198.51.100.23", "203.0.113.77", "2001:db8:abcd:12::7"]
    minutes = [0.5, 1, 4.9, 5, 9, 14, 22, 23.5, 31, 70, 71, 140, 141.5, 175]
    lines = [line(at(m), f"/p{i}", ips[i % 3]) for i, m in enumerate(minutes)]
    lines += [line(datetime(2026, 11, 21, 23, 58, tzinfo=UTC), "/late-night"),
              line(datetime(2026, 11, 22, 0, 3, tzinfo=UTC), "/after-midnight")]   # two days: two sessions

    def stream():
        return (BeamTestStream()
                .advance_watermark_to(ts(at(0)))
                .add_elements(lines[:6])
                .advance_watermark_to(ts(at(30)))
                .add_elements(lines[6:])
                .advance_watermark_to_infinity())
    warehouse = run_stream(stream(), tmp_path, sessions=True)
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    result = run_batch(RunConfig(Settings(warehouse=str(tmp_path / "batch"), log_format="combined",
                                          keys=str(tmp_path / "keys.json"), now=NOW.isoformat()), inputs=[str(log)], sessions=True,
                                 beam_args=["--runner=FnApiRunner"]))
    assert result.ok
    streamed = session_rows(warehouse)
    assert streamed == session_rows(tmp_path / "batch")
    assert sum(r[3] for r in streamed) == len(lines) and len(streamed) >= 6
    before = {f: f.read_bytes() for f in warehouse.glob("sessions/date=*/*.parquet")}
    run_stream(stream(), tmp_path, sessions=True)
    assert {f: f.read_bytes() for f in warehouse.glob("sessions/date=*/*.parquet")} == before


# -- options ------------------------------------------------------------------------------------


def config(*argv):
    return from_options(["--warehouse", "wh", *argv])


def from_options(argv):
    """As `python -m pipelines.streaming` reads its options, and says what is wrong with them."""
    try:
        return StreamingConfig.from_namespace(PipelineOptions(argv).view_as(AccessLogOptions))
    except SettingError as e:
        raise AccesslogError(e.render(flag_name)) from None


def test_kafka_options():
    c = config("--source", "kafka", "--bootstrap-servers", "k:9092", "--topic", "nginx",
               "--consumer-group", "g", "--window-minutes", "1")
    assert (c.bootstrap_servers, c.topic, c.consumer_group, c.window_minutes) == ("k:9092", "nginx", "g", 1)
    assert (c.allowed_lateness_minutes, c.session_gap_minutes, c.settings.retention_days) == (10, 30, 90)
    assert c.source_name == "kafka:nginx"
    with pytest.raises(AccesslogError, match="--bootstrap-servers and --topic"):
        config("--source", "kafka")
    with pytest.raises(AccesslogError, match="needs --topic"):
        config("--source", "kafka", "--bootstrap-servers", "k:9092")
    from pipelines.streaming import kafka_expansion
    assert kafka_expansion(c) == {}
    c = config("--source", "kafka", "--bootstrap-servers", "k:9092", "--topic", "t",
               "--kafka-expansion-service", "localhost:8097")
    assert kafka_expansion(c) == {"expansion_service": "localhost:8097"}
    with pytest.raises(AccesslogError, match="host:port"):
        config("--source", "kafka", "--bootstrap-servers", "k:9092", "--topic", "t",
               "--kafka-expansion-service", "http://x")


def test_pubsub_options():
    assert config("--source", "pubsub", "--subscription", "projects/my-proj/subscriptions/s").subscription \
        == "projects/my-proj/subscriptions/s"
    with pytest.raises(AccesslogError, match="not a Google Cloud project id"):
        config("--source", "pubsub", "--subscription", "projects/p/subscriptions/s")
    with pytest.raises(AccesslogError, match="projects/PROJECT/subscriptions/NAME"):
        config("--source", "pubsub")
    with pytest.raises(AccesslogError, match="projects/PROJECT/subscriptions/NAME"):
        config("--source", "pubsub", "--subscription", "projects/p/topics/t")


def test_files_options(tmp_path):
    c = config("--source", "files", "--file-pattern", "/var/log/*.log")
    assert (c.file_pattern, c.source_name) == ("/var/log/*.log", "files:/var/log/*.log")
    # the source builds (it runs on Flink/Dataflow/Prism, not on BundleBasedDirectRunner: docs/architecture.md)
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"]))
    assert read_source(p, c) is not None
    with pytest.raises(AccesslogError, match="--file-pattern"):
        config("--source", "files")


def test_general_options():
    with pytest.raises(AccesslogError, match="--source"):
        config()
    with pytest.raises(AccesslogError, match="--window-minutes"):
        config("--source", "files", "--file-pattern", "x", "--window-minutes", "0")
    with pytest.raises(AccesslogError, match="--allowed-lateness-minutes"):
        config("--source", "files", "--file-pattern", "x", "--allowed-lateness-minutes", "-1")
    with pytest.raises(AccesslogError, match="warehouse"):
        from_options(["--source", "files", "--file-pattern", "x"])
    assert not config("--source", "files", "--file-pattern", "x").sessions
    c = config("--source", "files", "--file-pattern", "x", "--sessions", "--session-gap-minutes", "20")
    assert (c.sessions, c.session_gap_minutes) == (True, 20)
    for flag in (["--max-reject-ratio", "0.1"], ["--chunk-bytes", "1000"], ["--apply-retention"]):
        with pytest.raises(AccesslogError, match=f"{flag[0]}: batch-only"):
            config("--source", "files", "--file-pattern", "x", *flag)
    with pytest.raises(AccesslogError, match="--early-firing-seconds"):
        config("--source", "files", "--file-pattern", "x", "--early-firing-seconds", "-1")
    with pytest.raises(AccesslogError, match="--session-gap-minutes"):
        config("--source", "files", "--file-pattern", "x", "--session-gap-minutes", "0")


def test_help_lists_the_streaming_and_run_flags(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--source", "--bootstrap-servers", "--kafka-expansion-service", "--subscription", "--file-pattern",
                 "--window-minutes", "--allowed-lateness-minutes", "--early-firing-seconds", "--sessions",
                 "--session-gap-minutes", "--warehouse", "--log-format", "--ip-mode", "--retention-days"):
        assert flag in out, flag


def test_main_reports_bad_options(capsys):
    assert main(["--source", "kafka", "--warehouse", "wh", "--runner=FnApiRunner"]) == 2
    assert "--bootstrap-servers" in capsys.readouterr().err


def test_multi_line_messages_and_per_file_sources(tmp_path):
    """A message may carry several lines; the files source tags lines with their file (own input id)."""
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a") + b"\r\n" + line(at(2), "/b") + b"\n",
                             ("/var/log/site.log", line(at(3), "/c"))])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    assert access_files(warehouse) == {
        wname(at(0), 0): ["/a", "/b"],
        pane_file_name(source_id("/var/log/site.log"), ts(at(0)), 0): ["/c"],
    }
    sources = {r["source"] for f in warehouse.glob("access/*/*.parquet") for r in pq.read_table(f).to_pylist()}
    assert sources == {SOURCE, "/var/log/site.log"}


def test_blank_lines_and_empty_messages_are_rejected_not_dropped(tmp_path):
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a") + b"\n\n" + line(at(2), "/b") + b"\n", b""])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    assert access_files(warehouse) == {wname(at(0), 0): ["/a", "/b"]}
    assert len(rejects(warehouse)) == 2
    assert all(reason and line == "" for reason, _, line in rejects(warehouse))


def test_replayed_stream_overwrites_its_files(tmp_path):
    def stream():
        return (BeamTestStream()
                .advance_watermark_to(ts(at(0)))
                .add_elements([line(at(1), "/a"), line(at(6), "/b"), b"garbage"])
                .advance_watermark_to(ts(at(12)))
                .add_elements([line(at(3), "/late")])
                .advance_watermark_to_infinity())
    warehouse = run_stream(stream(), tmp_path)
    first = sorted(p.relative_to(warehouse) for p in warehouse.rglob("*.parquet"))
    run_stream(stream(), tmp_path)
    assert sorted(p.relative_to(warehouse) for p in warehouse.rglob("*.parquet")) == first
    assert sum(len(v) for v in access_files(warehouse).values()) == 3
    assert len(rejects(warehouse)) == 1


def test_replay_with_late_rows_now_on_time_does_not_duplicate(tmp_path):
    late = (BeamTestStream()
            .advance_watermark_to(ts(at(0)))
            .add_elements([line(at(1), "/a")])
            .advance_watermark_to(ts(at(12)))
            .add_elements([line(at(3), "/late")])
            .advance_watermark_to_infinity())
    warehouse = run_stream(late, tmp_path)
    assert access_files(warehouse) == {wname(at(0), 0): ["/a"], wname(at(0), 1): ["/late"]}
    replay = (BeamTestStream()                        # the same lines, this time all on time
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a"), line(at(3), "/late")])
              .advance_watermark_to_infinity())
    run_stream(replay, tmp_path)
    assert access_files(warehouse) == {wname(at(0), 0): ["/a", "/late"]}


def test_expired_reject_file_names_are_keyed(tmp_path):
    """The name of an expired-rejects file digests the raw records: it must not be a plain hash
    anyone could recompute from a guessed query string or address."""
    import hashlib

    import pyarrow as pa

    from transforms.windows import _digest
    table = pa.table({"url_query": ["password=Hunter2Pass"]})
    assert _digest(table, b"k" * 32) != _digest(table)
    assert _digest(table, b"k" * 32) != hashlib.sha256(b"url_query" + repr(["password=Hunter2Pass"]).encode()
                                                       ).hexdigest()[:16]
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/old")])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path, retention_days=3)
    [expired] = warehouse.glob("rejects/*/*-x*.parquet")
    run_stream(BeamTestStream().advance_watermark_to(ts(at(0))).add_elements([line(at(1), "/old")]),
               tmp_path, retention_days=3)
    assert [p.name for p in warehouse.glob("rejects/*/*-x*.parquet")] == [expired.name]   # replay overwrites
