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

from accesslog.errors import AccesslogError
from accesslog.keystore import Keystore
from pipelines.batch import RunConfig, run_batch
from pipelines.streaming import StreamingConfig, build_streaming_pipeline, main, pane_file_name, read_source, source_id
from transforms.formats import resolve_format
from transforms.scrub import Scrubber

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


def run_stream(stream, tmp_path, retention_days=90, window_minutes=5, lateness=10):
    options = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    options.view_as(StandardOptions).streaming = True
    warehouse = tmp_path / "wh"
    warehouse.mkdir(exist_ok=True)
    keystore = Keystore(tmp_path / "keys.json")
    p = beam.Pipeline(options=options)
    build_streaming_pipeline(p | stream, resolve_format("combined"), keystore, Scrubber(), str(warehouse), NOW,
                             retention_days, SOURCE, window_minutes, lateness)
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


def test_beyond_allowed_lateness_not_written_but_rejected_as_late(tmp_path):
    stream = (BeamTestStream()
              .advance_watermark_to(ts(at(0)))
              .add_elements([line(at(1), "/a")])
              .advance_watermark_to(ts(at(30)))        # 10:00 window: end 10:05 + 10 min < 10:30
              .add_elements([line(at(2), "/too-late"), line(at(31), "/next")])
              # too late for a window that never had data: Beam drops it, the gate cannot see it
              # (documented limit of pipelines.streaming)
              .add_elements([line(at(-20), "/unseen-window")])
              .advance_watermark_to_infinity())
    warehouse = run_stream(stream, tmp_path)
    assert access_files(warehouse) == {wname(at(0), 0): ["/a"], wname(at(30), 0): ["/next"]}
    assert rejects(warehouse) == [("late", SOURCE, None)]
    [reject_file] = warehouse.glob("rejects/*/*.parquet")
    assert reject_file.parent.name == "date=2026-11-20"      # filed under the record's own date
    assert pq.read_table(reject_file)["source_line"].to_pylist()[0] >= 1   # position in the stream


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
    result = run_batch(RunConfig(inputs=[str(log)], warehouse=str(tmp_path / "batch"), log_format="combined",
                                 keys=str(tmp_path / "keys.json"), now=NOW.isoformat(),
                                 beam_args=["--runner=FnApiRunner"]))
    assert result.ok
    streamed, batched = _rows(warehouse), _rows(tmp_path / "batch")
    assert sum(batched.values()) == len(lines)
    assert streamed == batched
    # several windows and both day partitions were written
    assert len(list(warehouse.glob("access/date=*/*.parquet"))) >= 5
    assert {p.name for p in warehouse.glob("access/date=*")} == {"date=2026-11-20", "date=2026-11-21",
                                                               "date=2026-11-22"}


# -- options ------------------------------------------------------------------------------------


def config(*argv):
    return StreamingConfig.from_options(PipelineOptions(["--warehouse", "wh", *argv]))


def test_kafka_options():
    c = config("--source", "kafka", "--bootstrap-servers", "k:9092", "--topic", "nginx",
               "--consumer-group", "g", "--window-minutes", "1")
    assert (c.bootstrap_servers, c.topic, c.consumer_group, c.window_minutes) == ("k:9092", "nginx", "g", 1)
    assert (c.allowed_lateness_minutes, c.session_gap_minutes, c.retention_days) == (10, 30, 90)
    assert c.source_name == "kafka:nginx"
    with pytest.raises(AccesslogError, match="--bootstrap-servers and --topic"):
        config("--source", "kafka")
    with pytest.raises(AccesslogError, match="needs --topic"):
        config("--source", "kafka", "--bootstrap-servers", "k:9092")


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
    # the source builds (it runs on Flink/Dataflow/Prism, not on BundleBasedDirectRunner: DESIGN §4)
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
        StreamingConfig.from_options(PipelineOptions(["--source", "files", "--file-pattern", "x"]))


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
