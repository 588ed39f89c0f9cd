"""Failures into issues: stack frames, fingerprints, clustering, queries, evidence, reports."""
