"""Every ``*.imap`` transcript against a real Columba, plus checks of the runner itself.

The server is one ``columba serve`` for the module (``columba_server``), each script logs in
as its own fresh user, and the scripts run concurrently once (the ``results`` fixture); each
test then reports its own script. The same scripts run against a throwaway Debian Dovecot 2.3
(``test_script_on_dovecot``, skipped when dovecot isn't installed; by hand:
``python -m tests.transcripts.dovecot_oracle``), which must pass all but ``COLUMBA_ONLY``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.transcripts.columba_server import ColumbaServer, columba_server
from tests.transcripts.dovecot_oracle import dovecot_binary, dovecot_instance
from tests.transcripts.runner import (
    ScriptError,
    ScriptResult,
    all_scripts,
    compile_pattern,
    match_response,
    parse_script,
    run_script,
    script_users,
)

COLUMBA_ONLY: dict[str, str] = {
    "objectid": "Dovecot 2.3 has no OBJECTID (RFC 8474: MAILBOXID, EMAILID, THREADID)",
    "appendlimit": "Dovecot 2.3 announces no APPENDLIMIT (RFC 7889) and refuses big messages "
    "with [LIMIT] (quota plugin), not [TOOBIG]",
    "literal_limit": "Dovecot 2.3 answers an oversized literal with '* BYE Literal size too "
    "large' and disconnects; Columba answers BAD and keeps the connection (DESIGN §7)",
    "imap4rev2": "Dovecot 2.3 has no IMAP4rev2 (RFC 9051: ENABLE IMAP4rev2, ESEARCH for "
    "SEARCH, no \\Recent, LIST in SELECT, OLDNAME, HASCHILDREN)",
    "utf8_accept": "Dovecot 2.3 has no UTF8=ACCEPT (RFC 6855)",
    "context_sort": "Dovecot 2.3 has CONTEXT=SEARCH but not CONTEXT=SORT (RFC 5267: SORT "
    "RETURN (UPDATE) with positions in ADDTO/REMOVEFROM)",
    "partial": "Dovecot 2.3 has no PARTIAL (RFC 9394)",
}
"""Scripts the Dovecot oracle skips, with the reason (features Dovecot 2.3 lacks)."""

DIFFERS_ON_PURPOSE: dict[str, str] = {}
"""Scripts where Columba deliberately answers otherwise than Dovecot: xfail with the reason."""

SCRIPTS = all_scripts()

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def columba(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ColumbaServer, dict[str, tuple[str, str]]]]:
    users = script_users([p.stem for p in SCRIPTS])
    data_dir = tmp_path_factory.mktemp("columba-transcripts")
    with columba_server(data_dir, dict(users.values())) as server:
        yield server, users


@pytest.fixture(scope="module")
def results(
    columba: tuple[ColumbaServer, dict[str, tuple[str, str]]],
) -> dict[str, ScriptResult]:
    server, users = columba

    def run(path: Path) -> ScriptResult:
        user, password = users[path.stem]
        return run_script(path, server.host, server.imap_port, {"user": user, "pass": password})

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {r.name: r for r in pool.map(run, SCRIPTS)}


def _param(path: Path) -> object:
    marks = []
    if path.stem in DIFFERS_ON_PURPOSE:
        marks.append(pytest.mark.xfail(reason=DIFFERS_ON_PURPOSE[path.stem], strict=True))
    return pytest.param(path, marks=marks, id=path.stem)


@pytest.mark.parametrize("script", [_param(p) for p in SCRIPTS])
def test_script_on_columba(
    script: Path,
    results: dict[str, ScriptResult],
    columba: tuple[ColumbaServer, dict[str, tuple[str, str]]],
) -> None:
    result = results[script.stem]
    if not result.passed:
        pytest.fail(
            f"{result.report()}\n--- columba.log (tail) ---\n{columba[0].log_tail(15)}",
            pytrace=False,
        )


# ---- the oracle: the same scripts against Debian's Dovecot ---------------------------------


@pytest.fixture(scope="module")
def dovecot_results() -> dict[str, ScriptResult]:
    if dovecot_binary() is None:
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd)")
    runnable = [p for p in SCRIPTS if p.stem not in COLUMBA_ONLY]
    users = script_users([p.stem for p in runnable])
    with dovecot_instance(users) as dovecot:

        def run(path: Path) -> ScriptResult:
            user, password = users[path.stem]
            return run_script(path, dovecot.host, dovecot.port, {"user": user, "pass": password})

        with ThreadPoolExecutor(max_workers=4) as pool:
            return {r.name: r for r in pool.map(run, runnable)}


@pytest.mark.parametrize(
    "script", [p for p in SCRIPTS if p.stem not in COLUMBA_ONLY], ids=lambda p: p.stem
)
def test_script_on_dovecot(script: Path, dovecot_results: dict[str, ScriptResult]) -> None:
    """The scripts encode real IMAP behaviour: Dovecot 2.3 passes them all."""
    result = dovecot_results[script.stem]
    if not result.passed:
        pytest.fail(result.report(), pytrace=False)


# ---- the tables and the runner ------------------------------------------------------------


def test_tables_name_existing_scripts() -> None:
    names = {p.stem for p in SCRIPTS}
    assert len(names) >= 20
    assert set(COLUMBA_ONLY) <= names
    assert set(DIFFERS_ON_PURPOSE) <= names
    assert all(COLUMBA_ONLY.values()) and all(DIFFERS_ON_PURPOSE.values())


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_script_parses(script: Path) -> None:
    steps = parse_script(script.read_text(encoding="utf-8"))
    assert steps, f"{script.name} is empty"


def test_pattern_wildcards_and_captures() -> None:
    assert compile_pattern("* OK [UIDVALIDITY *] *", {}).fullmatch(
        "* OK [UIDVALIDITY 42] UIDs valid"
    )
    assert not compile_pattern("* 3 EXISTS", {}).fullmatch("x 3 EXISTS")
    assert compile_pattern(r"(\Seen \**)", {}).fullmatch(r"(\Seen \*)")
    assert not compile_pattern(r"(\Seen \**)", {}).fullmatch(r"(\Seen \Draft)")
    assert match_response("a OK [APPENDUID ${v} ${u}] *", "a OK [APPENDUID 7 3] done", {}) == {
        "v": "7",
        "u": "3",
    }
    assert match_response("a OK [APPENDUID ${v} 3] *", "a OK [APPENDUID 8 3] x", {"v": "7"}) is None


def test_fetch_items_match_in_any_order() -> None:
    response = '* 1 FETCH (UID 4 BODY[TEXT] {4}\r\nab\r\n FLAGS (\\Seen "x)"))'
    assert match_response(
        "* 1 FETCH (FLAGS (\\Seen *) BODY[TEXT] {4}\r\nab\r\n UID ${uid})", response, {}
    ) == {"uid": "4"}
    assert match_response("* 1 FETCH (FLAGS (\\Seen *) UID 4)", response, {}) is None
    assert match_response("* 1 FETCH (UID 5 BODY[TEXT] * FLAGS *)", response, {}) is None


def test_parse_rejects_malformed_lines() -> None:
    with pytest.raises(ScriptError):
        parse_script("X: nonsense\n")
    with pytest.raises(ScriptError):
        parse_script("S+: continuation without a start\n")
    with pytest.raises(ScriptError):
        parse_script("C~: no modifiers on commands\n")
    steps = parse_script("S~: * A\nS~?: * B\nS+: more\nS: tag OK\n")
    assert len(steps) == 2
