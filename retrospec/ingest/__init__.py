"""Ingest: the wire envelope, rows from a batch, the batched write, guards, the pipeline."""
