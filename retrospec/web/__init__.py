"""HTTP layer: ingest endpoint, dashboard, SDK and static assets."""
