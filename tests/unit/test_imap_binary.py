"""RFC 3516 BINARY decoding (cmd_binary) on parsed messages: base64, quoted-printable,
identity encodings, unknown encodings, whole-message conversion, literal8 choice."""

from __future__ import annotations

import base64

import pytest

from columba.imap.cmd_binary import UnknownCte, binary_section, literal_prefix
from columba.storage.mime import parse_message

PAYLOAD = b"bin\x00ary\xff"
MESSAGE = (
    b"Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n"
    b"caf=C3=A9 =\r\nok\r\n"
    b"--B\r\nContent-Type: application/x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n")
    + b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-weird\r\n\r\n???\r\n"
    b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: in\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n"
    b"--B--\r\n"
)


def test_decodes_qp_and_base64() -> None:
    parsed = parse_message(MESSAGE)
    qp = binary_section(parsed, MESSAGE, (1,))
    assert qp.data == "café ok".encode() and qp.converted and qp.literal8
    b64 = binary_section(parsed, MESSAGE, (2,))
    assert b64.data == PAYLOAD and b64.converted


def test_unknown_cte_and_missing_part() -> None:
    parsed = parse_message(MESSAGE)
    with pytest.raises(UnknownCte):
        binary_section(parsed, MESSAGE, (3,))
    with pytest.raises(UnknownCte):  # the whole message holds the unknown part
        binary_section(parsed, MESSAGE, ())
    missing = binary_section(parsed, MESSAGE, (9,))
    assert missing.data == b"" and not missing.converted


def test_nested_message_is_converted() -> None:
    parsed = parse_message(MESSAGE)
    inner = binary_section(parsed, MESSAGE, (4,))
    assert inner.data == b"Subject: in\r\nContent-Transfer-Encoding: binary\r\n\r\nhi"
    assert binary_section(parsed, MESSAGE, (4, 1)).data == b"hi"


def test_identity_part_is_not_literal8() -> None:
    msg = b"Subject: p\r\n\r\nplain text\r\n"
    got = binary_section(parse_message(msg), msg, (1,))
    assert got.data == b"plain text\r\n" and not got.converted and not got.literal8
    nul = b"Subject: p\r\n\r\na\x00b\r\n"
    assert binary_section(parse_message(nul), nul, (1,)).literal8


def test_literal_prefix() -> None:
    assert literal_prefix(b"abc", False) == b"{3}\r\n"
    assert literal_prefix(b"", True) == b"~{0}\r\n"
