"""Runnable scenarios for Guard; see examples/README.md."""
