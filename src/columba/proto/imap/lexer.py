"""Token-level reading of one IMAP command (RFC 3501 §9 / RFC 9051 §9 lexical rules).

The connection parser (:mod:`.parser`) cuts the byte stream into *frames*: the text of each
line with the literal markers taken off, and the literals between them. A :class:`Cursor`
walks such a frame. Grammar code (:mod:`.grammar`, :mod:`.fetch`, :mod:`.search`) reads
tokens through it and raises :class:`ImapSyntaxError` on the first mismatch.

A frame can end with a *pending* literal: the client has sent ``{n}`` and the parser must
decide, before any data is read, whether the literal is welcome here and how large it may be.
The grammar is run over the frame so far; when it reaches the pending literal it raises
:class:`PendingLiteral` carrying a :class:`LiteralContext` (an APPEND message, or a plain
string). A syntax error before that point is answered ``BAD`` at once, before a ``+`` is sent.

Bounds kept here: nesting depth of parenthesised lists and the number of arguments.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from columba.proto.imap import mutf7
from columba.proto.imap.dates import DateError, parse_date, parse_datetime
from columba.proto.imap.sequence import UINT32_MAX, SequenceSet

__all__ = [
    "INT63_MAX",
    "AppendContext",
    "Cursor",
    "CursorOptions",
    "ImapSyntaxError",
    "LiteralArg",
    "LiteralContext",
    "PendingLiteral",
    "normalize_mailbox",
]

INT63_MAX = (1 << 63) - 1

# ATOM-CHAR: CHAR (0x01-0x7f) except atom-specials: ( ) { SP CTL % * " \ ]
ATOM_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# ASTRING-CHAR = ATOM-CHAR / resp-specials ("]")
ASTRING_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# tag = 1*<any ASTRING-CHAR except "+">
TAG_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials
LIST_CHAR_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
NUMBER_RE = re.compile(rb"[0-9]+")
SEQSET_RE = re.compile(rb"[0-9*:,$]+")
QUOTED_RE = re.compile(rb'"((?:[^"\\\x00]|\\["\\])*)"')
QUOTED_PREFIX_RE = re.compile(rb'"(?:[^"\\\x00]|\\["\\])*')
_UNESCAPE_RE = re.compile(rb'\\(["\\])')
DATE_TOKEN_RE = re.compile(rb"[0-9A-Za-z-]+")

SYSTEM_FLAGS = {
    "\\ANSWERED": "\\Answered",
    "\\FLAGGED": "\\Flagged",
    "\\DELETED": "\\Deleted",
    "\\SEEN": "\\Seen",
    "\\DRAFT": "\\Draft",
}


class ImapSyntaxError(Exception):
    """The command doesn't parse. ``status``/``code`` shape the tagged answer."""

    def __init__(
        self,
        message: str,
        *,
        status: str = "BAD",
        code: str | None = None,
        quoted_eol: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        # The error is an unterminated quoted string running to the end of a line: a
        # literal marker there is inside the quotes, not a literal.
        self.quoted_eol = quoted_eol


@dataclass(frozen=True, slots=True)
class AppendContext:
    """What is known about an APPEND message when its literal header arrives."""

    mailbox: str
    flags: tuple[str, ...]
    internal_date: _dt.datetime | None
    index: int  # 0 for the first message, 1.. for MULTIAPPEND's further ones
    utf8: bool  # sent as UTF8 (~{n}) (RFC 6855)
    part: int = -1  # CATENATE (RFC 4469): this TEXT part's number in the message, else -1
    literal: int = 0  # the literal's number in the command (CATENATE continuations)

    @property
    def stream_index(self) -> int:
        """The ``index`` of the literal's LiteralStart/Chunk/End events: the message index,
        or ``-(literal + 1)`` for a CATENATE TEXT part (unique within the command)."""
        return self.index if self.part < 0 else -(self.literal + 1)


@dataclass(frozen=True, slots=True)
class LiteralContext:
    """Where a pending literal sits in its command."""

    command: str
    append: AppendContext | None = None  # set when the literal is an APPEND message
    binary_ok: bool = False


class PendingLiteral(Exception):  # noqa: N818 - control flow, not an error
    """Raised by the grammar when it reaches the literal whose data hasn't arrived."""

    def __init__(self, context: LiteralContext) -> None:
        super().__init__(context.command)
        self.context = context


@dataclass(slots=True)
class LiteralArg:
    """One literal of a frame. ``data`` is None while pending or when streamed out."""

    size: int
    binary: bool = False
    nonsync: bool = False
    data: bytes | None = None
    pending: bool = False
    streamed: bool = False


@dataclass(frozen=True, slots=True)
class CursorOptions:
    max_nesting: int = 32
    max_args: int = 4096
    max_search_depth: int = 100
    utf8: bool = False  # UTF8=ACCEPT enabled / IMAP4rev2: names are UTF-8, not mUTF-7
    charsets: tuple[str, ...] = ("UTF-8", "US-ASCII")


def normalize_mailbox(name: str, separator: str | None = None) -> str:
    """``INBOX`` in any case is ``INBOX``. With *separator*, the ``INBOX`` prefix of a
    child (``inbox/foo``) is normalised too; the parser only does the former."""
    if name.upper() == "INBOX":
        return "INBOX"
    if separator and len(name) > 5 and name[:5].upper() == "INBOX" and name[5] == separator:
        return "INBOX" + name[5:]
    return name


@dataclass(slots=True)
class Cursor:
    """Reads tokens from ``texts[0] literal[0] texts[1] literal[1] ... texts[-1]``."""

    texts: list[bytes]
    literals: list[LiteralArg]
    options: CursorOptions = field(default_factory=CursorOptions)
    seg: int = 0
    pos: int = 0
    depth: int = 0
    args: int = 0
    command: str = ""

    # -- position ---------------------------------------------------------------------------

    @property
    def text(self) -> bytes:
        return self.texts[self.seg]

    def peek(self) -> int | None:
        """Next byte of the current line, or None at a literal or the end."""
        text = self.texts[self.seg]
        return text[self.pos] if self.pos < len(text) else None

    def startswith(self, prefix: bytes) -> bool:
        return self.texts[self.seg].startswith(prefix, self.pos)

    def peek_word(self) -> str:
        """The upper-cased atom at the cursor, without consuming it ('' if none)."""
        m = ATOM_RE.match(self.texts[self.seg], self.pos)
        return m.group().decode("ascii").upper() if m else ""

    def at_literal(self) -> bool:
        return self.pos >= len(self.texts[self.seg]) and self.seg < len(self.literals)

    def at_end(self) -> bool:
        return self.pos >= len(self.texts[self.seg]) and self.seg >= len(self.literals)

    def count_arg(self) -> None:
        self.args += 1
        if self.args > self.options.max_args:
            raise ImapSyntaxError(
                f"Too many arguments (more than {self.options.max_args})",
            )

    # -- single bytes -----------------------------------------------------------------------

    def sp(self) -> None:
        if self.peek() != 0x20:
            if not self.at_end():
                raise ImapSyntaxError("Expected a space")
            raise ImapSyntaxError("Missing ')'" if self.depth > 0 else "Missing argument")
        self.pos += 1

    def try_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def try_byte(self, ch: int) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def expect_byte(self, ch: int) -> None:
        if not self.try_byte(ch):
            raise ImapSyntaxError(f"Expected '{chr(ch)}'")

    def expect_end(self) -> None:
        if self.at_end():
            return
        if self.at_literal():
            raise ImapSyntaxError("Unexpected literal")
        raise ImapSyntaxError("Unexpected extra arguments")

    def open_list(self) -> None:
        self.expect_byte(0x28)
        self.depth += 1
        if self.depth > self.options.max_nesting:
            raise ImapSyntaxError(
                f"Too deeply nested lists (more than {self.options.max_nesting})",
            )
        self.count_arg()

    def try_open_list(self) -> bool:
        if self.peek() == 0x28:
            self.open_list()
            return True
        return False

    def close_list(self) -> None:
        self.expect_byte(0x29)
        self.depth -= 1

    def try_close_list(self) -> bool:
        if self.peek() == 0x29:
            self.close_list()
            return True
        return False

    # -- tokens -----------------------------------------------------------------------------

    def match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        m = pattern.match(self.texts[self.seg], self.pos)
        if m is None or m.end() == self.pos:
            return None
        self.pos = m.end()
        return m.group()

    def read_tag(self) -> str:
        tok = self.match(TAG_RE)
        if tok is None:
            raise ImapSyntaxError("Invalid tag")
        return tok.decode("ascii")

    def read_atom(self, what: str = "atom") -> str:
        tok = self.match(ATOM_RE)
        if tok is None:
            raise ImapSyntaxError(f"Expected {what}")
        self.count_arg()
        return tok.decode("ascii")

    def read_keyword(self, what: str = "keyword") -> str:
        return self.read_atom(what).upper()

    def read_number(self, *, nz: bool = False, max_value: int = UINT32_MAX) -> int:
        tok = self.match(NUMBER_RE)
        if tok is None:
            raise ImapSyntaxError("Expected a number")
        self.count_arg()
        if len(tok) > 20:
            raise ImapSyntaxError("Number out of range")
        value = int(tok)
        if value > max_value or (nz and value == 0):
            raise ImapSyntaxError("Number out of range")
        return value

    def read_number64(self, *, nz: bool = False) -> int:
        return self.read_number(nz=nz, max_value=INT63_MAX)

    def read_sequence_set(self, *, allow_saved: bool = True) -> SequenceSet:
        tok = self.match(SEQSET_RE)
        if tok is None:
            raise ImapSyntaxError("Expected a sequence set")
        self.count_arg()
        try:
            seq = SequenceSet.parse(tok)
        except ValueError as exc:
            raise ImapSyntaxError("Invalid sequence set") from exc
        if seq.saved and not allow_saved:
            raise ImapSyntaxError("'$' is not allowed here")
        return seq

    def read_quoted(self) -> bytes:
        text = self.texts[self.seg]
        m = QUOTED_RE.match(text, self.pos)
        if m is None:
            p = QUOTED_PREFIX_RE.match(text, self.pos)
            end = p.end() if p else self.pos
            if end >= len(text):
                raise ImapSyntaxError("Unterminated quoted string", quoted_eol=True)
            if text[end] == 0x5C:
                raise ImapSyntaxError("Invalid escape in quoted string")
            raise ImapSyntaxError("NUL in quoted string")
        self.pos = m.end()
        self.count_arg()
        body = m.group(1)
        return _UNESCAPE_RE.sub(rb"\1", body) if b"\\" in body else body

    def read_literal(self, context: LiteralContext | None = None) -> LiteralArg:
        """Take the literal at the cursor. At the pending literal this raises
        :class:`PendingLiteral` with *context* (default: a plain string)."""
        if not self.at_literal():
            raise ImapSyntaxError("Expected a literal")
        lit = self.literals[self.seg]
        ctx = context or LiteralContext(self.command)
        if lit.binary and not ctx.binary_ok:
            raise ImapSyntaxError("literal8 is not allowed here")
        if lit.pending:
            raise PendingLiteral(ctx)
        self.seg += 1
        self.pos = 0
        self.count_arg()
        return lit

    def read_string(self, *, binary_ok: bool = False) -> bytes:
        """``string`` = quoted / literal (literal8 too when *binary_ok*)."""
        if self.peek() == 0x22:
            return self.read_quoted()
        if self.at_literal():
            lit = self.read_literal(LiteralContext(self.command, binary_ok=binary_ok))
            if lit.data is None:
                raise ImapSyntaxError("Literal not available")
            return lit.data
        raise ImapSyntaxError("Expected a string")

    def read_astring(self, what: str = "string") -> bytes:
        if self.peek() == 0x22 or self.at_literal():
            return self.read_string()
        tok = self.match(ASTRING_RE)
        if tok is None:
            raise ImapSyntaxError(f"Expected {what}")
        self.count_arg()
        return tok

    def read_nstring(self, *, binary_ok: bool = False) -> bytes | None:
        if self.peek_word() == "NIL":
            self.pos += 3
            self.count_arg()
            return None
        return self.read_string(binary_ok=binary_ok)

    def read_list_mailbox(self) -> bytes:
        """``list-mailbox`` = 1*list-char / string."""
        if self.peek() == 0x22 or self.at_literal():
            return self.read_string()
        tok = self.match(LIST_CHAR_RE)
        if tok is None:
            raise ImapSyntaxError("Expected a mailbox pattern")
        self.count_arg()
        return tok

    # -- decoded values ---------------------------------------------------------------------

    def decode_utf8(self, raw: bytes, what: str = "string") -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImapSyntaxError(f"Invalid UTF-8 in {what}") from exc

    def decode_mailbox(self, raw: bytes) -> str:
        """Mailbox name bytes -> str: mUTF-7 (or UTF-8 once UTF8=ACCEPT is on)."""
        if self.options.utf8:
            return self.decode_utf8(raw, "mailbox name")
        try:
            return mutf7.decode(raw)
        except mutf7.MUtf7Error as exc:
            # The command is well formed; only the name is unusable: NO, as Dovecot answers.
            raise ImapSyntaxError(
                f"Invalid mailbox name: not valid mUTF-7 ({exc})", status="NO"
            ) from exc

    def read_mailbox(self) -> str:
        """``mailbox`` = "INBOX" / astring, decoded, INBOX normalised."""
        return normalize_mailbox(self.decode_mailbox(self.read_astring("mailbox name")))

    def read_astring_str(self, what: str = "string") -> str:
        return self.decode_utf8(self.read_astring(what), what)

    def read_flag(self, *, allow_recent: bool = False, allow_wildcard: bool = False) -> str:
        """A flag: a system flag (canonical case), ``\\Recent`` if allowed, or a keyword."""
        if self.try_byte(0x5C):
            if allow_wildcard and self.try_byte(0x2A):
                self.count_arg()
                return "\\*"
            name = "\\" + self.read_atom("flag")
            upper = name.upper()
            canon = SYSTEM_FLAGS.get(upper)
            if canon is not None:
                return canon
            if allow_recent and upper == "\\RECENT":
                return "\\Recent"
            raise ImapSyntaxError(f"Invalid system flag {name}")
        return self.read_atom("flag keyword")

    def read_flag_list(self) -> tuple[str, ...]:
        """``flag-list`` = "(" [flag *(SP flag)] ")"."""
        self.open_list()
        flags: list[str] = []
        if not self.try_close_list():
            while True:
                flags.append(self.read_flag())
                if self.try_close_list():
                    break
                self.sp()
        return tuple(flags)

    def read_date(self) -> _dt.date:
        """``date`` = date-text / DQUOTE date-text DQUOTE."""
        if self.peek() == 0x22:
            raw = self.read_quoted()
        else:
            m = DATE_TOKEN_RE.match(self.texts[self.seg], self.pos)
            if m is None:
                raise ImapSyntaxError("Expected a date")
            self.pos = m.end()
            self.count_arg()
            raw = m.group()
        try:
            return parse_date(raw)
        except DateError as exc:
            raise ImapSyntaxError("Invalid date") from exc

    def read_datetime(self) -> _dt.datetime:
        if self.peek() != 0x22:
            raise ImapSyntaxError("Expected a quoted date-time")
        raw = self.read_quoted()
        try:
            return parse_datetime(raw)
        except DateError as exc:
            raise ImapSyntaxError("Invalid date-time") from exc
