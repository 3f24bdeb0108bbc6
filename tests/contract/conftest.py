"""Fixtures of the contract suites: the session's SeaweedFS S3 server (`tests.s3_server`)."""

from __future__ import annotations

from tests.s3_server import s3_server

__all__ = ["s3_server"]
