"""Login failure delays: each failure from an IP doubles the delay of its next failure reply.

Like Dovecot's auth penalty: the first failure waits ``auth_failure_delay``, later ones twice as
long each time up to ``auth_penalty_max`` seconds; a success or 15 quiet minutes forget the IP.
Kept per process (each worker sees the IPs it serves).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

FORGET_AFTER = 15 * 60.0
MAX_TRACKED = 100_000


@dataclass
class _Record:
    failures: int
    last: float


class AuthPenalty:
    def __init__(self, base_delay: float, max_delay: float) -> None:
        self.base_delay = base_delay
        self.max_delay = max(max_delay, base_delay)
        self._records: dict[str, _Record] = {}

    def failures(self, ip: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        record = self._records.get(ip)
        if record is None or now - record.last > FORGET_AFTER:
            return 0
        return record.failures

    def failed(self, ip: str, now: float | None = None) -> float:
        """Record a failure; return how long to wait before answering it."""
        now = time.monotonic() if now is None else now
        count = self.failures(ip, now) + 1
        if len(self._records) >= MAX_TRACKED:
            self._forget_old(now)
        self._records[ip] = _Record(count, now)
        delay: float = min(self.base_delay * float(2 ** (count - 1)), self.max_delay)
        return delay

    def succeeded(self, ip: str) -> None:
        self._records.pop(ip, None)

    def _forget_old(self, now: float) -> None:
        for ip in [ip for ip, r in self._records.items() if now - r.last > FORGET_AFTER]:
            del self._records[ip]
        if len(self._records) >= MAX_TRACKED:
            self._records.clear()
