"""Notebook views: they read the store and the live run state, and never train."""
