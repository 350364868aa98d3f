"""The production transport: alerts to a Kafka topic (Confluent wire format).

Rubin distributes alerts to community brokers through Kafka: each message is the schemaless
Avro payload prefixed by a magic byte 0 and the 4-byte schema-registry id. This producer does
the same with ``confluent-kafka`` (not installed by default: ``pip install confluent-kafka``).
No Kafka broker runs on the embedded platform; the archive and the HTTP stream are what
subscribers use there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["KafkaAlertProducer", "KafkaSettings", "wire_format"]


@dataclass(frozen=True)
class KafkaSettings:
    """Where alerts go: broker list, topic, schema id, and client options (SASL etc.)."""

    bootstrap_servers: str
    topic: str = "alerts-simulated"
    schema_id: int = 1101  # lsst.v11_1 (the schema's confluent:version)
    options: tuple[tuple[str, str], ...] = ()


def wire_format(payload: bytes, schema_id: int) -> bytes:
    """Confluent framing: magic byte 0, big-endian schema id, Avro payload."""
    return struct.pack(">bI", 0, schema_id) + payload


class KafkaAlertProducer:
    """Send serialised alerts to Kafka; raises a clear error when the client is missing."""

    def __init__(self, settings: KafkaSettings) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError as exc:
            raise RuntimeError(
                "Kafka transport needs the confluent-kafka package (pip install confluent-kafka)"
            ) from exc
        self.settings = settings
        self._producer: Any = Producer(
            {"bootstrap.servers": settings.bootstrap_servers, **dict(settings.options)}
        )

    def send(self, alert_id: int, payload: bytes) -> None:
        self._producer.produce(
            self.settings.topic,
            key=str(alert_id).encode(),
            value=wire_format(payload, self.settings.schema_id),
        )

    def flush(self, timeout: float = 30.0) -> int:
        return int(self._producer.flush(timeout))
