"""The index's whole-mailbox reads for big mailboxes (load_view_light, message_details,
read_details, header_matches) give what the row-by-row reads give, on the aggregated path and
on the plain-SELECT fallback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from columba.storage.api import StoreMode
from columba.storage.header_search import HeaderNeedle
from columba.storage.index import MailIndex, read_details
from tests.unit.test_storage_index import _index, _msg


def _fill(idx: MailIndex) -> tuple[int, str]:
    box = idx.get_mailbox("INBOX")
    assert box is not None
    flags = [(), ("\\Seen",), ("$Work", "\\Flagged"), ("\\Deleted",), ("$later",)]
    idx.append(box.id, box.guid, [_msg(n, flags[n % len(flags)]) for n in range(1, 41)])
    idx.store_flags(
        box.id, box.guid, [3, 7, 9], StoreMode.ADD, ["\\Answered"], unchanged_since=None
    )
    idx.expunge(box.id, box.guid, range(1, 41))  # those with \Deleted
    return box.id, box.guid


def _check(idx: MailIndex, box_id: int) -> None:
    full = idx.load_view("INBOX")
    light = idx.load_view_light("INBOX")
    assert light.mailbox == full.mailbox
    assert light.keywords == full.keywords
    assert light.uids == [r.uid for r in full.messages]
    assert light.modseqs == [r.modseq for r in full.messages]
    assert light.flags == [r.flags for r in full.messages]
    expected = {
        r.uid: (r.guid, r.object_path, r.internaldate, r.savedate, r.size) for r in full.messages
    }
    assert idx.message_details(box_id, None) == expected
    some = [*light.uids[::3], 9999]
    wanted = {u: expected[u] for u in light.uids[::3]}
    assert idx.message_details(box_id, some) == wanted
    assert read_details(idx.path, box_id, some) == wanted


def test_light_view_and_details_match_the_rows(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    box_id, _guid = _fill(idx)
    assert len(idx.load_view_light("INBOX").uids) == 32
    _check(idx, box_id)


def test_separator_in_a_value_takes_the_plain_path(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    box_id, _guid = _fill(idx)
    # values holding the aggregate's separators (not possible through the API, but the split
    # must then notice and read row by row)
    idx.conn.execute(
        "UPDATE messages SET flags = 'a\x1fb', object_path = 'p\x1fq,r' "
        "WHERE mailbox_id = ? AND uid = 2",
        (box_id,),
    )
    _check(idx, box_id)


def test_header_matches(tmp_path: Path) -> None:
    idx = _index(tmp_path)
    box = idx.get_mailbox("INBOX")
    assert box is not None
    messages = [_msg(n) for n in range(1, 6)]
    messages[1] = dataclasses.replace(messages[1], header=b"Subject: Quarterly\r\n\r\n")
    idx.append(box.id, box.guid, messages)
    needle = HeaderNeedle("SUBJECT", "quarterly")
    assert idx.header_matches(box.id, [1, 2, 3, 4, 5], needle) == ([2], [])
    assert idx.header_matches(box.id, [1, 3], needle) == ([], [])
    assert idx.header_matches(box.id, [], needle) == ([], [])
