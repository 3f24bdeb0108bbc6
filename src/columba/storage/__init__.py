"""Columba storage package."""
