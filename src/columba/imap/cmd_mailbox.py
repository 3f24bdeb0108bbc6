"""Mailbox commands: SELECT/EXAMINE, CLOSE, UNSELECT (RFC 3691), CREATE (with RFC 6154
CREATE-SPECIAL-USE), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (RFC 5258 LIST-EXTENDED,
RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN), LSUB and STATUS (RFC 8438
STATUS=SIZE, RFC 7889 APPENDLIMIT, RFC 8474 MAILBOXID).

LIST patterns are matched here (the storage returns every mailbox): ``*`` matches anything,
``%`` anything but the separator; ``INBOX`` matches in any case.
"""

from __future__ import annotations

import re
import unicodedata

from columba.imap import condstore
from columba.imap.session import CommandError, ImapSession, Reply, SelectedMailbox, State
from columba.proto.imap import commands as c
from columba.proto.imap.lexer import normalize_mailbox
from columba.proto.imap.response import (
    Atom,
    ResponseCode,
    encode_flags,
    encode_mailbox,
    encode_string,
)
from columba.storage import names
from columba.storage.api import (
    SPECIAL_USE_FLAGS,
    SYSTEM_FLAGS,
    MailboxInfo,
    MailboxStatus,
    MailboxView,
    MailUser,
    StorageError,
)

__all__ = [
    "close",
    "create",
    "delete",
    "list_command",
    "lsub",
    "rename",
    "select",
    "status",
    "status_items",
    "subscribe",
    "unselect",
    "unsubscribe",
]

_FLAG_ORDER = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


# ---------------------------------------------------------------------- SELECT / EXAMINE


async def select(session: ImapSession, cmd: c.SelectCommand) -> Reply:
    user = session.require_user()
    if session.selected is not None:
        await session.close_mailbox()
        # RFC 7162 §3.2.11, RFC 9051 §7.1: the previous mailbox is closed first
        session.untagged_ok("Previous mailbox closed.", "CLOSED")
    if cmd.qresync is not None and not session.qresync:
        raise CommandError("BAD", "QRESYNC not enabled.")
    if cmd.condstore:
        condstore.enable_condstore(session)
    name = _given_name(session, cmd.mailbox)
    view = await user.open_mailbox(name, readonly=cmd.readonly)
    sel = SelectedMailbox(view, cmd.readonly, list(view.uids()))
    session.selected = sel
    session.state = State.SELECTED
    keywords = [k for k in view.keywords() if k not in SYSTEM_FLAGS]
    flags = [*_FLAG_ORDER, *keywords]
    out = bytearray()
    out += b"* FLAGS " + encode_flags(flags) + b"\r\n"
    session.write(bytes(out))
    if cmd.readonly:
        session.untagged_ok("Read-only mailbox.", ResponseCode("PERMANENTFLAGS", []))
    else:
        permanent = [Atom(f) for f in (*flags, "\\*")]
        session.untagged_ok("Flags permitted.", ResponseCode("PERMANENTFLAGS", permanent))
    session.write(b"* %d EXISTS\r\n" % sel.exists)
    if not session.rev2:  # RFC 9051 has neither RECENT nor the UNSEEN response code
        session.write(b"* %d RECENT\r\n" % len(view.recent_uids()))
        unseen = _first_unseen(view, sel.uids)
        if unseen is not None:
            seq = sel.seq_of(unseen)
            session.untagged_ok("First unseen.", ResponseCode("UNSEEN", seq))
    session.untagged_ok("UIDs valid", ResponseCode("UIDVALIDITY", view.uidvalidity))
    session.untagged_ok("Predicted next UID", ResponseCode("UIDNEXT", view.uidnext))
    # obox keeps modseqs for every mailbox: HIGHESTMODSEQ always, NOMODSEQ never (RFC 7162)
    session.untagged_ok("Highest", ResponseCode("HIGHESTMODSEQ", view.highestmodseq))
    condstore.mark_announced(sel)
    session.untagged_ok("Ok", ResponseCode("MAILBOXID", [Atom(view.guid)]))
    if session.rev2:  # RFC 9051 §6.3.2: the mailbox's LIST response (OLDNAME if normalised)
        old = cmd.mailbox if name != cmd.mailbox else None
        session.write(_list_line(view.name, user.separator, old=old))
    if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
        await condstore.qresync_select(session, sel, cmd.qresync)
    code = "READ-ONLY" if cmd.readonly else "READ-WRITE"
    return Reply("OK", ("Examine" if cmd.readonly else "Select") + " completed.", code)


def _first_unseen(view: MailboxView, uids: list[int]) -> int | None:
    """UID of the first message without ``\\Seen`` (looked at in growing slices: it is
    mostly near the start)."""
    start = 0
    step = 1024
    while start < len(uids):
        for uid, flags, _modseq in view.flag_rows(uids[start : start + step]):
            if "\\Seen" not in flags:
                return uid
        start += step
        step = min(step * 4, 65536)
    return None


async def close(session: ImapSession, cmd: c.CloseCommand) -> Reply:
    sel = session.require_selected()
    if not sel.readonly:
        try:
            await sel.view.expunge()
        except StorageError:
            await session.close_mailbox()
            raise
    await session.close_mailbox()
    return Reply("OK", "Close completed.")


async def unselect(session: ImapSession, cmd: c.UnselectCommand) -> Reply:
    session.require_selected()
    await session.close_mailbox()
    return Reply("OK", "Unselect completed.")


# ---------------------------------------------------------------------- CREATE / DELETE / RENAME


def _strip_separator(name: str, sep: str) -> str:
    return name[:-1] if len(name) > 1 and name.endswith(sep) else name


_NOT_IN_NAMES = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""RFC 9051 §5.1: no control characters (C0, DEL, C1), U+2028 or U+2029 in mailbox names."""


def _new_name(name: str) -> str:
    """A name about to be created (CREATE, RENAME's target): Net-Unicode (RFC 5198, NFC) is
    what is stored, control characters are refused with ``NO [CANNOT]`` (RFC 9051 §5.1,
    §6.3.4)."""
    if _NOT_IN_NAMES.search(name):
        raise CommandError("NO", "Mailbox name contains control characters.", "CANNOT")
    name = unicodedata.normalize("NFC", name)
    parts = name.split(names.SEPARATOR)
    if (
        len(name.encode("utf-8", "surrogatepass")) > names.MAX_NAME_BYTES
        or len(parts) > names.MAX_LEVELS
        or any(len(p.encode("utf-8", "surrogatepass")) > names.MAX_COMPONENT_BYTES for p in parts)
    ):
        raise CommandError("NO", "Mailbox name is too long.", "LIMIT")  # RFC 9051 §7.1
    return name


def _given_name(session: ImapSession, name: str) -> str:
    """An existing mailbox's name as given: with UTF-8 names (UTF8=ACCEPT, IMAP4rev2) a
    denormalised name means its NFC form, the only form CREATE and RENAME store."""
    return session.mailbox_arg(name)


def _list_line(name: str, sep: str, *, flags: tuple[str, ...] = (), old: str | None) -> bytes:
    """``* LIST (flags) sep name``, with RFC 9051 §6.3.9.7 ``("OLDNAME" (old))`` when the
    server normalised the name the client gave."""
    line = b"* LIST " + encode_flags(list(flags)) + b" " + encode_string(sep) + b" "
    line += encode_mailbox(name, utf8=True)
    if old is not None:
        line += b' ("OLDNAME" (' + encode_mailbox(old, utf8=True) + b"))"
    return line + b"\r\n"


def _announce_normalised(
    session: ImapSession, given: str, name: str, sep: str, flags: tuple[str, ...] = ()
) -> None:
    """RFC 9051 §6.3.4-§6.3.6: a name the server normalised is announced by an untagged
    LIST with OLDNAME (the name as given); IMAP4rev2 sessions only (OLDNAME is not in
    IMAP4rev1 without NOTIFY)."""
    if session.rev2 and given != name:
        session.write(_list_line(name, sep, flags=flags, old=given))


async def create(session: ImapSession, cmd: c.CreateCommand) -> Reply:
    user = session.require_user()
    given = _strip_separator(cmd.mailbox, user.separator)
    if not given:
        return Reply("NO", "Invalid mailbox name.", "CANNOT")
    name = _new_name(given)
    uses = frozenset(cmd.special_use)
    unknown = [u for u in uses if u not in SPECIAL_USE_FLAGS]
    if unknown:
        return Reply("NO", f"Unsupported special-use attribute {unknown[0]}.", "USEATTR")
    await user.create_mailbox(name, uses)
    _announce_normalised(session, given, name, user.separator)
    # RFC 8474 §4.1: the tagged OK of CREATE carries the new mailbox's MAILBOXID.
    status = await user.status(name)
    return Reply("OK", "Create completed.", ResponseCode("MAILBOXID", [Atom(status.mailboxid)]))


async def delete(session: ImapSession, cmd: c.DeleteCommand) -> Reply:
    user = session.require_user()
    given = _strip_separator(cmd.mailbox, user.separator)
    name = _given_name(session, given)
    sel = session.selected
    try:
        await user.delete_mailbox(name)
    except StorageError as exc:
        if exc.imap_code == "NONEXISTENT" and await _has_children(user, name):
            # RFC 9051 §6.3.5: a \Noselect name with inferiors can't be deleted
            return Reply("NO", "Mailbox has children, delete them first.", "HASCHILDREN")
        raise
    _announce_normalised(session, given, name, user.separator, ("\\NonExistent",))
    if sel is not None and sel.view.name == normalize_mailbox(name, user.separator):
        await session.close_mailbox()
    return Reply("OK", "Delete completed.")


async def rename(session: ImapSession, cmd: c.RenameCommand) -> Reply:
    user = session.require_user()
    sep = user.separator
    old = _given_name(session, _strip_separator(cmd.mailbox, sep))
    given = _strip_separator(cmd.new_mailbox, sep)
    new = _new_name(given)
    await user.rename_mailbox(old, new)
    _announce_normalised(session, given, new, sep)
    return Reply("OK", "Rename completed.")


async def _has_children(user: MailUser, name: str) -> bool:
    prefix = normalize_mailbox(name, user.separator) + user.separator
    return any(b.exists and b.name.startswith(prefix) for b in await user.list_mailboxes())


async def subscribe(session: ImapSession, cmd: c.SubscribeCommand) -> Reply:
    user = session.require_user()
    name = _given_name(session, _strip_separator(cmd.mailbox, user.separator))
    await user.set_subscribed(name, True)
    return Reply("OK", "Subscribe completed.")


async def unsubscribe(session: ImapSession, cmd: c.UnsubscribeCommand) -> Reply:
    user = session.require_user()
    name = _given_name(session, _strip_separator(cmd.mailbox, user.separator))
    await user.set_subscribed(name, False)
    return Reply("OK", "Unsubscribe completed.")


# ---------------------------------------------------------------------- STATUS


def status_items(session: ImapSession, st: MailboxStatus, items: tuple[str, ...]) -> list[object]:
    out: list[object] = []
    for item in items:
        value: object
        if item == "MESSAGES":
            value = st.messages
        elif item == "RECENT":
            if session.rev2:  # RFC 9051 has no RECENT
                raise CommandError("BAD", "Unknown STATUS item RECENT.")
            value = st.recent
        elif item == "UIDNEXT":
            value = st.uidnext
        elif item == "UIDVALIDITY":
            value = st.uidvalidity
        elif item == "UNSEEN":
            value = st.unseen
        elif item == "DELETED":
            value = st.deleted
        elif item == "SIZE":
            value = st.size
        elif item == "HIGHESTMODSEQ":
            condstore.enable_condstore(session)  # a CONDSTORE enabling command (RFC 7162)
            value = st.highestmodseq
        elif item == "APPENDLIMIT":
            value = session.append_limit
        elif item == "MAILBOXID":
            value = [Atom(st.mailboxid)]
        elif item == "DELETED-STORAGE":
            value = st.deleted_storage
        else:
            raise CommandError("BAD", f"Unknown STATUS item {item}.")
        out.extend((Atom(item), value))
    return out


def _status_line(session: ImapSession, name: str, values: list[object]) -> bytes:
    from columba.proto.imap.response import encode_list

    return (
        b"* STATUS "
        + encode_mailbox(name, utf8=session.utf8)
        + b" "
        + encode_list(values, utf8=session.utf8)
        + b"\r\n"
    )


async def status(session: ImapSession, cmd: c.StatusCommand) -> Reply:
    user = session.require_user()
    name = _given_name(session, _strip_separator(cmd.mailbox, user.separator))
    st = await user.status(name)
    values = status_items(session, st, cmd.items)
    shown = st_name(name, user)
    session.write(_status_line(session, shown, values))
    if session.selected is not None and session.selected.view.name == shown:
        # RFC 9051 §6.3.11: clients SHOULD NOT ask STATUS of the selected mailbox (Dovecot's
        # answer; RFC 5530 CLIENTBUG)
        return Reply("OK", "Status on selected mailbox completed.", "CLIENTBUG")
    return Reply("OK", "Status completed.")


def st_name(name: str, user: MailUser) -> str:
    return normalize_mailbox(name, user.separator)


# ---------------------------------------------------------------------- LIST / LSUB


def pattern_regex(pattern: str, sep: str) -> re.Pattern[str]:
    """A LIST pattern as a regular expression (``*`` any, ``%`` anything but *sep*)."""
    pattern = normalize_mailbox(pattern, sep)
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(sep)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _matches(regexes: list[re.Pattern[str]], name: str) -> bool:
    for rx in regexes:
        if rx.fullmatch(name):
            return True
        # INBOX matches in any case ("inbox", "Inb*")
        if name == "INBOX" and re.fullmatch(rx.pattern, name, re.DOTALL | re.IGNORECASE):
            return True
    return False


def _combine(reference: str, pattern: str, sep: str) -> str:
    if not reference:
        return pattern
    if pattern.startswith(sep) and reference.endswith(sep):
        return reference + pattern[1:]
    return reference + pattern


def _with_parents(boxes: list[MailboxInfo], sep: str) -> dict[str, MailboxInfo]:
    """Every mailbox by name, plus the implied (non-existent) parents of nested names."""
    entries = {b.name: b for b in boxes}
    for box in boxes:
        if not box.exists:
            continue
        parts = box.name.split(sep)
        for i in range(1, len(parts)):
            parent = sep.join(parts[:i])
            known = entries.get(parent)
            if known is None:
                entries[parent] = MailboxInfo(
                    name=parent, guid="", selectable=False, exists=False, has_children=True
                )
            elif not known.has_children:
                entries[parent] = MailboxInfo(
                    name=known.name,
                    guid=known.guid,
                    special_use=known.special_use,
                    subscribed=known.subscribed,
                    selectable=known.selectable,
                    exists=known.exists,
                    has_children=True,
                )
    return entries


def _sorted(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (n != "INBOX", n))


async def list_command(session: ImapSession, cmd: c.ListCommand) -> Reply:
    user = session.require_user()
    sep = user.separator
    utf8 = session.utf8
    sep_wire = encode_string(sep)
    if not cmd.extended and len(cmd.patterns) == 1 and cmd.patterns[0] == "":
        root = ""
        session.write(b"* LIST (\\Noselect) " + sep_wire + b" " + encode_string(root) + b"\r\n")
        return Reply("OK", "List completed.")
    selection = set(cmd.selection)
    returns = set(cmd.return_options)
    sel_subscribed = "SUBSCRIBED" in selection
    sel_special = "SPECIAL-USE" in selection
    recursive = "RECURSIVEMATCH" in selection
    show_subscribed = cmd.extended and (sel_subscribed or "SUBSCRIBED" in returns)
    reference = _given_name(session, cmd.reference)
    regexes = [
        pattern_regex(_combine(reference, _given_name(session, p), sep), sep)
        for p in cmd.patterns
        if p
    ]
    boxes = await user.list_mailboxes()
    entries = _with_parents(boxes, sep)
    subscribed_names = {b.name for b in boxes if b.subscribed}
    lines = bytearray()
    status_wanted = cmd.return_status
    for name in _sorted(list(entries)):
        box = entries[name]
        childinfo = False
        if not _matches(regexes, name):
            continue
        if sel_subscribed:
            if not box.subscribed:
                if recursive and any(s.startswith(name + sep) for s in subscribed_names):
                    childinfo = True
                else:
                    continue
        elif not box.exists and not box.has_children:
            continue
        if sel_special and not box.special_use:
            continue
        flags: list[str] = []
        if not box.exists:
            # RFC 5258, RFC 9051 §7.3.1: \NonExistent (which implies \Noselect)
            flags.append("\\NonExistent" if cmd.extended or session.rev2 else "\\Noselect")
        elif not box.selectable:
            flags.append("\\Noselect")
        if show_subscribed and box.subscribed:
            flags.append("\\Subscribed")
        flags.append("\\HasChildren" if box.has_children else "\\HasNoChildren")
        flags.extend(sorted(box.special_use))
        line = (
            b"* LIST "
            + encode_flags(flags)
            + b" "
            + sep_wire
            + b" "
            + encode_mailbox(name, utf8=utf8)
        )
        if childinfo:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        lines += line + b"\r\n"
        if status_wanted is not None and box.exists and box.selectable:
            try:
                st = await user.status(name)
            except StorageError:
                continue
            lines += _status_line(session, name, status_items(session, st, status_wanted))
        if len(lines) > 65536:
            await session.send(bytes(lines))
            lines.clear()
    session.write(bytes(lines))
    return Reply("OK", "List completed.")


async def lsub(session: ImapSession, cmd: c.LsubCommand) -> Reply:
    user = session.require_user()
    sep = user.separator
    sep_wire = encode_string(sep)
    if cmd.pattern == "":
        session.write(b"* LSUB (\\Noselect) " + sep_wire + b' ""\r\n')
        return Reply("OK", "Lsub completed.")
    pattern = _combine(_given_name(session, cmd.reference), _given_name(session, cmd.pattern), sep)
    rx = [pattern_regex(pattern, sep)]
    boxes = await user.list_mailboxes()
    by_name = {b.name: b for b in boxes}
    subscribed = [b.name for b in boxes if b.subscribed]
    shown: dict[str, bool] = {}
    for name in subscribed:
        box = by_name[name]
        if _matches(rx, name):
            shown[name] = box.exists and box.selectable
            continue
        # "%" stops at a level: a parent of a subscribed child is listed \Noselect
        parts = name.split(sep)
        for i in range(len(parts) - 1, 0, -1):
            parent = sep.join(parts[:i])
            if _matches(rx, parent):
                if parent not in shown:
                    shown[parent] = False
                break
    out = bytearray()
    for name in _sorted(list(shown)):
        flags = [] if shown[name] else ["\\Noselect"]
        out += (
            b"* LSUB "
            + encode_flags(flags)
            + b" "
            + sep_wire
            + b" "
            + encode_mailbox(name, utf8=session.utf8)
            + b"\r\n"
        )
    session.write(bytes(out))
    return Reply("OK", "Lsub completed.")
