"""``[CAPABILITY ...]`` of the greeting and the login reply: cached per capability list, the
same bytes as encoding each capability as an atom."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from columba.imap import capability
from columba.proto.imap.response import Atom, ResponseCode, tagged


class _Settings:
    def __init__(self, **values: Any) -> None:
        self.values = values

    def get_str(self, name: str) -> str:
        return str(self.values.get(name, ""))

    def get_bool(self, name: str) -> bool:
        return bool(self.values.get(name, False))


def _session(**kw: Any) -> Any:
    base: dict[str, Any] = {
        "literal_minus": False,
        "starttls_offered": True,
        "plaintext_allowed": True,
        "append_limit": None,
        "logged_in": False,
        "settings": _Settings(),
    }
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize(
    "session",
    [
        _session(),
        _session(plaintext_allowed=False, starttls_offered=False),
        _session(logged_in=True, append_limit=1234),
        _session(logged_in=True, settings=_Settings(imap4rev2_enable=True, imap_metadata=True)),
    ],
)
def test_cached_code_encodes_like_atoms(session: Any) -> None:
    caps = capability.capabilities(session)
    expected = tagged("a1", "OK", "Logged in", code=ResponseCode("CAPABILITY", *map(Atom, caps)))
    first = capability.capability_code(session)
    assert tagged("a1", "OK", "Logged in", code=first) == expected
    assert capability.capability_code(session) is first  # encoded once


def test_code_follows_the_session_state() -> None:
    before = capability.capability_code(_session())
    after = capability.capability_code(_session(logged_in=True))
    assert before != after
    assert b"AUTH=PLAIN" in before.encode() and b"AUTH=PLAIN" not in after.encode()
    assert (
        b"LOGINDISABLED" in capability.capability_code(_session(plaintext_allowed=False)).encode()
    )
