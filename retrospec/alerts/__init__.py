"""Alerts: rules (who hears about what), the outbox and its delivery job, messages and channels."""
