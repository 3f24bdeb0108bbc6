"""Mailbox names: validation and normalisation (INBOX, the ``/`` separator, length bounds).

Names arrive as Python ``str`` already decoded from modified UTF-7. They are only ever data (the
index stores them; object paths use mailbox GUIDs), so ``../x`` is a valid name, not a path.

Rules (Dovecot's, with its default limits):

* ``INBOX`` in any case is ``"INBOX"``, and so is the first component of ``inbox/child``.
* The separator is ``/``; a name has no empty component (no leading, trailing or doubled ``/``).
* At most :data:`MAX_LEVELS` components, each at most :data:`MAX_COMPONENT_BYTES` UTF-8 bytes, and
  the whole name at most :data:`MAX_NAME_BYTES`.
* No control characters (C0, DEL) anywhere; a new name may not contain the LIST wildcards ``*``
  and ``%``.
"""

from __future__ import annotations

from columba.storage.api import InvalidMailboxName

SEPARATOR = "/"
INBOX = "INBOX"
MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
MAX_LEVELS = 32

_WILDCARDS = frozenset("*%")


def _bad(name: str, why: str) -> InvalidMailboxName:
    shown = name if len(name) <= 80 else name[:77] + "..."
    return InvalidMailboxName(f"Invalid mailbox name {shown!r}: {why}")


def normalize(name: str) -> str:
    """The canonical form of an existing-or-not mailbox name; `InvalidMailboxName` if malformed."""
    if not isinstance(name, str) or name == "":
        raise _bad(str(name), "empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise _bad(name, f"longer than {MAX_NAME_BYTES} bytes")
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise _bad(name, "control character")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise _bad(name, "unpaired surrogate")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_LEVELS:
        raise _bad(name, f"more than {MAX_LEVELS} hierarchy levels")
    for part in parts:
        if part == "":
            raise _bad(name, "empty hierarchy component")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise _bad(name, f"component longer than {MAX_COMPONENT_BYTES} bytes")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return SEPARATOR.join(parts)


def normalize_new(name: str) -> str:
    """Like :func:`normalize`, plus the rules for a name about to be created (no wildcards)."""
    norm = normalize(name)
    if any(ch in _WILDCARDS for ch in norm):
        raise _bad(name, "contains a LIST wildcard (* or %)")
    return norm


def is_inbox(name: str) -> bool:
    """True for a normalised name that is INBOX itself."""
    return name == INBOX


def parents(name: str) -> list[str]:
    """Every ancestor of a normalised name, outermost first (``a/b/c`` → ``a``, ``a/b``)."""
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def parent(name: str) -> str | None:
    """The direct parent of a normalised name, or None at the top level."""
    head, sep, _tail = name.rpartition(SEPARATOR)
    return head if sep else None


def is_descendant(name: str, ancestor: str) -> bool:
    """True if `name` lies strictly below `ancestor` in the hierarchy."""
    return name.startswith(ancestor + SEPARATOR)


def sort_key(name: str) -> tuple[int, str]:
    """LIST order: INBOX first, then by code point."""
    return (0 if name == INBOX else 1, name)
