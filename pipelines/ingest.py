"""IngestChunks: the stages every pipeline shares, from LogChunks to pseudonymized records.

    chunks | IngestChunks(...)  ->  {"records", "errors", "rejects"} (+ "expired" in streaming)

Follow then writes and commits per input (`WriteAndCommit`); batch stages the files and its driver
commits them (pipelines.batch); streaming cuts the records into event-time windows
(pipelines.streaming).
"""
from __future__ import annotations

from datetime import datetime

import apache_beam as beam

from storage.keystore import Keystore
from transforms.enrich import Enrich
from transforms.error_entries import AttachErrors, PseudonymizeErrors
from transforms.formats import LogFormat
from transforms.parse import ParseAccessLogs
from transforms.pseudonymize import PseudonymizeClients
from transforms.rejects import RedactRejects
from transforms.retention import EnforceRetention, retention_cutoff
from transforms.scrub import Scrubber, ScrubUrls
from transforms.windows import RouteExpired
from transforms.write import CommitInputs, WriteParquetPartitions


class IngestChunks(beam.PTransform):
    """LogChunks -> parsed, retention-bounded, enriched, scrubbed and pseudonymized records; error-log
    entries (attached to the access records they explain); redacted rejects.

    Retention comes first: an expired row never needs a key (its period's key may be shredded).
    `route_expired` (streaming): expired rows also leave as content-free rejects rows, against the
    clock of each chunk unless `fixed_now`; batch only counts them (its summary says how many)."""

    def __init__(self, formats: dict[str, LogFormat], keystore: Keystore, scrubber: Scrubber, now: datetime,
                 retention_days: int, ip_mode: str = "hmac", geoip_db=(), geo_detail: str = "country",
                 route_expired: bool = False, fixed_now: bool = True):
        super().__init__()
        self.formats, self.keystore, self.scrubber = formats, keystore, scrubber
        self.now, self.retention_days = now, retention_days
        self.ip_mode, self.geoip_db, self.geo_detail = ip_mode, list(geoip_db or ()), geo_detail
        self.route_expired, self.fixed_now = route_expired, fixed_now

    def expand(self, chunks) -> dict:
        cutoff = retention_cutoff(self.now, self.retention_days)
        parsed = chunks | "ParseAccessLogs" >> ParseAccessLogs(self.formats, self.now if self.fixed_now else None)
        records, expired = parsed.records, None
        if self.route_expired:
            routed = records | "RouteExpired" >> beam.ParDo(RouteExpired(
                self.retention_days, self.now if self.fixed_now else None, self.keystore)).with_outputs(
                "expired", main="records")
            records, expired = routed.records, routed.expired
        errors = (parsed.errors
                  | "EnforceErrorRetention" >> EnforceRetention(cutoff)
                  | "PseudonymizeErrors" >> PseudonymizeErrors(self.keystore, self.scrubber))
        access = (records
                  | "EnforceRetention" >> EnforceRetention(cutoff)
                  | "Enrich" >> Enrich(self.geoip_db, self.geo_detail)   # needs the raw IP: before it is dropped
                  | "ScrubUrls" >> ScrubUrls(self.scrubber)
                  | "PseudonymizeClients" >> PseudonymizeClients(self.keystore, self.ip_mode))
        if any(not f.is_access for f in self.formats.values()):
            access = access | "AttachErrors" >> AttachErrors(errors)
        rejects = parsed.rejects | "RedactRejects" >> RedactRejects(self.keystore, self.scrubber, self.formats,
                                                                    self.now if self.fixed_now else None)
        outputs = {"records": access, "errors": errors, "rejects": rejects}
        if expired is not None:
            outputs["expired"] = expired
        return outputs


class WriteTables(beam.PTransform):
    """IngestChunks' outputs -> the WrittenChunks of their access, errors and rejects files, staged
    under `run_id`, in one PCollection."""

    def __init__(self, warehouse: str, run_id: str):
        super().__init__()
        self.warehouse, self.run_id = warehouse, run_id

    def expand(self, ingested: dict):
        written = [ingested[name] | f"Write{table.title()}" >> WriteParquetPartitions(self.warehouse, self.run_id,
                                                                                        table)
                   for name, table in (("records", "access"), ("errors", "errors"), ("rejects", "rejects"))]
        return written | "AllWritten" >> beam.Flatten()


class WriteAndCommit(beam.PTransform):
    """IngestChunks' outputs -> one summary dict per input, once its access, errors and rejects files are
    written and committed together (nothing of an input is visible before its commit)."""

    def __init__(self, warehouse: str, run_id: str, max_reject_ratio: float):
        super().__init__()
        self.warehouse, self.run_id, self.max_reject_ratio = warehouse, run_id, max_reject_ratio

    def expand(self, ingested: dict):
        return (ingested
                | "WriteTables" >> WriteTables(self.warehouse, self.run_id)
                | "CommitInputs" >> CommitInputs(self.warehouse, self.run_id, self.max_reject_ratio))
