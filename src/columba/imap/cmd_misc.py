"""Small commands valid in several states: CAPABILITY, NOOP, CHECK, LOGOUT, ID (RFC 2971),
ENABLE (RFC 5161) and NAMESPACE (RFC 2342)."""

from __future__ import annotations

from columba.imap.capability import capability_line
from columba.imap.session import ImapSession, Reply, State, log_event
from columba.proto.imap import commands as c
from columba.proto.imap.response import bye, encode_list, encode_string

__all__ = ["capability", "check", "enable", "id_command", "logout", "namespace", "noop"]

ENABLEABLE: frozenset[str] = frozenset({"CONDSTORE", "QRESYNC"})
"""Extensions ENABLE can always turn on; UTF8=ACCEPT (RFC 6855) and IMAP4rev2 (RFC 9051)
only when advertised (``mail_utf8_extensions``, ``imap4rev2_enable``)."""

SERVER_ID: tuple[tuple[str, str], ...] = (("name", "Columba"),)


async def capability(session: ImapSession, cmd: c.CapabilityCommand) -> Reply:
    session.write(capability_line(session))
    return Reply(
        "OK",
        "Pre-login capabilities listed, post-login capabilities have more."
        if session.state is State.NOT_AUTHENTICATED
        else "Capability completed.",
    )


async def noop(session: ImapSession, cmd: c.NoopCommand) -> Reply:
    return Reply("OK", "NOOP completed.")


async def check(session: ImapSession, cmd: c.CheckCommand) -> Reply:
    if session.rev2:  # RFC 9051 Appendix E: CHECK was removed (NOOP does its work)
        return Reply("BAD", "Unknown command CHECK.")
    return Reply("OK", "Check completed.")


async def logout(session: ImapSession, cmd: c.LogoutCommand) -> Reply:
    session.write(bye("Logging out"))
    session.state = State.LOGOUT
    return Reply("OK", "Logout completed.")


async def id_command(session: ImapSession, cmd: c.IdCommand) -> Reply:
    if cmd.params is not None:
        session.client_id = {k: v for k, v in cmd.params[:30]}
        shown = {k.lower(): v for k, v in session.client_id.items() if v is not None}
        fields = {k: shown[k][:60] for k in ("name", "version", "os") if k in shown}
        log_event("imap_id", session=session.info.session_id, **fields)
    items: list[object] = []
    for key, value in SERVER_ID:
        items.extend((key, value))
    session.write(b"* ID " + encode_list(items) + b"\r\n")
    return Reply("OK", "ID completed.")


def enableable(session: ImapSession) -> frozenset[str]:
    """The (upper-case) names ENABLE accepts in this session."""
    names = set(ENABLEABLE)
    if session.settings.get_bool("mail_utf8_extensions"):
        names.add("UTF8=ACCEPT")
    if session.settings.get_bool("imap4rev2_enable"):
        names.add("IMAP4REV2")
    return frozenset(names)


_ENABLED_NAMES = {"IMAP4REV2": "IMAP4rev2"}


async def enable(session: ImapSession, cmd: c.EnableCommand) -> Reply:
    from columba.imap.condstore import enable_condstore, enable_qresync

    allowed = enableable(session)
    done: list[str] = []
    for cap in cmd.capabilities:
        if cap not in allowed or cap in session.enabled:
            continue
        if cap == "CONDSTORE":
            enable_condstore(session)
        elif cap == "QRESYNC":
            enable_qresync(session)
        else:
            session.enabled.add(cap)
        done.append(_ENABLED_NAMES.get(cap, cap))
    if session.utf8:
        # UTF8=ACCEPT / IMAP4rev2: mailbox names are UTF-8 from the next command on (the
        # parser paused after this command; the session resumes it)
        session.parser.utf8 = True
    session.write(("* ENABLED" + "".join(" " + cap for cap in done) + "\r\n").encode("ascii"))
    return Reply("OK", "Enabled.")


async def namespace(session: ImapSession, cmd: c.NamespaceCommand) -> Reply:
    user = session.require_user()
    session.write(
        b"* NAMESPACE (("
        + encode_string("")
        + b" "
        + encode_string(user.separator)
        + b")) NIL NIL\r\n"
    )
    return Reply("OK", "Namespace completed.")
