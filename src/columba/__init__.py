"""Columba: a Palomar-style mail platform in Python."""

__version__ = "0.1.0"
