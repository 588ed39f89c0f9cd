"""The Sentry SDK front door's pure parts: envelopes on the wire, and the adapter that turns Sentry
error events and Session Replay segments into our ingest Envelope (plus the counters it keeps)."""
