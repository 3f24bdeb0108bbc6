"""Configuration errors: one line naming the file, the line and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    """Where a piece of configuration came from."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is the one-line report."""

    def __init__(self, message: str, origin: Origin | None = None) -> None:
        self.message = message
        self.origin = origin
        super().__init__(f"{origin}: {message}" if origin else message)
