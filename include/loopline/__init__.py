"""Loopline core."""
