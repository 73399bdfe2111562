"""Helpers shared by the test suites (tiny contract-conforming models, fixtures)."""
