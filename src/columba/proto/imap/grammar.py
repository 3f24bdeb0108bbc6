"""Argument grammar of every supported IMAP command (RFC 3501 / RFC 9051 §9 and extensions).

:func:`parse_command` reads one whole frame (tag, name, arguments, end) through a
:class:`~columba.proto.imap.lexer.Cursor` and returns a typed command from
:mod:`.commands`, or raises :class:`~columba.proto.imap.lexer.ImapSyntaxError`. Run over a
frame that ends with a pending literal it raises
:class:`~columba.proto.imap.lexer.PendingLiteral` instead, telling the connection parser
what the literal is for.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from columba.proto.imap import commands as c
from columba.proto.imap.fetch import FetchAttribute, parse_fetch_att, parse_fetch_atts
from columba.proto.imap.lexer import (
    AppendContext,
    Cursor,
    ImapSyntaxError,
    LiteralContext,
)
from columba.proto.imap.search import charset_codec, parse_charset, parse_search_keys
from columba.proto.imap.sequence import UINT32_MAX, SequenceSet

__all__ = ["UID_COMMANDS", "parse_append_continuation", "parse_command"]

Handler = Callable[[Cursor, str, str, bool], c.Command]

UID_COMMANDS = frozenset({"COPY", "MOVE", "FETCH", "STORE", "SEARCH", "EXPUNGE", "SORT", "THREAD"})

STATUS_ITEMS = frozenset(
    {
        "MESSAGES",
        "RECENT",
        "UIDNEXT",
        "UIDVALIDITY",
        "UNSEEN",
        "DELETED",
        "SIZE",
        "HIGHESTMODSEQ",
        "APPENDLIMIT",
        "MAILBOXID",
        "DELETED-STORAGE",
    }
)
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
LIST_RETURN_OPTIONS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"})
SEARCH_RETURN_OPTIONS = frozenset(
    {"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL"}
)
SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
SPECIAL_USE = {
    f.upper(): f
    for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
ESEARCH_FILTERS = frozenset({"selected", "selected-delayed", "inboxes", "personal", "subscribed"})
ESEARCH_MAILBOX_FILTERS = frozenset({"subtree", "subtree-one", "mailboxes"})

_BASE64_RE = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")
_STORE_ATT_RE = re.compile(rb"[+-]?[A-Za-z.]+")


# -- helpers ----------------------------------------------------------------------------------


def _paren_words(cur: Cursor, what: str, *, allow_empty: bool = True) -> list[str]:
    """``"(" [atom *(SP atom)] ")"``, upper-cased."""
    cur.open_list()
    words: list[str] = []
    if cur.try_close_list():
        if not allow_empty:
            raise ImapSyntaxError(f"Empty {what} list")
        return words
    while True:
        words.append(cur.read_keyword(what))
        if cur.try_close_list():
            return words
        cur.sp()


_PARTIAL_RE = re.compile(rb"(-?)([0-9]{1,10}):(-?)([0-9]{1,10})")


def _partial_range(cur: Cursor) -> tuple[int, int]:
    """RFC 9394 ``partial-range``: ``n:m`` or ``-n:-m`` (no 0, no ``*``, one sign),
    returned with the smaller magnitude first (``(1, 100)``, ``(-1, -100)``)."""
    tok = cur.match(_PARTIAL_RE)
    if tok is None:
        raise ImapSyntaxError("PARTIAL range broken")
    cur.count_arg()
    m = _PARTIAL_RE.fullmatch(tok)
    assert m is not None
    lo, hi = int(m.group(2)), int(m.group(4))
    if m.group(1) != m.group(3) or lo == 0 or hi == 0 or max(lo, hi) > UINT32_MAX:
        raise ImapSyntaxError("PARTIAL range broken")
    lo, hi = min(lo, hi), max(lo, hi)
    return (-lo, -hi) if m.group(1) else (lo, hi)


def _search_return_opts(cur: Cursor) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """After ``RETURN``: ``SP "(" [opt *(SP opt)] ")"``; PARTIAL takes a range (RFC 5267,
    RFC 9394). Returns the options and the PARTIAL range (None without PARTIAL)."""
    cur.sp()
    cur.open_list()
    opts: list[str] = []
    partial: tuple[int, int] | None = None
    if not cur.try_close_list():
        while True:
            opt = cur.read_keyword("RETURN option")
            if opt not in SEARCH_RETURN_OPTIONS:
                raise ImapSyntaxError(f"Unknown RETURN option {opt}")
            if opt == "PARTIAL":
                if partial is not None:
                    raise ImapSyntaxError("PARTIAL can be used only once")
                cur.sp()
                partial = _partial_range(cur)
            elif opt == "UPDATE" and opt in opts:
                raise ImapSyntaxError("Duplicate UPDATE return option")
            opts.append(opt)
            if cur.try_close_list():
                break
            cur.sp()
    if partial is not None and "ALL" in opts:
        raise ImapSyntaxError("PARTIAL conflicts with ALL")
    return tuple(dict.fromkeys(opts)), partial


def _mailbox_arg(cur: Cursor) -> str:
    cur.sp()
    return cur.read_mailbox()


def _seq_arg(cur: Cursor) -> SequenceSet:
    cur.sp()
    return cur.read_sequence_set()


# -- commands without arguments ---------------------------------------------------------------


def _noarg(cls: type[c.Command]) -> Handler:
    def handler(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
        return cls(tag=tag, name=name)

    return handler


def _expunge(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    seq = _seq_arg(cur) if uid else None
    return c.ExpungeCommand(tag=tag, name=name, uid=uid, sequence_set=seq)


# -- not authenticated ------------------------------------------------------------------------


def _authenticate(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    mech = cur.read_keyword("SASL mechanism")
    initial: bytes | None = None
    if cur.try_sp():
        tok = cur.match(_BASE64_RE)
        if tok is None:
            raise ImapSyntaxError("Invalid SASL initial response")
        if tok == b"=":
            initial = b""
        else:
            try:
                initial = base64.b64decode(tok, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ImapSyntaxError("Invalid base64 in SASL initial response") from exc
    return c.AuthenticateCommand(tag=tag, name=name, mechanism=mech, initial_response=initial)


def _login(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    user = cur.read_astring("user name")
    cur.sp()
    password = cur.read_astring("password")
    return c.LoginCommand(
        tag=tag,
        name=name,
        username=user.decode("utf-8", "surrogateescape"),
        password=password.decode("utf-8", "surrogateescape"),
    )


# -- authenticated ----------------------------------------------------------------------------


def _qresync(cur: Cursor) -> c.QResyncParams:
    cur.open_list()
    uidvalidity = cur.read_number(nz=True)
    cur.sp()
    modseq = cur.read_number64()
    known_uids = None
    known_seqs = known_match = None
    if cur.try_sp() and cur.peek() != 0x28:
        known_uids = cur.read_sequence_set(allow_saved=False)
        if known_uids.uses_star:
            raise ImapSyntaxError("'*' is not allowed in known-uids")
        if not cur.try_sp():
            cur.close_list()
            return c.QResyncParams(uidvalidity=uidvalidity, modseq=modseq, known_uids=known_uids)
    if cur.peek() == 0x28:
        cur.open_list()
        known_seqs = cur.read_sequence_set(allow_saved=False)
        cur.sp()
        known_match = cur.read_sequence_set(allow_saved=False)
        cur.close_list()
    cur.close_list()
    return c.QResyncParams(
        uidvalidity=uidvalidity,
        modseq=modseq,
        known_uids=known_uids,
        known_sequence_set=known_seqs,
        known_uid_set=known_match,
    )


def _select(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    mailbox = _mailbox_arg(cur)
    condstore = False
    qresync = None
    if cur.try_sp():
        cur.open_list()
        while True:
            param = cur.read_keyword("select parameter")
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC":
                cur.sp()
                qresync = _qresync(cur)
            else:
                raise ImapSyntaxError(f"Unknown {name} parameter {param}")
            if cur.try_close_list():
                break
            cur.sp()
    return c.SelectCommand(
        tag=tag,
        name=name,
        mailbox=mailbox,
        readonly=name == "EXAMINE",
        condstore=condstore,
        qresync=qresync,
    )


def _create(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    mailbox = _mailbox_arg(cur)
    uses: list[str] = []
    if cur.try_sp():
        cur.open_list()
        while True:
            param = cur.read_keyword("CREATE parameter")
            if param != "USE":
                raise ImapSyntaxError(f"Unknown CREATE parameter {param}")
            cur.sp()
            cur.open_list()
            while True:
                cur.expect_byte(0x5C)
                attr = "\\" + cur.read_atom("special-use attribute")
                uses.append(SPECIAL_USE.get(attr.upper(), attr))
                if cur.try_close_list():
                    break
                cur.sp()
            if cur.try_close_list():
                break
            cur.sp()
    return c.CreateCommand(tag=tag, name=name, mailbox=mailbox, special_use=tuple(uses))


def _mailbox_only(
    cls: type[c.DeleteCommand | c.SubscribeCommand | c.UnsubscribeCommand],
) -> Handler:
    def handler(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
        return cls(tag=tag, name=name, mailbox=_mailbox_arg(cur))

    return handler


def _rename(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    old = _mailbox_arg(cur)
    new = _mailbox_arg(cur)
    return c.RenameCommand(tag=tag, name=name, mailbox=old, new_mailbox=new)


def _status_items(cur: Cursor) -> tuple[str, ...]:
    items = _paren_words(cur, "STATUS item", allow_empty=False)
    for item in items:
        if item not in STATUS_ITEMS:
            raise ImapSyntaxError(f"Unknown STATUS item {item}")
    return tuple(dict.fromkeys(items))


def _list(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    extended = False
    selection: list[str] = []
    if cur.peek() == 0x28:
        extended = True
        selection = _paren_words(cur, "LIST selection option")
        for opt in selection:
            if opt not in LIST_SELECT_OPTIONS:
                raise ImapSyntaxError(f"Unknown LIST selection option {opt}")
        if "RECURSIVEMATCH" in selection and not set(selection) - {"RECURSIVEMATCH"}:
            raise ImapSyntaxError("RECURSIVEMATCH needs another selection option")
        cur.sp()
    reference = cur.decode_mailbox(cur.read_astring("reference"))
    cur.sp()
    patterns: list[str] = []
    if cur.try_open_list():
        extended = True
        while True:
            patterns.append(cur.decode_mailbox(cur.read_list_mailbox()))
            if cur.try_close_list():
                break
            cur.sp()
    else:
        patterns.append(cur.decode_mailbox(cur.read_list_mailbox()))
    return_opts: list[str] = []
    status: tuple[str, ...] | None = None
    if cur.try_sp():
        if cur.read_keyword("RETURN") != "RETURN":
            raise ImapSyntaxError("Expected RETURN")
        extended = True
        cur.sp()
        cur.open_list()
        if not cur.try_close_list():
            while True:
                opt = cur.read_keyword("LIST return option")
                if opt == "STATUS":
                    cur.sp()
                    status = _status_items(cur)
                elif opt in LIST_RETURN_OPTIONS:
                    return_opts.append(opt)
                else:
                    raise ImapSyntaxError(f"Unknown LIST return option {opt}")
                if cur.try_close_list():
                    break
                cur.sp()
    return c.ListCommand(
        tag=tag,
        name=name,
        reference=reference,
        patterns=tuple(patterns),
        selection=tuple(dict.fromkeys(selection)),
        return_options=tuple(dict.fromkeys(return_opts)),
        return_status=status,
        extended=extended,
    )


def _lsub(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    reference = cur.decode_mailbox(cur.read_astring("reference"))
    cur.sp()
    pattern = cur.decode_mailbox(cur.read_list_mailbox())
    return c.LsubCommand(tag=tag, name=name, reference=reference, pattern=pattern)


def _status(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    mailbox = _mailbox_arg(cur)
    cur.sp()
    return c.StatusCommand(tag=tag, name=name, mailbox=mailbox, items=_status_items(cur))


def _append_message(
    cur: Cursor, mailbox: str, index: int, literal_base: int = 0
) -> c.AppendMessage:
    """``[flag-list SP] [date-time SP] (literal / literal8 / "UTF8" SP "(" literal8 ")" /
    "CATENATE" SP "(" cat-part *(SP cat-part) ")")``."""
    flags: tuple[str, ...] = ()
    if cur.peek() == 0x28:
        flags = cur.read_flag_list()
        cur.sp()
    date = None
    if cur.peek() == 0x22:
        date = cur.read_datetime()
        cur.sp()
    if cur.peek_word() == "CATENATE":
        cur.read_atom()
        cur.sp()
        cur.open_list()
        message = AppendContext(mailbox, flags, date, index, False, 0, literal_base)
        parts = _catenate_parts(cur, message, [])
        return c.AppendMessage(index=index, flags=flags, internal_date=date, catenate=parts)
    utf8 = False
    if cur.peek_word() == "UTF8":
        cur.read_atom()
        cur.sp()
        cur.open_list()
        utf8 = True
    ctx = LiteralContext(
        "APPEND",
        append=AppendContext(mailbox, flags, date, index, utf8, -1, literal_base + cur.seg),
        binary_ok=True,
    )
    lit = cur.read_literal(ctx)
    if utf8:
        if not lit.binary:
            raise ImapSyntaxError("UTF8 needs a literal8 (~{n})")
        cur.close_list()
    return c.AppendMessage(
        index=index,
        flags=flags,
        internal_date=date,
        size=lit.size,
        data=lit.data,
        streamed=lit.streamed,
        binary=lit.binary,
        utf8=utf8,
    )


def _catenate_parts(
    cur: Cursor, ctx: AppendContext, parts: list[c.CatenatePart]
) -> tuple[c.CatenatePart, ...]:
    """RFC 4469 ``cat-part *(SP cat-part) ")"`` after the ``(`` (or after the TEXT part
    ``ctx.part - 1`` of a continuation); ``cat-part = "TEXT" SP literal / "URL" SP astring``
    (literal8 allowed, RFC 3516). ``ctx``: the message; literal numbers count from
    ``ctx.literal`` plus the cursor's literal position."""
    while True:
        kind = cur.read_keyword("CATENATE part")
        cur.sp()
        if kind == "URL":
            url = cur.read_astring("URL")
            parts.append(c.CatenatePart(url=url.decode("utf-8", "surrogateescape")))
        elif kind == "TEXT":
            number = ctx.literal + cur.seg
            part_ctx = AppendContext(
                ctx.mailbox, ctx.flags, ctx.internal_date, ctx.index, False, len(parts), number
            )
            lit = cur.read_literal(LiteralContext("APPEND", append=part_ctx, binary_ok=True))
            parts.append(
                c.CatenatePart(
                    data=lit.data,
                    size=lit.size,
                    streamed=lit.streamed,
                    stream_index=part_ctx.stream_index,
                    binary=lit.binary,
                )
            )
        else:
            raise ImapSyntaxError(f"Unknown CATENATE part {kind}")
        if cur.try_close_list():
            return tuple(parts)
        cur.sp()


def _append(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    mailbox = _mailbox_arg(cur)
    cur.sp()
    messages = [_append_message(cur, mailbox, 0)]
    while not cur.at_end():
        cur.sp()
        messages.append(_append_message(cur, mailbox, len(messages)))
    return c.AppendCommand(tag=tag, name=name, mailbox=mailbox, messages=tuple(messages))


def parse_append_continuation(cur: Cursor, previous: AppendContext) -> None:
    """Check the text after APPEND message *previous* up to the next (pending) message
    literal, without re-reading the whole command. Raises PendingLiteral or
    ImapSyntaxError (it never returns normally for a frame ending in a pending literal)."""
    if previous.part >= 0:  # inside CATENATE (...): more parts, or ")" and what follows
        if not cur.try_close_list():
            cur.sp()
            ctx = AppendContext(
                previous.mailbox,
                previous.flags,
                previous.internal_date,
                previous.index,
                False,
                0,
                previous.literal + 1,
            )
            _catenate_parts(cur, ctx, [c.CatenatePart()] * (previous.part + 1))
    elif previous.utf8:
        cur.expect_byte(0x29)
    cur.sp()
    _append_message(cur, previous.mailbox, previous.index + 1, previous.literal + 1)
    raise ImapSyntaxError("Unexpected literal")


def _id(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    if cur.peek_word() == "NIL":
        cur.read_atom()
        return c.IdCommand(tag=tag, name=name, params=None)
    cur.open_list()
    params: list[tuple[str, str | None]] = []
    if not cur.try_close_list():
        while True:
            key = cur.decode_utf8(cur.read_string(), "ID field")
            cur.sp()
            raw = cur.read_nstring()
            params.append((key, None if raw is None else cur.decode_utf8(raw, "ID value")))
            if cur.try_close_list():
                break
            cur.sp()
    return c.IdCommand(tag=tag, name=name, params=tuple(params))


def _enable(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    caps: list[str] = []
    cur.sp()
    while True:
        caps.append(cur.read_keyword("capability"))
        if not cur.try_sp():
            break
    return c.EnableCommand(tag=tag, name=name, capabilities=tuple(dict.fromkeys(caps)))


def _compress(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    return c.CompressCommand(tag=tag, name=name, algorithm=cur.read_keyword("algorithm"))


def _getquota(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    return c.GetQuotaCommand(tag=tag, name=name, root=cur.read_astring_str("quota root"))


def _getquotaroot(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    return c.GetQuotaRootCommand(tag=tag, name=name, mailbox=_mailbox_arg(cur))


def _setquota(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    root = cur.read_astring_str("quota root")
    cur.sp()
    cur.open_list()
    limits: list[tuple[str, int]] = []
    if not cur.try_close_list():
        while True:
            resource = cur.read_keyword("resource name")
            cur.sp()
            limits.append((resource, cur.read_number64()))
            if cur.try_close_list():
                break
            cur.sp()
    return c.SetQuotaCommand(tag=tag, name=name, root=root, limits=tuple(limits))


def _getmetadata(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    maxsize: int | None = None
    depth = "0"
    if cur.try_open_list():
        while True:
            opt = cur.read_keyword("GETMETADATA option")
            cur.sp()
            if opt == "MAXSIZE":
                maxsize = cur.read_number()
            elif opt == "DEPTH":
                depth = cur.read_keyword("depth").lower()
                if depth not in ("0", "1", "infinity"):
                    raise ImapSyntaxError("Invalid DEPTH")
            else:
                raise ImapSyntaxError(f"Unknown GETMETADATA option {opt}")
            if cur.try_close_list():
                break
            cur.sp()
        cur.sp()
    mailbox = cur.read_mailbox()
    cur.sp()
    entries: list[str] = []
    if cur.try_open_list():
        while True:
            entries.append(cur.read_astring_str("entry"))
            if cur.try_close_list():
                break
            cur.sp()
    else:
        entries.append(cur.read_astring_str("entry"))
    return c.GetMetadataCommand(
        tag=tag, name=name, mailbox=mailbox, entries=tuple(entries), maxsize=maxsize, depth=depth
    )


def _setmetadata(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    mailbox = _mailbox_arg(cur)
    cur.sp()
    cur.open_list()
    entries: list[tuple[str, bytes | None]] = []
    while True:
        entry = cur.read_astring_str("entry")
        cur.sp()
        entries.append((entry, cur.read_nstring(binary_ok=True)))
        if cur.try_close_list():
            break
        cur.sp()
    return c.SetMetadataCommand(tag=tag, name=name, mailbox=mailbox, entries=tuple(entries))


_MECHANISM_RE = re.compile(rb"[A-Za-z0-9.-]+")
URLFETCH_OPTIONS = frozenset({"BODYPARTSTRUCTURE", "BINARY", "BODY"})


def _mechanism(cur: Cursor) -> str:
    """RFC 4467 ``mechanism = "INTERNAL" / 1*(ALPHA / DIGIT / "-" / ".")``, upper-cased."""
    tok = cur.match(_MECHANISM_RE)
    if tok is None:
        raise ImapSyntaxError("Expected a URLAUTH mechanism")
    cur.count_arg()
    return tok.decode("ascii").upper()


def _resetkey(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    """RFC 4467 ``RESETKEY [SP mailbox *(SP mechanism)]``."""
    if not cur.try_sp():
        return c.ResetKeyCommand(tag=tag, name=name)
    mailbox = cur.read_mailbox()
    mechs: list[str] = []
    while cur.try_sp():
        mechs.append(_mechanism(cur))
    return c.ResetKeyCommand(tag=tag, name=name, mailbox=mailbox, mechanisms=tuple(mechs))


def _genurlauth(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    """RFC 4467 ``GENURLAUTH 1*(SP url-rump SP mechanism)``."""
    requests: list[tuple[str, str]] = []
    while True:
        cur.sp()
        rump = cur.read_astring("URL")
        cur.sp()
        requests.append((rump.decode("utf-8", "surrogateescape"), _mechanism(cur)))
        if cur.at_end():
            break
    return c.GenUrlAuthCommand(tag=tag, name=name, requests=tuple(requests))


def _urlfetch(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    """RFC 4467 ``URLFETCH 1*(SP url)``; RFC 5524 ``"(" url 1*(SP option) ")"``."""
    urls: list[tuple[str, tuple[str, ...]]] = []
    while True:
        cur.sp()
        opts: list[str] = []
        if cur.try_open_list():
            url = cur.read_astring("URL")
            while not cur.try_close_list():
                cur.sp()
                opt = cur.read_keyword("URLFETCH option")
                if opt not in URLFETCH_OPTIONS:
                    raise ImapSyntaxError(f"Unknown URLFETCH option {opt}")
                opts.append(opt)
            if "BODY" in opts and "BINARY" in opts:
                raise ImapSyntaxError("URLFETCH options BODY and BINARY conflict")
        else:
            url = cur.read_astring("URL")
        urls.append((url.decode("utf-8", "surrogateescape"), tuple(dict.fromkeys(opts))))
        if cur.at_end():
            break
    return c.UrlFetchCommand(tag=tag, name=name, urls=tuple(urls))


# -- selected ---------------------------------------------------------------------------------


def _search_program(cur: Cursor) -> tuple[str | None, str]:
    """``[CHARSET SP astring SP]``: returns (charset as sent, python codec)."""
    charset = None
    if cur.peek_word() == "CHARSET":
        cur.read_atom()
        cur.sp()
        charset = parse_charset(cur)
        cur.sp()
    codec = charset_codec(charset, cur.options.charsets) if charset is not None else "utf-8"
    return charset, codec


def _search(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    return_opts = None
    partial = None
    if cur.peek_word() == "RETURN":
        cur.read_atom()
        return_opts, partial = _search_return_opts(cur)
        cur.sp()
    charset, codec = _search_program(cur)
    key = parse_search_keys(cur, codec)
    return c.SearchCommand(
        tag=tag,
        name=name,
        uid=uid,
        criteria=key,
        charset=charset,
        return_options=return_opts,
        partial=partial,
    )


def _fetch(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    seq = _seq_arg(cur)
    cur.sp()
    atts, macro = parse_fetch_atts(cur)
    changedsince = None
    vanished = False
    partial: tuple[int, int] | None = None
    if cur.try_sp():
        cur.open_list()
        while True:
            mod = cur.read_keyword("FETCH modifier")
            if mod == "CHANGEDSINCE":
                cur.sp()
                changedsince = cur.read_number64()
            elif mod == "VANISHED":
                vanished = True
            elif mod == "PARTIAL":  # RFC 9394 §3.3: UID FETCH only, once
                if not uid:
                    raise ImapSyntaxError("PARTIAL needs UID FETCH")
                if partial is not None:
                    raise ImapSyntaxError("PARTIAL can be used only once")
                cur.sp()
                partial = _partial_range(cur)
            else:
                raise ImapSyntaxError(f"Unknown FETCH modifier {mod}")
            if cur.try_close_list():
                break
            cur.sp()
        if vanished and (not uid or changedsince is None):
            raise ImapSyntaxError("VANISHED needs UID FETCH and CHANGEDSINCE")
    return c.FetchCommand(
        tag=tag,
        name=name,
        uid=uid,
        sequence_set=seq,
        attributes=atts,
        macro=macro,
        changedsince=changedsince,
        vanished=vanished,
        partial=partial,
    )


def _store(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    seq = _seq_arg(cur)
    cur.sp()
    unchangedsince = None
    if cur.try_open_list():
        mod = cur.read_keyword("STORE modifier")
        if mod != "UNCHANGEDSINCE":
            raise ImapSyntaxError(f"Unknown STORE modifier {mod}")
        cur.sp()
        unchangedsince = cur.read_number64()
        cur.close_list()
        cur.sp()
    tok = cur.match(_STORE_ATT_RE)
    if tok is None:
        raise ImapSyntaxError("Expected FLAGS, +FLAGS or -FLAGS")
    cur.count_arg()
    att = tok.decode("ascii").upper()
    action = "set"
    if att[0] in "+-":
        action = "add" if att[0] == "+" else "remove"
        att = att[1:]
    if att not in ("FLAGS", "FLAGS.SILENT"):
        raise ImapSyntaxError(f"Invalid STORE item {att}")
    cur.sp()
    if cur.peek() == 0x28:
        flags = cur.read_flag_list()
    else:
        items = [cur.read_flag()]
        while cur.try_sp():
            items.append(cur.read_flag())
        flags = tuple(items)
    return c.StoreCommand(
        tag=tag,
        name=name,
        uid=uid,
        sequence_set=seq,
        action=action,
        silent=att.endswith(".SILENT"),
        flags=flags,
        unchangedsince=unchangedsince,
    )


def _copy_move(cls: type[c.CopyCommand | c.MoveCommand]) -> Handler:
    def handler(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
        seq = _seq_arg(cur)
        return cls(tag=tag, name=name, uid=uid, sequence_set=seq, mailbox=_mailbox_arg(cur))

    return handler


def _sort(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    return_opts = None
    partial = None
    if cur.peek_word() == "RETURN":
        cur.read_atom()
        return_opts, partial = _search_return_opts(cur)
        cur.sp()
    words = _paren_words(cur, "sort criterion", allow_empty=False)
    criteria: list[c.SortCriterion] = []
    reverse = False
    for word in words:
        if word == "REVERSE":
            if reverse:
                raise ImapSyntaxError("REVERSE twice")
            reverse = True
            continue
        if word not in SORT_KEYS:
            raise ImapSyntaxError(f"Unknown sort key {word}")
        criteria.append(c.SortCriterion(key=word, reverse=reverse))
        reverse = False
    if reverse:
        raise ImapSyntaxError("REVERSE without a sort key")
    cur.sp()
    charset = parse_charset(cur)
    # The charset is required here: with no search key after it, the "charset" was really
    # the search key, and the command is a BAD (as Dovecot answers), not a BADCHARSET.
    cur.sp()
    codec = charset_codec(charset, cur.options.charsets)
    key = parse_search_keys(cur, codec)
    return c.SortCommand(
        tag=tag,
        name=name,
        uid=uid,
        criteria=tuple(criteria),
        charset=charset,
        search=key,
        return_options=return_opts,
        partial=partial,
    )


def _thread(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    algorithm = cur.read_keyword("thread algorithm")
    cur.sp()
    charset = parse_charset(cur)
    # The charset is required here: with no search key after it, the "charset" was really
    # the search key, and the command is a BAD (as Dovecot answers), not a BADCHARSET.
    cur.sp()
    codec = charset_codec(charset, cur.options.charsets)
    key = parse_search_keys(cur, codec)
    return c.ThreadCommand(
        tag=tag, name=name, uid=uid, algorithm=algorithm, charset=charset, search=key
    )


def _esearch(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    sources: list[tuple[str, tuple[str, ...]]] = []
    if cur.peek_word() == "IN":
        cur.read_atom()
        cur.sp()
        cur.open_list()
        while True:
            flt = cur.read_keyword("source filter").lower()
            boxes: list[str] = []
            if flt in ESEARCH_MAILBOX_FILTERS:
                cur.sp()
                if cur.try_open_list():
                    while True:
                        boxes.append(cur.read_mailbox())
                        if cur.try_close_list():
                            break
                        cur.sp()
                else:
                    boxes.append(cur.read_mailbox())
            elif flt not in ESEARCH_FILTERS:
                raise ImapSyntaxError(f"Unknown ESEARCH source {flt}")
            sources.append((flt, tuple(boxes)))
            if cur.try_close_list():
                break
            cur.sp()
        cur.sp()
    return_opts = None
    partial = None
    if cur.peek_word() == "RETURN":
        cur.read_atom()
        return_opts, partial = _search_return_opts(cur)
        cur.sp()
    charset, codec = _search_program(cur)
    key = parse_search_keys(cur, codec)
    return c.EsearchCommand(
        tag=tag,
        name=name,
        criteria=key,
        sources=tuple(sources),
        charset=charset,
        return_options=return_opts,
        partial=partial,
    )


NOTIFY_EVENTS = {
    e.upper(): e
    for e in (
        "MessageNew",
        "MessageExpunge",
        "FlagChange",
        "AnnotationChange",
        "MailboxName",
        "SubscriptionChange",
        "MailboxMetadataChange",
        "ServerMetadataChange",
    )
}
NOTIFY_FILTERS = frozenset({"selected", "selected-delayed", "inboxes", "personal", "subscribed"})
NOTIFY_MAILBOX_FILTERS = frozenset({"subtree", "mailboxes"})


def _notify_events(cur: Cursor) -> tuple[c.NotifyEvent, ...] | None:
    """``"(" event *(SP event) ")" / "NONE"``; MessageNew may carry ``(fetch-att ...)``."""
    if not cur.try_open_list():
        if cur.read_keyword("NOTIFY events") != "NONE":
            raise ImapSyntaxError("Expected a list of NOTIFY events or NONE")
        return None
    events: list[c.NotifyEvent] = []
    while True:
        word = cur.read_keyword("NOTIFY event")
        name = NOTIFY_EVENTS.get(word, word)
        atts: list[FetchAttribute] = []
        if name == "MessageNew" and cur.try_sp():
            if cur.try_open_list():
                while True:
                    atts.append(parse_fetch_att(cur))
                    if cur.try_close_list():
                        break
                    cur.sp()
                if cur.try_close_list():
                    events.append(c.NotifyEvent(name=name, fetch_attributes=tuple(atts)))
                    return tuple(events)
                cur.sp()
            events.append(c.NotifyEvent(name=name, fetch_attributes=tuple(atts)))
            continue
        events.append(c.NotifyEvent(name=name))
        if cur.try_close_list():
            return tuple(events)
        cur.sp()


def _notify(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    """RFC 5465 ``NOTIFY NONE`` / ``NOTIFY SET [STATUS] 1*(SP event-group)``."""
    cur.sp()
    verb = cur.read_keyword("NOTIFY SET or NONE")
    if verb == "NONE":
        return c.NotifyCommand(tag=tag, name=name, none=True)
    if verb != "SET":
        raise ImapSyntaxError("Expected NOTIFY SET or NOTIFY NONE")
    cur.sp()
    status = False
    if cur.peek_word() == "STATUS":
        cur.read_atom()
        status = True
        cur.sp()
    groups: list[c.NotifyEventGroup] = []
    while True:
        cur.open_list()
        flt = cur.read_keyword("filter-mailboxes").lower()
        boxes: list[str] = []
        if flt in NOTIFY_MAILBOX_FILTERS:
            cur.sp()
            if cur.try_open_list():
                while True:
                    boxes.append(cur.read_mailbox())
                    if cur.try_close_list():
                        break
                    cur.sp()
            else:
                boxes.append(cur.read_mailbox())
        elif flt not in NOTIFY_FILTERS:
            raise ImapSyntaxError(f"Unknown NOTIFY filter {flt}")
        cur.sp()
        events = _notify_events(cur)
        cur.close_list()
        groups.append(c.NotifyEventGroup(filter=flt, mailboxes=tuple(boxes), events=events))
        if not cur.try_sp():
            break
    return c.NotifyCommand(tag=tag, name=name, status=status, groups=tuple(groups))


def _cancelupdate(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    """RFC 5267 ``CANCELUPDATE 1*(SP quoted)`` (any string form accepted)."""
    tags: list[str] = []
    while True:
        cur.sp()
        tags.append(cur.read_astring_str("tag"))
        if cur.at_end():
            break
    return c.CancelUpdateCommand(tag=tag, name=name, tags=tuple(tags))


HANDLERS: dict[str, Handler] = {
    "CAPABILITY": _noarg(c.CapabilityCommand),
    "NOOP": _noarg(c.NoopCommand),
    "LOGOUT": _noarg(c.LogoutCommand),
    "STARTTLS": _noarg(c.StartTlsCommand),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "SELECT": _select,
    "EXAMINE": _select,
    "CREATE": _create,
    "DELETE": _mailbox_only(c.DeleteCommand),
    "RENAME": _rename,
    "SUBSCRIBE": _mailbox_only(c.SubscribeCommand),
    "UNSUBSCRIBE": _mailbox_only(c.UnsubscribeCommand),
    "LIST": _list,
    "LSUB": _lsub,
    "NAMESPACE": _noarg(c.NamespaceCommand),
    "STATUS": _status,
    "APPEND": _append,
    "IDLE": _noarg(c.IdleCommand),
    "ID": _id,
    "ENABLE": _enable,
    "COMPRESS": _compress,
    "GETQUOTA": _getquota,
    "GETQUOTAROOT": _getquotaroot,
    "SETQUOTA": _setquota,
    "GETMETADATA": _getmetadata,
    "SETMETADATA": _setmetadata,
    "RESETKEY": _resetkey,
    "GENURLAUTH": _genurlauth,
    "URLFETCH": _urlfetch,
    "CHECK": _noarg(c.CheckCommand),
    "CLOSE": _noarg(c.CloseCommand),
    "UNSELECT": _noarg(c.UnselectCommand),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_move(c.CopyCommand),
    "MOVE": _copy_move(c.MoveCommand),
    "SORT": _sort,
    "THREAD": _thread,
    "ESEARCH": _esearch,
    "CANCELUPDATE": _cancelupdate,
    "NOTIFY": _notify,
}


def parse_command(cur: Cursor) -> c.Command:
    """Parse a whole command frame. Raises ImapSyntaxError or PendingLiteral."""
    tag = cur.read_tag()
    if cur.at_end():
        raise ImapSyntaxError("Missing command name")
    cur.sp()
    name = cur.read_keyword("command name")
    uid = False
    if name == "UID":
        cur.sp()
        sub = cur.read_keyword("command name")
        if sub not in UID_COMMANDS:
            raise ImapSyntaxError(f"Unknown command UID {sub}")
        name, uid = sub, True
    cur.command = name
    handler = HANDLERS.get(name)
    if handler is None:
        raise ImapSyntaxError(f"Unknown command {name}")
    command = handler(cur, tag, name, uid)
    cur.expect_end()
    return command


def command_name_of(first_line: bytes) -> str | None:
    """Cheap look at a frame's first line: the command name (``UID`` folded), or None."""
    parts = first_line.split(b" ", 3)
    if len(parts) < 2:
        return None
    name = parts[1].upper()
    if name == b"UID" and len(parts) > 2:
        name = parts[2].upper()
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        return None
