"""The one delivery path: from an accepted envelope and message to durable per-recipient results.

Every way mail arrives for local users (LMTP today; later the Sieve ``redirect``-to-self and
``doveadm save``-style tools) goes through :func:`deliver_message`. It owns:

* **Recipient addresses** — :func:`split_detail` / :func:`lookup_name`: ``user+detail@domain``
  is looked up as ``user@domain`` with ``recipient_delimiter`` (every character of the setting
  is a delimiter; the first one found in the local part splits it, as Dovecot does).
* **Trace headers** — :func:`trace_headers`: ``Return-Path: <sender>``, ``Delivered-To:`` as
  ``lmtp_hdr_delivery_address`` says (``final``: the RCPT TO address, ``original``: the ORCPT
  address when given, ``none``) and, with ``lmtp_add_received_header``, a ``Received:`` header
  in Dovecot's shape::

      Received: from HELO ([IP])
      \\tby HOSTNAME with LMTP id SESSION
      \\t(envelope-from <sender>)
      \\tfor <rcpt>; DATE

* **Mailbox choice** — :func:`choose_mailbox`: the detail mailbox when
  ``lmtp_save_to_detail_mailbox = yes`` and the address has a detail, else INBOX. A detail
  mailbox that does not exist falls back to INBOX inside :meth:`MailStorage.deliver` (unless
  ``lda_mailbox_autocreate``), so the check and the save are one step there.
* **Dedupe** — one transaction delivers to each distinct user once; every recipient address
  that resolved to that user gets the same reply.
* **Durability and error mapping** — a recipient gets ``250 2.0.0 <rcpt> ID Saved`` only after
  ``deliver()`` returned (the message is durable); storage errors become per-recipient replies
  (:func:`map_delivery_error`): temporary → ``451 4.3.0``, over quota → ``552 5.2.2``, too big →
  ``552 5.3.4``; anything unexpected is logged and answered ``451 4.3.0``, never ``250``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

from columba.config.resolve import SettingsView
from columba.storage.api import (
    DeliveryResult,
    MailStorage,
    MessageTooBig,
    OverQuota,
    StorageError,
    StorageTemporaryError,
    UserInfo,
)

__all__ = [
    "DeliveryReply",
    "DeliverySettings",
    "Envelope",
    "Recipient",
    "build_message",
    "choose_mailbox",
    "deliver_message",
    "lookup_name",
    "map_delivery_error",
    "split_detail",
    "trace_headers",
]

log = logging.getLogger("columba.delivery")

HeaderAddress = Literal["final", "original", "none"]


@dataclass(frozen=True)
class DeliverySettings:
    """The delivery settings one connection sees (connection filters already applied)."""

    hostname: str
    recipient_delimiter: str = "+"
    save_to_detail_mailbox: bool = False
    hdr_delivery_address: HeaderAddress = "final"
    add_received_header: bool = True
    max_message_size: int = 0
    """``mail_save_max_size``; 0 = no limit."""

    @classmethod
    def from_view(cls, view: SettingsView) -> DeliverySettings:
        hdr = view.get_str("lmtp_hdr_delivery_address").strip().lower()
        address: HeaderAddress = hdr if hdr in ("original", "none") else "final"  # type: ignore[assignment]
        return cls(
            hostname=view.get_str("hostname") or socket.gethostname(),
            recipient_delimiter=view.get_str("recipient_delimiter"),
            save_to_detail_mailbox=view.get_bool("lmtp_save_to_detail_mailbox"),
            hdr_delivery_address=address,
            add_received_header=view.get_bool("lmtp_add_received_header"),
            max_message_size=max(view.get_int("mail_save_max_size"), 0),
        )


@dataclass(frozen=True)
class Envelope:
    """What the client said about the transaction as a whole."""

    sender: str
    """The reverse path without brackets; ``""`` for the null sender ``<>``."""
    helo: str
    remote_ip: str
    transaction_id: str
    """Appears in the Received header (``with LMTP id …``)."""


@dataclass(frozen=True)
class Recipient:
    """One accepted recipient: the address as given and the user it resolved to."""

    address: str
    """The RCPT TO address (detail included), without brackets."""
    user: UserInfo
    detail: str = ""
    orcpt: str | None = None
    """The RFC 3461 ORCPT address (decoded), when the client sent one."""
    session_id: str = ""
    """The id reported in this recipient's ``250 … Saved`` reply."""


@dataclass(frozen=True)
class DeliveryReply:
    """The reply owed to one recipient after the message."""

    code: int
    enhanced: str
    text: str
    result: DeliveryResult | None = None
    """Where the message went (only for a 250)."""

    @property
    def ok(self) -> bool:
        return self.code == 250


# ---------------------------------------------------------------------- addresses


def split_detail(local_part: str, delimiters: str) -> tuple[str, str]:
    """``("user", "detail")`` from ``user+detail``; the first delimiter character found splits.

    ``("user", "")`` when no delimiter is in the local part or ``delimiters`` is empty. A
    delimiter at the very start does not split (the user part would be empty).
    """
    if not delimiters:
        return local_part, ""
    for i, ch in enumerate(local_part):
        if i > 0 and ch in delimiters:
            return local_part[:i], local_part[i + 1 :]
    return local_part, ""


def lookup_name(local_part: str, domain: str, delimiters: str) -> tuple[str, str]:
    """The name to look up in the userdb for an address, and the address's detail."""
    user, detail = split_detail(local_part, delimiters)
    return (f"{user}@{domain}" if domain else user), detail


# ---------------------------------------------------------------------- message


def _header_address(addr: str) -> str:
    """An address for a header value: no CR/LF can sneak in."""
    return addr.replace("\r", "").replace("\n", "")


def trace_headers(
    envelope: Envelope,
    rcpt: Recipient,
    settings: DeliverySettings,
    now: datetime | None = None,
) -> bytes:
    """The header lines prepended to the stored copy for ``rcpt`` (CRLF, UTF-8)."""
    sender = _header_address(envelope.sender)
    address = _header_address(rcpt.address)
    lines = [f"Return-Path: <{sender}>"]
    if settings.hdr_delivery_address == "final":
        lines.append(f"Delivered-To: {address}")
    elif settings.hdr_delivery_address == "original":
        lines.append(f"Delivered-To: {_header_address(rcpt.orcpt or rcpt.address)}")
    if settings.add_received_header:
        when = now if now is not None else datetime.now().astimezone()
        if when.tzinfo is None:
            when = when.astimezone()
        helo = _header_address(envelope.helo)
        from_part = (
            f"from {helo} ([{envelope.remote_ip}])" if envelope.remote_ip else f"from {helo}"
        )
        lines.append(
            f"Received: {from_part}\r\n"
            f"\tby {_header_address(settings.hostname)} with LMTP id {envelope.transaction_id}\r\n"
            f"\t(envelope-from <{sender}>)\r\n"
            f"\tfor <{address}>; {format_datetime(when)}"
        )
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def build_message(
    envelope: Envelope,
    rcpt: Recipient,
    message: bytes,
    settings: DeliverySettings,
    now: datetime | None = None,
) -> bytes:
    """The bytes stored for ``rcpt``: trace headers, then the message as received."""
    return trace_headers(envelope, rcpt, settings, now) + message


def choose_mailbox(rcpt: Recipient, settings: DeliverySettings) -> str:
    """The mailbox to save into (the storage falls back to INBOX if it does not exist)."""
    if settings.save_to_detail_mailbox and rcpt.detail:
        return rcpt.detail
    return "INBOX"


# ---------------------------------------------------------------------- errors


def map_delivery_error(exc: BaseException, rcpt: str) -> DeliveryReply:
    """The per-recipient reply for a failed save (never a 250)."""
    if isinstance(exc, OverQuota):
        return DeliveryReply(552, "5.2.2", f"<{rcpt}> Quota exceeded")
    if isinstance(exc, MessageTooBig):
        return DeliveryReply(552, "5.3.4", f"<{rcpt}> Message too big")
    if isinstance(exc, StorageTemporaryError):
        return DeliveryReply(451, "4.3.0", f"<{rcpt}> Temporary internal error")
    return DeliveryReply(451, "4.3.0", f"<{rcpt}> Temporary internal error")


def saved_reply(rcpt: Recipient, result: DeliveryResult) -> DeliveryReply:
    return DeliveryReply(250, "2.0.0", f"<{rcpt.address}> {rcpt.session_id} Saved", result)


# ---------------------------------------------------------------------- delivery


async def _deliver_one(
    storage: MailStorage,
    envelope: Envelope,
    rcpt: Recipient,
    message: bytes,
    settings: DeliverySettings,
) -> DeliveryResult | BaseException:
    data = build_message(envelope, rcpt, message, settings)
    mailbox = choose_mailbox(rcpt, settings)
    try:
        result = await storage.deliver(rcpt.user, data, mailbox)
    except asyncio.CancelledError:
        raise
    except StorageError as exc:
        log.warning(
            "delivery to %s (%s) failed: %s: %s",
            rcpt.user.username,
            envelope.transaction_id,
            type(exc).__name__,
            exc,
        )
        return exc
    except Exception as exc:
        log.exception("delivery to %s (%s) failed", rcpt.user.username, envelope.transaction_id)
        return exc
    log.info(
        "delivered to %s: mailbox=%s uid=%d guid=%s (%s)",
        rcpt.user.username,
        result.mailbox,
        result.uid,
        result.guid,
        envelope.transaction_id,
    )
    return result


async def deliver_message(
    storage: MailStorage,
    envelope: Envelope,
    recipients: Sequence[Recipient],
    message: bytes,
    settings: DeliverySettings,
) -> list[DeliveryReply]:
    """Deliver ``message`` to every recipient; one reply per recipient, in order.

    Each distinct user (by user name) gets one copy, built for the first of its recipient
    addresses; the others share that outcome. Users are delivered to concurrently; a reply is
    250 only once the storage has made the copy durable.
    """
    first_of_user: dict[str, Recipient] = {}
    for rcpt in recipients:
        first_of_user.setdefault(rcpt.user.username, rcpt)
    users = list(first_of_user)
    outcomes = await asyncio.gather(
        *(_deliver_one(storage, envelope, first_of_user[u], message, settings) for u in users)
    )
    by_user = dict(zip(users, outcomes, strict=True))
    replies: list[DeliveryReply] = []
    for rcpt in recipients:
        outcome = by_user[rcpt.user.username]
        if isinstance(outcome, BaseException):
            replies.append(map_delivery_error(outcome, rcpt.address))
        else:
            replies.append(saved_reply(rcpt, outcome))
    return replies
