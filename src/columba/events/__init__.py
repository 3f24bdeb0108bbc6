"""Columba events package."""
