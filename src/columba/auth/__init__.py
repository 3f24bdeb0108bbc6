"""Columba auth package."""
