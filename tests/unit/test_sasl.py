"""SASL server mechanisms: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195)."""

from __future__ import annotations

import base64
import hmac
import json
from pathlib import Path

import pytest

from columba.auth import schemes
from columba.proto import sasl
from columba.proto.sasl import (
    MAX_LINE,
    Challenge,
    CramMD5Mechanism,
    Failure,
    LoginMechanism,
    PlainMechanism,
    Success,
    decode_client_line,
    decode_initial_response,
)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# --------------------------------------------------------------------------
# helpers


def test_decode_client_line() -> None:
    assert decode_client_line(b64(b"hello")) == b"hello"
    assert decode_client_line(b64(b"hello") + b"\r\n") == b"hello"
    assert decode_client_line(b64(b"hello") + b"\n") == b"hello"
    assert decode_client_line(b"") == b""
    cancelled = decode_client_line(b"*")
    assert isinstance(cancelled, Failure) and cancelled.cancelled
    cancelled = decode_client_line(b"*\r\n")
    assert isinstance(cancelled, Failure) and cancelled.cancelled
    for bad in (b"aGVsbG8", b"aGVs bG8=", b"aGVsbG8=\r\n\r\n", b"!!!!", b"=", b"**", b"\xff\xfe"):
        result = decode_client_line(bad)
        assert isinstance(result, Failure) and not result.cancelled, bad
    too_long = b"A" * (MAX_LINE + 4)
    result = decode_client_line(too_long)
    assert isinstance(result, Failure) and "too long" in result.reason
    assert decode_client_line(b"QUFB" * 10, max_line=40) == b"AAA" * 10
    assert isinstance(decode_client_line(b"QUFB" * 11, max_line=40), Failure)


def test_decode_initial_response() -> None:
    assert decode_initial_response(None) is None
    assert decode_initial_response(b"=") == b""
    assert decode_initial_response(b64(b"x")) == b"x"
    for bad in (b"", b"*", b"eA", b"==", b"e A="):
        assert isinstance(decode_initial_response(bad), Failure), bad


def test_challenge_encoding() -> None:
    assert Challenge(b"").encoded() == b""
    assert Challenge(b"Username:").encoded() == b"VXNlcm5hbWU6"


def test_create() -> None:
    assert isinstance(sasl.create("plain"), PlainMechanism)
    assert isinstance(sasl.create("LOGIN"), LoginMechanism)
    mech = sasl.create("cram-md5", hostname="mail.example.org")
    assert isinstance(mech, CramMD5Mechanism)
    assert mech.challenge.endswith(b"@mail.example.org>")
    with pytest.raises(KeyError):
        sasl.create("DIGEST-MD5")
    assert PlainMechanism.cleartext and LoginMechanism.cleartext
    assert not CramMD5Mechanism.cleartext


# --------------------------------------------------------------------------
# PLAIN


def test_plain_rfc4616_examples() -> None:
    result = PlainMechanism().start(b64(b"\0tim\0tanstaaftanstaaf"))
    assert result == Success("PLAIN", authcid="tim", authzid="", password="tanstaaftanstaaf")
    result = PlainMechanism().start(b64(b"Ursel\0Kurt\0xipj3plmq"))
    assert isinstance(result, Success)
    assert (result.authzid, result.authcid, result.password) == ("Ursel", "Kurt", "xipj3plmq")


def test_plain_without_initial_response() -> None:
    for ir in (None, b"="):
        mech = PlainMechanism()
        assert mech.start(ir) == Challenge(b"")
        result = mech.step(b64(b"\0bob\0s3cret") + b"\r\n")
        assert isinstance(result, Success)
        assert (result.authcid, result.password) == ("bob", "s3cret")
        assert mech.finished


def test_plain_authzid_equal_to_authcid_is_none() -> None:
    result = PlainMechanism().start(b64(b"bob\0bob\0pw"))
    assert isinstance(result, Success) and result.authzid == ""


def test_plain_utf8() -> None:
    result = PlainMechanism().start(b64("\0jürgen\0pässwörd ✓".encode()))
    assert isinstance(result, Success)
    assert (result.authcid, result.password) == ("jürgen", "pässwörd ✓")


@pytest.mark.parametrize(
    "message",
    [
        b"bob\0pw",  # one NUL
        b"\0bob\0pw\0",  # three NULs
        b"\0bob\0p\0w",
        b"a\0b\0c\0d",
        b"\0\0pw",  # empty authcid
        b"\0bob\0",  # empty password
        b"\0\xff\xfe\0pw",  # not UTF-8
        b"\0bob\0\xc3",
        b"\xc3\0bob\0pw",
        b"nonuls",
    ],
)
def test_plain_rejects(message: bytes) -> None:
    mech = PlainMechanism()
    assert isinstance(mech.start(b64(message)), Failure)
    assert mech.finished
    mech = PlainMechanism()
    mech.start(None)
    assert isinstance(mech.step(b64(message)), Failure)


def test_plain_cancel_and_bad_base64() -> None:
    mech = PlainMechanism()
    mech.start(None)
    result = mech.step(b"*")
    assert isinstance(result, Failure) and result.cancelled
    assert mech.finished
    mech = PlainMechanism()
    mech.start(None)
    result = mech.step(b"not base64!")
    assert isinstance(result, Failure) and not result.cancelled
    result = PlainMechanism().start(b"not base64!")
    assert isinstance(result, Failure)


def test_state_machine_misuse_is_failure() -> None:
    mech = PlainMechanism()
    assert isinstance(mech.step(b64(b"\0a\0b")), Failure)  # before start
    result = mech.start(b64(b"\0a\0b"))
    assert isinstance(result, Success)
    assert isinstance(mech.step(b64(b"\0a\0b")), Failure)  # after finish
    assert isinstance(mech.start(None), Failure)  # restart


def test_success_check_and_repr() -> None:
    result = PlainMechanism().start(b64(b"\0bob\0hunter2"))
    assert isinstance(result, Success)
    assert "hunter2" not in repr(result)
    assert result.check(schemes.generate("SSHA512", "hunter2"))
    assert not result.check(schemes.generate("SSHA512", "hunter3"))
    assert result.check("{PLAIN}hunter2")
    assert result.check("{SMD5}" + schemes.generate("SMD5", "hunter2")[6:], allow_weak=True)
    with pytest.raises(schemes.WeakSchemeError):
        result.check(schemes.generate("SMD5", "hunter2"))
    with pytest.raises(schemes.UnknownSchemeError):
        result.check("{NOPE}hunter2")


# --------------------------------------------------------------------------
# LOGIN


def test_login_exchange() -> None:
    mech = LoginMechanism()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(b64(b"bob")) == Challenge(b"Password:")
    result = mech.step(b64("pässwörd".encode()))
    assert result == Success("LOGIN", authcid="bob", password="pässwörd")
    assert mech.finished
    assert isinstance(mech.step(b64(b"again")), Failure)


def test_login_initial_response_is_username() -> None:
    mech = LoginMechanism()
    assert mech.start(b64(b"bob")) == Challenge(b"Password:")
    result = mech.step(b64(b"pw"))
    assert isinstance(result, Success) and result.authcid == "bob"
    mech = LoginMechanism()
    assert mech.start(b"=") == Challenge(b"Username:")


@pytest.mark.parametrize(
    ("user", "password"),
    [
        (b"", b"pw"),
        (b"bob", b""),
        (b"b\0b", b"pw"),
        (b"bob", b"p\0w"),
        (b"\xff", b"pw"),
        (b"bob", b"\xff"),
    ],
)
def test_login_rejects(user: bytes, password: bytes) -> None:
    mech = LoginMechanism()
    mech.start(None)
    result = mech.step(b64(user))
    if isinstance(result, Challenge):
        result = mech.step(b64(password))
    assert isinstance(result, Failure)
    assert mech.finished


def test_login_cancel_at_password() -> None:
    mech = LoginMechanism()
    mech.start(None)
    mech.step(b64(b"bob"))
    result = mech.step(b"*\r\n")
    assert isinstance(result, Failure) and result.cancelled


# --------------------------------------------------------------------------
# CRAM-MD5

RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE = b"tim b913a602c7eda7a495b4e6e7334d3890"


def _respond(challenge: bytes, user: str, password: str) -> bytes:
    digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
    return b64(f"{user} {digest}".encode())


def test_cram_md5_rfc2195_example() -> None:
    mech = CramMD5Mechanism(challenge=RFC2195_CHALLENGE)
    assert mech.start(None) == Challenge(RFC2195_CHALLENGE)
    result = mech.step(b64(RFC2195_RESPONSE))
    assert isinstance(result, Success)
    assert result.authcid == "tim" and result.password is None and not result.verified
    assert result.check(schemes.generate("CRAM-MD5", "tanstaaftanstaaf"))
    assert result.check("{PLAIN}tanstaaftanstaaf")
    assert not result.check(schemes.generate("CRAM-MD5", "tanstaaf"))
    with pytest.raises(schemes.PasswordSchemeError):
        result.check(schemes.generate("SSHA", "tanstaaftanstaaf"))


def test_cram_md5_against_doveadm_credentials() -> None:
    vectors = json.loads(
        (Path(__file__).resolve().parents[1] / "data" / "doveadm-pw-vectors.json").read_text(
            encoding="utf-8"
        )
    )["vectors"]
    cram = [v for v in vectors if v["scheme"].upper().partition(".")[0] in {"CRAM-MD5", "HMAC-MD5"}]
    assert cram
    for vector in cram:
        mech = CramMD5Mechanism()
        challenge = mech.start(None)
        assert isinstance(challenge, Challenge)
        result = mech.step(_respond(challenge.data, "bob", vector["password"]))
        assert isinstance(result, Success)
        assert result.check(vector["hash"])
        mech = CramMD5Mechanism()
        challenge = mech.start(None)
        assert isinstance(challenge, Challenge)
        result = mech.step(_respond(challenge.data, "bob", "!" + vector["password"]))
        assert isinstance(result, Success)
        assert not result.check(vector["hash"])


def test_cram_md5_challenge_shape_and_uniqueness() -> None:
    a = CramMD5Mechanism(hostname="mx.example").start(None)
    b = CramMD5Mechanism(hostname="mx.example").start(None)
    assert isinstance(a, Challenge) and isinstance(b, Challenge)
    assert a.data != b.data
    assert a.data.startswith(b"<") and a.data.endswith(b"@mx.example>")


def test_cram_md5_with_lookup() -> None:
    users = {
        "bob smith": schemes.generate("CRAM-MD5", "pw"),
        "alice": "{SSHA}AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    }
    for user, password, ok in (
        ("bob smith", "pw", True),
        ("bob smith", "px", False),
        ("carol", "pw", False),
        ("alice", "pw", False),
    ):
        mech = CramMD5Mechanism(lookup=users.get)
        challenge = mech.start(None)
        assert isinstance(challenge, Challenge)
        result = mech.step(_respond(challenge.data, user, password))
        if ok:
            assert isinstance(result, Success) and result.verified and result.authcid == user
        else:
            assert isinstance(result, Failure), (user, password)


def test_cram_md5_uppercase_hex_accepted() -> None:
    mech = CramMD5Mechanism(challenge=RFC2195_CHALLENGE)
    mech.start(None)
    user, digest = RFC2195_RESPONSE.split(b" ")
    result = mech.step(b64(user + b" " + digest.upper()))
    assert isinstance(result, Success)
    assert result.check("{PLAIN}tanstaaftanstaaf")


@pytest.mark.parametrize(
    "response",
    [
        b"tim",  # no digest
        b" b913a602c7eda7a495b4e6e7334d3890",  # no user
        b"tim b913a602c7eda7a495b4e6e7334d389",  # short
        b"tim b913a602c7eda7a495b4e6e7334d38900",  # long
        b"tim z913a602c7eda7a495b4e6e7334d3890",  # not hex
        b"tim\0 b913a602c7eda7a495b4e6e7334d3890",  # NUL
        b"\xff b913a602c7eda7a495b4e6e7334d3890",  # not UTF-8
        b"tim b913a602c7eda7a495b4e6e7334d3890 ",  # trailing space
        b"",
    ],
)
def test_cram_md5_rejects(response: bytes) -> None:
    mech = CramMD5Mechanism(challenge=RFC2195_CHALLENGE)
    mech.start(None)
    assert isinstance(mech.step(b64(response)), Failure)


def test_cram_md5_refuses_initial_response() -> None:
    assert isinstance(CramMD5Mechanism().start(b64(b"tim")), Failure)
    assert isinstance(CramMD5Mechanism().start(b"="), Challenge)


def test_cram_md5_cancel() -> None:
    mech = CramMD5Mechanism()
    mech.start(None)
    result = mech.step(b"*")
    assert isinstance(result, Failure) and result.cancelled
