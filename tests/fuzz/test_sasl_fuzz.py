"""Fuzz: arbitrary client bytes only ever produce SaslStep results, never exceptions."""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.auth import schemes
from columba.proto import sasl
from columba.proto.sasl import Challenge, Failure, SaslMechanism, Success

STEP_TYPES = (Challenge, Success, Failure)

STORED = {"bob": schemes.generate("CRAM-MD5", "pw"), "eve": "{NOPE}x", "mallory": "{SSHA}zz"}


def _mechanisms() -> list[SaslMechanism]:
    return [
        sasl.PlainMechanism(),
        sasl.LoginMechanism(),
        sasl.CramMD5Mechanism(),
        sasl.CramMD5Mechanism(lookup=STORED.get),
        sasl.PlainMechanism(max_line=16),
    ]


# Raw bytes, and also valid base64 of raw bytes so the mechanisms' parsers
# (not just the base64 layer) get exercised.
raw_lines = st.binary(max_size=300)
b64_lines = st.binary(max_size=200).map(base64.b64encode)
specials = st.sampled_from([b"*", b"=", b"", b"\r\n", b"*\r\n", b"=\r\n"])
client_lines = st.one_of(raw_lines, b64_lines, specials)
initial = st.one_of(st.none(), client_lines)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(initial, st.lists(client_lines, max_size=5))
def test_arbitrary_input_yields_only_steps(ir: bytes | None, lines: list[bytes]) -> None:
    for mech in _mechanisms():
        result = mech.start(ir)
        assert isinstance(result, STEP_TYPES)
        for line in lines:
            result = mech.step(line)
            assert isinstance(result, STEP_TYPES)
        if mech.finished:
            assert isinstance(mech.step(b""), Failure)
        # bounded: no mechanism asks for more than max_steps responses
        assert mech._steps <= type(mech).max_steps + 1


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=40),
    st.text(max_size=40),
    st.text(max_size=40),
    st.sampled_from([b"\0", b"\0\0", b""]),
)
def test_structured_plain_messages(authzid: str, authcid: str, password: str, extra: bytes) -> None:
    message = "\0".join([authzid, authcid, password]).encode("utf-8", "surrogatepass") + extra
    result = sasl.PlainMechanism().start(base64.b64encode(message))
    assert isinstance(result, STEP_TYPES)
    if isinstance(result, Success):
        assert result.password and result.authcid
        assert "\0" not in result.authcid + result.authzid + result.password


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_decode_helpers_never_raise(data: bytes) -> None:
    decoded = sasl.decode_client_line(data)
    assert isinstance(decoded, bytes | Failure)
    ir = sasl.decode_initial_response(data)
    assert ir is None or isinstance(ir, bytes | Failure)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_cram_md5_verifier_never_crashes_on_garbage_response(data: bytes) -> None:
    mech = sasl.CramMD5Mechanism()
    mech.start(None)
    result = mech.step(base64.b64encode(b"bob " + data))
    assert isinstance(result, STEP_TYPES)
    if isinstance(result, Success):
        assert result.check(STORED["bob"]) in (True, False)
