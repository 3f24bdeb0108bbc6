"""Columba dict package."""
