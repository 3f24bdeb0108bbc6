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
from columba.proto.imap.fetch import parse_fetch_atts
from columba.proto.imap.lexer import (
    AppendContext,
    Cursor,
    ImapSyntaxError,
    LiteralContext,
)
from columba.proto.imap.search import charset_codec, parse_charset, parse_search_keys
from columba.proto.imap.sequence import SequenceSet

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
SEARCH_RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
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


def _search_return_opts(cur: Cursor) -> tuple[str, ...]:
    """After ``RETURN``: ``SP "(" [opt *(SP opt)] ")"``."""
    cur.sp()
    opts = _paren_words(cur, "RETURN option")
    for opt in opts:
        if opt not in SEARCH_RETURN_OPTIONS:
            raise ImapSyntaxError(f"Unknown RETURN option {opt}")
    return tuple(dict.fromkeys(opts))


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


def _append_message(cur: Cursor, mailbox: str, index: int) -> c.AppendMessage:
    """``[flag-list SP] [date-time SP] (literal / literal8 / "UTF8" SP "(" literal8 ")")``."""
    flags: tuple[str, ...] = ()
    if cur.peek() == 0x28:
        flags = cur.read_flag_list()
        cur.sp()
    date = None
    if cur.peek() == 0x22:
        date = cur.read_datetime()
        cur.sp()
    utf8 = False
    if cur.peek_word() == "UTF8":
        cur.read_atom()
        cur.sp()
        cur.open_list()
        utf8 = True
    ctx = LiteralContext(
        "APPEND",
        append=AppendContext(mailbox, flags, date, index, utf8),
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
    if previous.utf8:
        cur.expect_byte(0x29)
    cur.sp()
    _append_message(cur, previous.mailbox, previous.index + 1)
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
    if cur.peek_word() == "RETURN":
        cur.read_atom()
        return_opts = _search_return_opts(cur)
        cur.sp()
    charset, codec = _search_program(cur)
    key = parse_search_keys(cur, codec)
    return c.SearchCommand(
        tag=tag, name=name, uid=uid, criteria=key, charset=charset, return_options=return_opts
    )


def _fetch(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    seq = _seq_arg(cur)
    cur.sp()
    atts, macro = parse_fetch_atts(cur)
    changedsince = None
    vanished = False
    if cur.try_sp():
        cur.open_list()
        while True:
            mod = cur.read_keyword("FETCH modifier")
            if mod == "CHANGEDSINCE":
                cur.sp()
                changedsince = cur.read_number64()
            elif mod == "VANISHED":
                vanished = True
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
    if cur.peek_word() == "RETURN":
        cur.read_atom()
        return_opts = _search_return_opts(cur)
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
    codec = charset_codec(charset, cur.options.charsets)
    cur.sp()
    key = parse_search_keys(cur, codec)
    return c.SortCommand(
        tag=tag,
        name=name,
        uid=uid,
        criteria=tuple(criteria),
        charset=charset,
        search=key,
        return_options=return_opts,
    )


def _thread(cur: Cursor, tag: str, name: str, uid: bool) -> c.Command:
    cur.sp()
    algorithm = cur.read_keyword("thread algorithm")
    cur.sp()
    charset = parse_charset(cur)
    codec = charset_codec(charset, cur.options.charsets)
    cur.sp()
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
    if cur.peek_word() == "RETURN":
        cur.read_atom()
        return_opts = _search_return_opts(cur)
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
    )


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
