"""Builders the test modules share: data dirs, envelopes, feeds, replays, servers, browser pages."""
