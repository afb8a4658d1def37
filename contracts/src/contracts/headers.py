"""CloudEvents 1.0 Kafka protocol binding, binary content mode.

The event's attributes travel as ``ce_*`` headers and the payload is the Kafka value
(https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/kafka-protocol-binding.md).
``ce_id`` is the idempotency key that consumers deduplicate on.
"""

from typing import Final

ID: Final = "ce_id"
TYPE: Final = "ce_type"
SOURCE: Final = "ce_source"
SPECVERSION: Final = "ce_specversion"
TIME: Final = "ce_time"
SUBJECT: Final = "ce_subject"
"""The job id the event is about (also the Kafka key)."""
SEQUENCE: Final = "ce_sequence"
"""CloudEvents ``sequence`` extension: the 0-based index of an upload chunk."""
UPLOAD_OFFSET: Final = "ce_uploadoffset"
"""On the chunks of a resumable upload: the byte offset of the chunk's first byte in the
file. A resumed append may repeat bytes an interrupted one had sent; the uploader
places each chunk by this offset and skips what it already holds."""
CONTENT_TYPE: Final = "content-type"
DLQ_REASON: Final = "dlq_reason"
"""On ``<topic>.dlq`` messages: why the message could not be processed."""
TRACEPARENT: Final = "traceparent"
"""W3C trace context, propagated through every message of a job."""

SPEC_VERSION: Final = "1.0"
JSON: Final = "application/json"
OCTET_STREAM: Final = "application/octet-stream"
