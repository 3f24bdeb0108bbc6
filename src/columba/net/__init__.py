"""Columba net package."""
