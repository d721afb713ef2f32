"""The composite transforms inside small Beam pipelines (FnApiRunner: the default runner
tries to download Prism from the network)."""
import base64
import hashlib
import hmac
import ipaddress
import json
from datetime import datetime, timezone

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from storage.keystore import Keystore
from transforms.chunks import LogChunk, ReadLogChunks, describe_input
from transforms.formats import resolve_format
from transforms.parse import ParseAccessLogs
from transforms.pseudonymize import PseudonymizeClients
from transforms.rejects import RedactRejects
from transforms.retention import EnforceRetention, retention_cutoff
from transforms.scrub import REDACTED, Scrubber, ScrubUrls

COMBINED = resolve_format("combined")
UTC = timezone.utc


def pipeline():
    return BeamTestPipeline(options=PipelineOptions(["--runner=FnApiRunner"]))


def nginx(ip, day, request="GET / HTTP/1.1", status=200, user="-", referrer="-"):
    return f'{ip} - {user} [{day}/Nov/2026:12:00:00 +0000] "{request}" {status} 10 "{referrer}" "agent"'


def chunk(first_line, *lines, source="access.log"):
    return LogChunk(source, "feedfacecafebeef", first_line, ("\n".join(lines) + "\n").encode())


CHUNKS = [
    chunk(1, nginx("192.0.2.1", 20), "garbage", nginx("192.0.2.2", 20, status=404)),
    chunk(4, nginx("2001:db8::1", 21, status=500), nginx("192.0.2.1", 21, status="2x0"), ""),
]


def column_pairs(a, b):
    """RecordChunk -> its (a, b) column value pairs."""
    return lambda c: list(zip(c.records[a].to_pylist(), c.records[b].to_pylist())) if c.records.num_rows else []


def stored_secret(keystore, label):
    entry = json.loads(keystore.path.read_text())["keys"][label]
    return entry["id"], base64.b64decode(entry["secret"])


def client_id(secret, ip):
    return hmac.new(secret, ipaddress.ip_address(ip).packed, hashlib.sha256).digest()[:16].hex()


# -- ParseAccessLogs --------------------------------------------------------------------------


def test_parse_access_logs_records_and_rejects():
    with pipeline() as p:
        parsed = p | beam.Create(CHUNKS) | ParseAccessLogs(COMBINED)
        assert_that(parsed.records | beam.FlatMap(column_pairs("source_line", "status")),
                    equal_to([(1, 200), (3, 404), (4, 500)]), label="records")
        assert_that(parsed.rejects | beam.FlatMap(lambda r: list(zip(r.source_lines, r.reasons))),
                    equal_to([(2, "line does not match log format 'combined'"), (5, "invalid $status"),
                              (6, "empty line")]), label="rejects")


def test_parse_access_logs_emits_one_reject_chunk_per_chunk_and_counts_lines():
    clean = chunk(10, nginx("192.0.2.9", 22))
    with pipeline() as p:
        parsed = p | beam.Create(CHUNKS + [clean]) | ParseAccessLogs(COMBINED)
        assert_that(parsed.rejects | beam.Map(lambda r: (r.first_line, len(r.source_lines))),
                    equal_to([(1, 1), (4, 2), (10, 0)]), label="reject chunks")
        lines = parsed.records | beam.Map(lambda c: (c.lines, c.rejected)) | beam.CombineGlobally(
            lambda pairs: tuple(map(sum, zip(*pairs))) if pairs else (0, 0))
        assert_that(lines, equal_to([(7, 3)]), label="line counts")


# -- ReadLogChunks ----------------------------------------------------------------------------


def test_read_log_chunks_covers_every_line_once(tmp_path):
    lines = [nginx(f"192.0.2.{i % 200}", 20, request=f"GET /page/{i} HTTP/1.1") for i in range(300)]
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    content = path.read_bytes()

    def check(chunks):
        chunks = sorted(chunks, key=lambda c: c.first_line)
        if len(chunks) < 5:
            raise BeamAssertException(f"expected several chunks, got {len(chunks)}")
        if b"".join(c.data for c in chunks) != content:
            raise BeamAssertException("chunks do not concatenate to the file")
        expected_first, line = [], 1
        for c in chunks:
            expected_first.append(line)
            line += c.data.count(b"\n")
        if [c.first_line for c in chunks] != expected_first:
            raise BeamAssertException("first_line is not cumulative")

    with pipeline() as p:
        chunks = p | beam.Create([describe_input(str(path))]) | ReadLogChunks(chunk_bytes=4096, spread=True)
        assert_that(chunks, check)
        statuses = chunks | ParseAccessLogs(COMBINED)
        assert_that(statuses.records | beam.Map(lambda c: c.records.num_rows) | beam.CombineGlobally(sum),
                    equal_to([300]), label="parsed rows")


# -- PseudonymizeClients ----------------------------------------------------------------------


def test_pseudonymize_clients(tmp_path):
    keystore = Keystore(tmp_path / "keys.json")
    keystore.key("2026-11-20"), keystore.key("2026-11-21")        # created before the run: known secrets
    (id20, s20), (id21, s21) = stored_secret(keystore, "2026-11-20"), stored_secret(keystore, "2026-11-21")
    with pipeline() as p:
        records = (p | beam.Create(CHUNKS) | ParseAccessLogs(COMBINED)).records | PseudonymizeClients(keystore)
        assert_that(records | "ClientIds" >> beam.FlatMap(column_pairs("source_line", "client_id")),
                    equal_to([(1, client_id(s20, "192.0.2.1")), (3, client_id(s20, "192.0.2.2")),
                              (4, client_id(s21, "2001:db8::1"))]), label="client ids")
        assert_that(records | "KeyIds" >> beam.FlatMap(column_pairs("source_line", "key_id")),
                    equal_to([(1, id20), (3, id20), (4, id21)]), label="key ids")
        assert_that(records | "RawColumns" >> beam.FlatMap(
                        lambda c: [n for n in c.records.column_names if n.startswith("_")]),
                    equal_to([]), label="no raw columns")


# -- ScrubUrls ----------------------------------------------------------------------------------


def test_scrub_urls():
    lines = chunk(1,
                  nginx("192.0.2.1", 20, request="GET /login?user=bob&password=hunter2 HTTP/1.1"),
                  nginx("192.0.2.1", 20, request="GET /u/jane.doe@example.org HTTP/1.1",
                        referrer="https://example.com/cb?code=abc&state=1"),
                  nginx("192.0.2.1", 20, request="GET /plain?q=1 HTTP/1.1"))
    with pipeline() as p:
        records = (p | beam.Create([lines]) | ParseAccessLogs(COMBINED)).records | ScrubUrls(Scrubber())
        assert_that(records | "Urls" >> beam.FlatMap(column_pairs("url_path", "url_query")),
                    equal_to([("/login", f"user={REDACTED}&password={REDACTED}"), (f"/u/{REDACTED}", None),
                              ("/plain", "q=1")]), label="urls")
        assert_that(records | "Referrers" >> beam.FlatMap(column_pairs("source_line", "referrer")),
                    equal_to([(1, None), (2, f"https://example.com/cb?code={REDACTED}&state=1"), (3, None)]),
                    label="referrers")


# -- EnforceRetention ---------------------------------------------------------------------------


def test_enforce_retention_drops_and_counts_old_rows():
    cutoff = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    with pipeline() as p:
        records = (p | beam.Create(CHUNKS) | ParseAccessLogs(COMBINED)).records | EnforceRetention(cutoff)
        assert_that(records | "Kept" >> beam.FlatMap(column_pairs("source_line", "received_at")),
                    equal_to([(4, datetime(2026, 11, 21, 12, 0, tzinfo=UTC))]), label="kept")
        assert_that(records | "Expired" >> beam.Map(lambda c: (c.first_line, c.expired)),
                    equal_to([(1, 2), (4, 0)]), label="expired")


# -- RedactRejects ------------------------------------------------------------------------------


def test_redact_rejects_leaves_no_ip_or_user(tmp_path):
    keystore = Keystore(tmp_path / "keys.json")
    bad = chunk(1, nginx("198.51.100.23", 20, user="mallory", status="2x0",
                         request="GET /reset?token=tok_9f8e7d6c HTTP/1.1"),
                nginx("198.51.100.23", 20))
    now = datetime(2026, 11, 25, tzinfo=UTC)
    with pipeline() as p:
        rejects = (p | beam.Create([bad]) | ParseAccessLogs(COMBINED)).rejects
        rows = rejects | RedactRejects(keystore, Scrubber(), COMBINED, now) | beam.FlatMap(
            lambda c: c.records.select(["source_line", "reason", "line"]).to_pylist())

        def check(found):
            if [(r["source_line"], r["reason"]) for r in found] != [(1, "invalid $status")]:
                raise BeamAssertException(f"unexpected rejects {found}")
            text = found[0]["line"]
            for secret in ("198.51.100.23", "mallory", "tok_9f8e7d6c"):
                if secret in text:
                    raise BeamAssertException(f"{secret} leaked into {text}")
            if not text.startswith("ip:") or REDACTED not in text:
                raise BeamAssertException(f"not redacted as expected: {text}")
        assert_that(rows, check)


# -- the chain --------------------------------------------------------------------------------


@pytest.mark.parametrize("retention_days", [1, 30])
def test_chain_conserves_lines(tmp_path, retention_days):
    keystore = Keystore(tmp_path / "keys.json")
    cutoff = retention_cutoff(datetime(2026, 11, 22, tzinfo=UTC), retention_days)
    with pipeline() as p:
        parsed = p | beam.Create(CHUNKS) | ParseAccessLogs(COMBINED)
        kept = (parsed.records | PseudonymizeClients(keystore) | ScrubUrls(Scrubber())
                | EnforceRetention(cutoff))
        totals = kept | beam.Map(lambda c: (c.lines, c.records.num_rows, c.rejected, c.expired)) | \
            beam.CombineGlobally(lambda rows: tuple(map(sum, zip(*rows))) if rows else (0, 0, 0, 0))

        def check(found):
            ((lines, rows, rejected, expired),) = found
            if lines != 6 or rows + rejected + expired != lines:
                raise BeamAssertException(f"lines not conserved: {found}")
            if expired != (2 if retention_days == 1 else 0):
                raise BeamAssertException(f"unexpected expired count: {found}")
        assert_that(totals, check)
