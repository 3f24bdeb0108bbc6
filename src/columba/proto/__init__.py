"""Columba proto package."""
