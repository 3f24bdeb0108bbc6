"""Columba lib package."""
