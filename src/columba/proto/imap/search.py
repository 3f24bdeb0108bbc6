"""SEARCH keys -> AST (RFC 3501 §6.4.4, RFC 9051 §6.4.4 and extensions).

Covered: every RFC 3501 key (ALL ANSWERED BCC BEFORE BODY CC DELETED DRAFT FLAGGED FROM HEADER
KEYWORD LARGER NEW NOT OLD ON OR RECENT SEEN SENTBEFORE SENTON SENTSINCE SINCE SMALLER SUBJECT
TEXT TO UID UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD UNSEEN, sequence sets,
parenthesised lists), ``$`` (RFC 5182 SEARCHRES), OLDER/YOUNGER (RFC 5032 WITHIN),
SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED (RFC 8514), MODSEQ (RFC 7162), EMAILID/THREADID
(RFC 8474 OBJECTID) and FUZZY (RFC 6203).

String arguments are decoded with the command's CHARSET (default US-ASCII, read as UTF-8, its
superset); a charset the server doesn't support is ``NO [BADCHARSET (...)]``.

The key parser is iterative (an explicit stack), so ``NOT NOT NOT ...`` or a long ``OR`` chain
can't exhaust Python's stack; its depth is bounded by ``max_search_depth`` and parentheses by
``max_nesting``.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import re
from dataclasses import dataclass

from columba.proto.imap.lexer import ATOM_RE, Cursor, ImapSyntaxError
from columba.proto.imap.sequence import SequenceSet

__all__ = [
    "SearchAll",
    "SearchAnd",
    "SearchDate",
    "SearchFlag",
    "SearchFuzzy",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchObjectId",
    "SearchOr",
    "SearchSaveDateSupported",
    "SearchSequence",
    "SearchSize",
    "SearchText",
    "SearchWithin",
    "charset_codec",
    "parse_charset",
    "parse_search_keys",
]

_TOKEN_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%"\\\]]+')  # ATOM-CHAR plus "*"
_OBJECTID_RE = re.compile(rb"[A-Za-z0-9_\-]{1,255}")
_ENTRY_FLAG_RE = re.compile(r"/flags/\\?[^\x00-\x20\x7f(){%*\"\\\]]+", re.IGNORECASE)


class SearchKey:
    """Base of every SEARCH AST node."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SearchAll(SearchKey):
    pass


@dataclass(frozen=True, slots=True)
class SearchFlag(SearchKey):
    """A flag or keyword present (``present=True``) or absent. ``\\Recent`` too."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader(SearchKey):
    """Header substring match. ``field`` is upper-case for BCC/CC/FROM/SUBJECT/TO and kept
    as sent for HEADER; an empty ``value`` matches every message that has the field."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchText(SearchKey):
    """``BODY`` (``where="BODY"``) or ``TEXT`` (headers and body)."""

    where: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchDate(SearchKey):
    """``field``: INTERNALDATE (BEFORE/ON/SINCE), SENTDATE (SENT*), SAVEDATE (SAVED*);
    ``relation``: BEFORE, ON, SINCE. Dates compare the date part only."""

    field: str
    relation: str
    date: _dt.date


@dataclass(frozen=True, slots=True)
class SearchSize(SearchKey):
    relation: str  # LARGER / SMALLER
    size: int


@dataclass(frozen=True, slots=True)
class SearchSequence(SearchKey):
    """A sequence set (``uid=False``) or ``UID`` set; either may be ``$``."""

    sequence_set: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class SearchWithin(SearchKey):
    relation: str  # OLDER / YOUNGER
    seconds: int


@dataclass(frozen=True, slots=True)
class SearchModSeq(SearchKey):
    modseq: int
    entry_name: str | None = None  # "/flags/\\Seen"
    entry_type: str | None = None  # priv / shared / all


@dataclass(frozen=True, slots=True)
class SearchSaveDateSupported(SearchKey):
    pass


@dataclass(frozen=True, slots=True)
class SearchObjectId(SearchKey):
    kind: str  # EMAILID / THREADID
    value: str


@dataclass(frozen=True, slots=True)
class SearchNot(SearchKey):
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd(SearchKey):
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class SearchFuzzy(SearchKey):
    key: SearchKey


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = frozenset({"BCC", "CC", "FROM", "SUBJECT", "TO"})
_DATE_KEYS = {
    "BEFORE": ("INTERNALDATE", "BEFORE"),
    "ON": ("INTERNALDATE", "ON"),
    "SINCE": ("INTERNALDATE", "SINCE"),
    "SENTBEFORE": ("SENTDATE", "BEFORE"),
    "SENTON": ("SENTDATE", "ON"),
    "SENTSINCE": ("SENTDATE", "SINCE"),
    "SAVEDBEFORE": ("SAVEDATE", "BEFORE"),
    "SAVEDON": ("SAVEDATE", "ON"),
    "SAVEDSINCE": ("SAVEDATE", "SINCE"),
}


def charset_codec(name: str, supported: tuple[str, ...]) -> str:
    """The Python codec for a SEARCH CHARSET, or ``NO [BADCHARSET (...)]``."""
    upper = name.upper()
    if upper in (s.upper() for s in supported):
        if upper in ("US-ASCII", "ASCII"):
            return "utf-8"  # a superset; strictly-ASCII clients lose nothing
        try:
            return codecs.lookup(name).name
        except LookupError:
            pass
    raise ImapSyntaxError(
        f"Unsupported charset {name}",
        status="NO",
        code="BADCHARSET (" + " ".join(supported) + ")",
    )


def parse_charset(cur: Cursor) -> str:
    """Read the astring naming a charset."""
    raw = cur.read_astring("charset")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ImapSyntaxError("Invalid charset name") from exc


class _Frame:
    __slots__ = ("items", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: list[SearchKey] = []


def _decode(cur: Cursor, raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise ImapSyntaxError("String is not valid in the given charset") from exc


def _simple_key(cur: Cursor, word: str, codec: str) -> SearchKey:
    if word == "ALL":
        return SearchAll()
    flag = _FLAG_KEYS.get(word)
    if flag is not None:
        return SearchFlag(flag[0], flag[1])
    if word == "NEW":
        return SearchAnd((SearchFlag("\\Recent", True), SearchFlag("\\Seen", False)))
    if word in ("KEYWORD", "UNKEYWORD"):
        cur.sp()
        kw = cur.read_flag(allow_recent=True)
        return SearchFlag(kw, word == "KEYWORD")
    if word in _HEADER_KEYS:
        cur.sp()
        return SearchHeader(word, _decode(cur, cur.read_astring(), codec))
    if word in ("BODY", "TEXT"):
        cur.sp()
        return SearchText(word, _decode(cur, cur.read_astring(), codec))
    if word == "HEADER":
        cur.sp()
        field = cur.read_astring("header field name")
        try:
            field_name = field.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ImapSyntaxError("Invalid header field name") from exc
        cur.sp()
        return SearchHeader(field_name, _decode(cur, cur.read_astring(), codec))
    date_key = _DATE_KEYS.get(word)
    if date_key is not None:
        cur.sp()
        return SearchDate(date_key[0], date_key[1], cur.read_date())
    if word in ("LARGER", "SMALLER"):
        cur.sp()
        return SearchSize(word, cur.read_number64())
    if word == "UID":
        cur.sp()
        return SearchSequence(cur.read_sequence_set(), uid=True)
    if word in ("OLDER", "YOUNGER"):
        cur.sp()
        return SearchWithin(word, cur.read_number(nz=True))
    if word == "SAVEDATESUPPORTED":
        return SearchSaveDateSupported()
    if word in ("EMAILID", "THREADID"):
        cur.sp()
        tok = cur.match(_OBJECTID_RE)
        if tok is None or cur.peek() not in (None, 0x20, 0x29):
            raise ImapSyntaxError("Invalid object id")
        cur.count_arg()
        return SearchObjectId(word, tok.decode("ascii"))
    if word == "MODSEQ":
        cur.sp()
        entry_name = entry_type = None
        if cur.peek() == 0x22:
            name = cur.decode_utf8(cur.read_quoted(), "entry name")
            if not _ENTRY_FLAG_RE.fullmatch(name):
                raise ImapSyntaxError("Invalid MODSEQ entry name")
            entry_name = name
            cur.sp()
            entry_type = cur.read_keyword("entry type").lower()
            if entry_type not in ("priv", "shared", "all"):
                raise ImapSyntaxError("Invalid MODSEQ entry type")
            cur.sp()
        return SearchModSeq(cur.read_number64(), entry_name, entry_type)
    raise ImapSyntaxError(f"Unknown search key {word}")


def parse_search_keys(cur: Cursor, codec: str = "utf-8") -> SearchKey:
    """``search-key *(SP search-key)`` up to the end of the command.

    One key comes back as itself; several as :class:`SearchAnd`.
    """
    stack: list[_Frame] = [_Frame("top")]
    max_depth = cur.options.max_search_depth
    while True:
        # -- read the start of a key -------------------------------------------------------
        if cur.peek() == 0x28:  # "("
            cur.open_list()
            stack.append(_Frame("("))
            if len(stack) > max_depth:
                raise ImapSyntaxError(f"Search program nested too deeply (max {max_depth})")
            continue
        first = cur.peek()
        if first is not None and (0x30 <= first <= 0x39 or first in (0x2A, 0x24)):
            key: SearchKey = SearchSequence(cur.read_sequence_set())
        else:
            m = _TOKEN_RE.match(cur.text, cur.pos)
            if m is None or not ATOM_RE.fullmatch(m.group()):
                if cur.at_end():
                    raise ImapSyntaxError("Missing search key")
                raise ImapSyntaxError("Invalid search key")
            word = m.group().decode("ascii").upper()
            cur.pos = m.end()
            cur.count_arg()
            if word in ("NOT", "OR", "FUZZY"):
                cur.sp()
                stack.append(_Frame(word))
                if len(stack) > max_depth:
                    raise ImapSyntaxError(f"Search program nested too deeply (max {max_depth})")
                continue
            key = _simple_key(cur, word, codec)
        # -- fold the finished key into the frames above it --------------------------------
        while True:
            frame = stack[-1]
            frame.items.append(key)
            if frame.kind == "NOT":
                stack.pop()
                key = SearchNot(frame.items[0])
                continue
            if frame.kind == "FUZZY":
                stack.pop()
                key = SearchFuzzy(frame.items[0])
                continue
            if frame.kind == "OR":
                if len(frame.items) == 1:
                    cur.sp()
                    break
                stack.pop()
                key = SearchOr(frame.items[0], frame.items[1])
                continue
            if frame.kind == "(":
                if cur.try_close_list():
                    stack.pop()
                    items = frame.items
                    key = items[0] if len(items) == 1 else SearchAnd(tuple(items))
                    continue
                cur.sp()
                break
            # top level
            if cur.at_end():
                items = frame.items
                return items[0] if len(items) == 1 else SearchAnd(tuple(items))
            cur.sp()
            break
