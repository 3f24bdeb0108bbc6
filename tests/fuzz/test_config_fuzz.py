"""Random and mutated configuration texts end in a ConfigError or in a config that dumps and
parses back: never another exception, never a hang."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from columba.config import ConfigError, load_text
from columba.config.dump import dump
from tests.conftest import SHARED

EXAMPLES = [p.read_text() for p in sorted((SHARED / "examples").glob("*.conf"))]
TOKENS = [
    "dovecot_config_version = 2.4.0\n",
    "{",
    "}",
    "\n",
    " ",
    "=",
    '"',
    "'",
    "\\",
    "#",
    "<",
    "<<EOT\n",
    "EOT\n",
    "$ENV:HOME",
    "$SET:mail_path",
    "@mailbox_defaults = english\n",
    "group @g n {\n",
    "namespace inbox {\n",
    "protocol imap {\n",
    "remote 10.0.0.0/8 {\n",
    "mail_plugins {\n",
    "fs posix {\n",
    "obox {\n",
    "mail_path = x\n",
    "quota_storage_size = 1G\n",
    "!include_try x\n",
    "passdb static {\n",
    "fields {\n",
    "a = b\n",
    "ssl = yes\n",
    "@x = y\n",
    "-",
    "%{user}",
]


def check(text: str) -> None:
    try:
        config = load_text(text, "fuzz.conf", env={"HOME": "/root"})
    except ConfigError as exc:
        assert str(exc)
        return
    again = load_text(dump(config, show_secrets=True), "dump.conf", env={})
    assert dump(again, show_secrets=True).count("\n") <= dump(config, show_secrets=True).count("\n")


def mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, rng.choice(TOKENS))
        elif op == 2 and chars:
            end = min(len(chars), pos + rng.randint(1, 40))
            chars[pos:end] = []
        else:
            chars.insert(pos, chr(rng.randrange(32, 127)))
    return "".join(chars)


def test_twenty_thousand_mutated_examples() -> None:
    rng = random.Random(20261130)
    for count in range(20_000):
        check(mutate(rng, EXAMPLES[count % len(EXAMPLES)]))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup(tokens: list[str]) -> None:
    check("dovecot_config_version = 2.4.0\n" + "".join(tokens))


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    check(text)
    check("dovecot_config_version = 2.4.0\n" + text)
