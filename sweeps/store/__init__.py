"""Stage 4, storage and promotion: where a sweep's files live (local disk or object storage) and
how its best checkpoint becomes a versioned, verifiable model folder."""
