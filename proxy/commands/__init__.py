"""Subcommands of `sfumato`; see proxy.cli."""
