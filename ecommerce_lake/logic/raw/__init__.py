"""Landing -> raw: batch validation, ingestion and the day partitions a batch touches."""
