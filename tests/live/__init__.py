"""Helpers for the tests that talk to real daphne processes."""
