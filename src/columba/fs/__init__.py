"""Columba fs package."""
