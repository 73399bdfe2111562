"""Sfumato's network side: the mitmproxy addon, the control API and the command line."""
