"""ReadKafkaValues: the message values of a Kafka topic, through Beam's cross-language KafkaIO.

Beam's Python `ReadFromKafka` sends its Java expansion service a configuration row whose fields
grow with each release (2.78 added dynamic_read_poll_interval_seconds and the consumer factory
fields); an expansion service of an older Beam refuses a row with fields it does not know
("Failed to get dependencies for spec urn ... kafka_read_without_metadata"). Maven Central as seen
from here serves KafkaIO up to Beam 2.62 (cluster/lib.sh), so this sends the row as 2.62 defined it:
every KafkaIO expansion service since then reads it (new fields are optional).
"""
from __future__ import annotations

import typing

import numpy as np
from apache_beam.io.kafka import default_io_expansion_service
from apache_beam.transforms.external import ExternalTransform, NamedTupleBasedPayloadBuilder

READ_URN = "beam:transform:org.apache.beam:kafka_read_without_metadata:v1"
BYTES = "org.apache.kafka.common.serialization.ByteArrayDeserializer"
TIMESTAMP_POLICIES = ("ProcessingTime", "CreateTime", "LogAppendTime")

ReadKafkaConfig = typing.NamedTuple(
    "ReadKafkaConfig",
    [("consumer_config", typing.Mapping[str, str]), ("topics", typing.List[str]),
     ("key_deserializer", str), ("value_deserializer", str),
     ("start_read_time", typing.Optional[int]), ("max_num_records", typing.Optional[int]),
     ("max_read_time", typing.Optional[int]), ("commit_offset_in_finalize", bool),
     ("timestamp_policy", str), ("consumer_polling_timeout", typing.Optional[int]),
     ("redistribute", typing.Optional[bool]), ("redistribute_num_keys", typing.Optional[np.int32]),
     ("allow_duplicates", typing.Optional[bool])])


class ReadKafkaValues(ExternalTransform):
    """(key, value) byte pairs of `topics`, read by KafkaIO in the runner's JVM. Offsets are part
    of the runner's checkpoints (Flink), so a restored job reads on from where its state was saved.
    `timestamp_policy`: element times from processing time (default), the producer's CreateTime,
    or the broker's LogAppendTime; the watermark follows them."""

    def __init__(self, consumer_config: dict[str, str], topics: list[str], expansion_service: str | None = None,
                 timestamp_policy: str = "ProcessingTime", max_num_records: int | None = None,
                 commit_offset_in_finalize: bool = False):
        config = ReadKafkaConfig(
            consumer_config=dict(consumer_config), topics=list(topics), key_deserializer=BYTES,
            value_deserializer=BYTES, start_read_time=None, max_num_records=max_num_records, max_read_time=None,
            commit_offset_in_finalize=commit_offset_in_finalize, timestamp_policy=timestamp_policy,
            consumer_polling_timeout=2, redistribute=False, redistribute_num_keys=np.int32(0),
            allow_duplicates=False)
        # Without an address Beam starts the expansion service from its Maven jar (needs java).
        super().__init__(READ_URN, NamedTupleBasedPayloadBuilder(config),
                         expansion_service or default_io_expansion_service())
