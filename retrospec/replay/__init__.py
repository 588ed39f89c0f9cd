"""Replays: the rrweb DOM model, timeline markers, artifact builds, the replay job, queries."""
