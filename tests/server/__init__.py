"""Tests of `sfumato serve`: control API, settings store, pairing, commands, end to end."""
