"""FETCH attributes (RFC 3501 §6.4.5, RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ,
RFC 8474 EMAILID/THREADID, RFC 8514 SAVEDATE, RFC 8970 PREVIEW).

``fetch-att`` items become :class:`FetchAttribute`; the macros ``ALL``, ``FAST`` and ``FULL``
are expanded (the macro name is kept on the command). ``BODY[section]<origin.count>``,
``BODY.PEEK[...]``, ``BINARY[part]<...>``, ``BINARY.PEEK[...]`` and ``BINARY.SIZE[part]``
carry a :class:`Section` and an optional partial range.

:meth:`FetchAttribute.response_name` gives the item name a FETCH response must use
(``BODY.PEEK[TEXT]<0.100>`` is answered as ``BODY[TEXT]<0>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from columba.proto.imap.lexer import INT63_MAX, Cursor, ImapSyntaxError

__all__ = [
    "MACROS",
    "FetchAttribute",
    "Section",
    "parse_fetch_att",
    "parse_fetch_atts",
]

_NAME_RE = re.compile(rb"[A-Za-z0-9.\-]+")
_SECTION_RE = re.compile(rb"[A-Za-z0-9.]+")
# RFC 5322 field-name = 1*ftext, ftext = %d33-57 / %d59-126
_FIELD_NAME_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]+")

SIMPLE_ATTS = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
        "EMAILID",
        "THREADID",
        "SAVEDATE",
        "PREVIEW",
    }
)
SECTION_ATTS = frozenset({"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"})
SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})


@dataclass(frozen=True, slots=True)
class Section:
    """``section-spec``: ``part`` numbers, then ``text`` (HEADER, HEADER.FIELDS,
    HEADER.FIELDS.NOT, TEXT, MIME or None) and ``headers`` for the HEADER.FIELDS forms."""

    part: tuple[int, ...] = ()
    text: str | None = None
    headers: tuple[str, ...] = ()

    def __str__(self) -> str:
        items = [str(p) for p in self.part]
        if self.text is not None:
            items.append(self.text)
        spec = ".".join(items)
        if self.headers:
            spec += " (" + " ".join(self.headers) + ")"
        return spec


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One ``fetch-att``. ``name`` is upper-case with ``.PEEK`` folded into ``peek``:
    BODY[...] and BODY.PEEK[...] both have ``name="BODY"``, ``section`` set."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None  # (origin, count)
    peek: bool = False
    lazy: bool = False  # PREVIEW (LAZY)

    @property
    def has_section(self) -> bool:
        return self.section is not None

    @property
    def sets_seen(self) -> bool:
        """True when fetching this sets ``\\Seen`` (RFC 3501: BODY[...], RFC822,
        RFC822.TEXT; RFC 3516: BINARY[...])."""
        if self.name in ("BODY", "BINARY") and self.section is not None:
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")

    def response_name(self) -> str:
        """The item name in the FETCH response, e.g. ``BODY[1.MIME]<0>``."""
        if self.section is None:
            return self.name
        out = f"{self.name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out

    def __str__(self) -> str:
        if self.section is None:
            return self.name + (" (LAZY)" if self.lazy else "")
        name = self.name + (".PEEK" if self.peek else "")
        out = f"{name}[{self.section}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}.{self.partial[1]}>"
        return out


def _att(name: str) -> FetchAttribute:
    return FetchAttribute(name)


MACROS: dict[str, tuple[FetchAttribute, ...]] = {
    "ALL": tuple(map(_att, ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"))),
    "FAST": tuple(map(_att, ("FLAGS", "INTERNALDATE", "RFC822.SIZE"))),
    "FULL": tuple(map(_att, ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"))),
}


def _read_section(cur: Cursor, binary: bool) -> Section:
    cur.expect_byte(0x5B)  # [
    if cur.try_byte(0x5D):
        return Section()
    tok = cur.match(_SECTION_RE)
    if tok is None:
        raise ImapSyntaxError("Invalid section")
    words = tok.decode("ascii").split(".")
    part: list[int] = []
    i = 0
    while i < len(words) and words[i].isdigit():
        w = words[i]
        if w.startswith("0") or len(w) > 10 or int(w) > 0xFFFFFFFF:
            raise ImapSyntaxError("Invalid section part number")
        part.append(int(w))
        i += 1
    rest = ".".join(words[i:]).upper()
    if any(not w for w in words):
        raise ImapSyntaxError("Invalid section")
    text: str | None = None
    headers: tuple[str, ...] = ()
    if rest:
        if binary:
            raise ImapSyntaxError("BINARY takes only a part number")
        if rest not in SECTION_TEXTS:
            raise ImapSyntaxError(f"Invalid section text {rest}")
        if rest == "MIME" and not part:
            raise ImapSyntaxError("MIME needs a part number")
        text = rest
        if rest.startswith("HEADER.FIELDS"):
            cur.sp()
            headers = _read_header_list(cur)
    cur.expect_byte(0x5D)  # ]
    return Section(tuple(part), text, headers)


def _read_header_list(cur: Cursor) -> tuple[str, ...]:
    cur.open_list()
    names: list[str] = []
    while True:
        raw = cur.read_astring("header field name")
        if not _FIELD_NAME_RE.fullmatch(raw):
            raise ImapSyntaxError("Invalid header field name")
        names.append(raw.decode("ascii"))
        if cur.try_close_list():
            break
        cur.sp()
    return tuple(names)


def _read_partial(cur: Cursor) -> tuple[int, int] | None:
    if not cur.try_byte(0x3C):  # <
        return None
    origin = cur.read_number(max_value=INT63_MAX)
    cur.expect_byte(0x2E)
    count = cur.read_number(nz=True, max_value=INT63_MAX)
    cur.expect_byte(0x3E)
    return (origin, count)


def parse_fetch_att(cur: Cursor) -> FetchAttribute:
    """Read one ``fetch-att`` at the cursor."""
    tok = cur.match(_NAME_RE)
    if tok is None:
        raise ImapSyntaxError("Expected a fetch attribute")
    cur.count_arg()
    name = tok.decode("ascii").upper()
    if cur.peek() == 0x5B:  # [
        if name not in SECTION_ATTS:
            raise ImapSyntaxError(f"Invalid fetch attribute {name}")
        peek = name.endswith(".PEEK")
        base = name.removesuffix(".PEEK")
        section = _read_section(cur, binary=base != "BODY")
        partial = _read_partial(cur)
        if base == "BINARY.SIZE" and partial is not None:
            raise ImapSyntaxError("BINARY.SIZE takes no partial range")
        return FetchAttribute(base, section, partial, peek)
    if name not in SIMPLE_ATTS:
        raise ImapSyntaxError(f"Invalid fetch attribute {name}")
    if name == "PREVIEW" and cur.startswith(b" ("):
        # RFC 8970: PREVIEW [SP "(" preview-mod *(SP preview-mod) ")"], preview-mod = "LAZY"
        cur.sp()
        cur.open_list()
        lazy = False
        while True:
            mod = cur.read_keyword("preview modifier")
            if mod != "LAZY":
                raise ImapSyntaxError(f"Unknown PREVIEW modifier {mod}")
            lazy = True
            if cur.try_close_list():
                break
            cur.sp()
        return FetchAttribute(name, lazy=lazy)
    return FetchAttribute(name)


def parse_fetch_atts(cur: Cursor) -> tuple[tuple[FetchAttribute, ...], str | None]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``.

    Returns the attributes and the macro name (or None).
    """
    if cur.try_open_list():
        atts: list[FetchAttribute] = []
        while True:
            atts.append(parse_fetch_att(cur))
            if cur.try_close_list():
                break
            cur.sp()
        return tuple(atts), None
    word = cur.peek_word()
    if word in MACROS:
        cur.read_atom()
        return MACROS[word], word
    return (parse_fetch_att(cur),), None
