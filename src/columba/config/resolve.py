"""Reading settings at run time: connection filters applied, typed values with defaults.

:func:`apply_connection_filters` turns the tree into the one a given connection sees (the
matching ``local``/``local_name``/``remote``/``protocol`` blocks merged in, least specific
first so the most specific wins whatever the file order). :class:`SettingsView` reads a
block's settings, falling back to its parent filters and then to the declared default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from columba.config.schema import CONNECTION_FILTERS, Schema
from columba.config.tree import Block
from columba.config.types import BoolList, StrList, Value, merge_values


@dataclass(frozen=True)
class ConnectionContext:
    """What a connection filter can match on; None never matches."""

    protocol: str | None = None
    local: str | None = None
    local_name: str | None = None
    remote: str | None = None

    @classmethod
    def parse(cls, text: str) -> ConnectionContext:
        """``protocol=imap,remote=1.2.3.4`` (the ``columba config -f`` form)."""
        values: dict[str, str] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            key = key.strip()
            if key == "service":
                key = "protocol"
            if not sep or key not in CONNECTION_FILTERS:
                raise ValueError(
                    f"Invalid filter '{part}' (use protocol=, local=, local_name=, remote=)"
                )
            values[key] = value.strip()
        return cls(**values)

    def merged(self, other: ConnectionContext) -> ConnectionContext:
        return ConnectionContext(
            other.protocol or self.protocol,
            other.local or self.local,
            other.local_name or self.local_name,
            other.remote or self.remote,
        )


def _ip_match(network: str, address: str | None) -> int | None:
    if address is None:
        return None
    try:
        net = ipaddress.ip_network(network, strict=False)
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return net.prefixlen if ip.version == net.version and ip in net else None


def _match(block: Block, ctx: ConnectionContext) -> int | None:
    """How specific ``block``'s condition is when it matches ``ctx`` (None: no match)."""
    if block.kind == "protocol":
        if ctx.protocol is None:
            return None
        names = block.name.split()
        positive = [n for n in names if not n.startswith("!")]
        negative = [n[1:] for n in names if n.startswith("!")]
        if ctx.protocol in negative or (positive and ctx.protocol not in positive):
            return None
        return 1
    if block.kind == "local_name":
        if ctx.local_name is None:
            return None
        pattern, name = block.name.lower(), ctx.local_name.lower()
        if pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return 1
        return None
    if block.kind == "remote":
        return _ip_match(block.name, ctx.remote)
    if block.kind == "local":
        return _ip_match(block.name, ctx.local)
    return None


def _collect(
    block: Block,
    ctx: ConnectionContext,
    score: tuple[int, int, int, int],
    out: list[tuple[tuple[int, int, int, int], Block]],
) -> None:
    for child in block.children:
        if child.kind not in CONNECTION_FILTERS:
            continue
        level = _match(child, ctx)
        if level is None:
            continue
        index = CONNECTION_FILTERS.index(child.kind)
        new_score = list(score)
        new_score[index] = level + 1  # absent levels stay 0 (less specific than any match)
        child_score = (new_score[0], new_score[1], new_score[2], new_score[3])
        out.append((child_score, child))
        _collect(child, ctx, child_score, out)


def apply_connection_filters(root: Block, ctx: ConnectionContext) -> Block:
    """A copy of ``root`` with the filters matching ``ctx`` merged in.

    The result has no connection filters left.
    """
    matches: list[tuple[tuple[int, int, int, int], Block]] = []
    _collect(root, ctx, (0, 0, 0, 0), matches)
    result = _without_connection_filters(root.copy())
    for _score, block in sorted(matches, key=lambda item: item[0]):
        _overlay(result, block)
    return result


def _without_connection_filters(block: Block) -> Block:
    block.children = [c for c in block.children if c.kind not in CONNECTION_FILTERS]
    return block


def _overlay(target: Block, source: Block) -> None:
    for key, assignment in source.settings.items():
        target.set(key, assignment.value, assignment.origin)
    for child in source.children:
        if child.kind in CONNECTION_FILTERS:
            continue
        mine = target.ensure_child(child.kind, child.name, child.origin)
        _overlay(mine, child)


class SettingsView:
    """Typed read access to one block, falling back to parent blocks and defaults."""

    def __init__(self, schema: Schema, block: Block) -> None:
        self.schema = schema
        self.block = block

    @property
    def kind(self) -> str:
        return self.block.kind

    @property
    def name(self) -> str:
        return self.block.name

    def _chain(self) -> list[Block]:
        chain: list[Block] = []
        node: Block | None = self.block
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain

    def get(self, name: str) -> Value:
        decl = self.schema.settings.get(name)
        if decl is None:
            raise KeyError(f"unknown setting {name}")
        if isinstance(decl.parsed_default, BoolList | StrList):
            value: Value = decl.parsed_default
            for node in reversed(self._chain()):
                own = node.get(name)
                if own is not None:
                    value = merge_values(value, own)
            return value
        for node in self._chain():
            own = node.get(name)
            if own is not None:
                return own
        return decl.parsed_default

    def is_set(self, name: str) -> bool:
        return any(node.get(name) is not None for node in self._chain())

    def get_str(self, name: str) -> str:
        value = self.get(name)
        if not isinstance(value, str):
            raise TypeError(f"{name} is not a string setting")
        return value

    def get_bool(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            raise TypeError(f"{name} is not a boolean setting")
        return value

    def get_int(self, name: str) -> int:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} is not a numeric setting")
        return value

    def get_list(self, name: str) -> list[str]:
        value = self.get(name)
        if not isinstance(value, BoolList):
            raise TypeError(f"{name} is not a boolean list setting")
        return value.enabled()

    def get_strlist(self, name: str) -> dict[str, str]:
        value = self.get(name)
        if not isinstance(value, StrList):
            raise TypeError(f"{name} is not a string list setting")
        return value.as_dict()

    def filters(self, kind: str) -> list[SettingsView]:
        """The ``kind NAME { }`` filters directly inside this block, in order."""
        return [SettingsView(self.schema, b) for b in self.block.children if b.kind == kind]

    def filter(self, kind: str, name: str = "") -> SettingsView:
        """The ``kind [NAME] { }`` filter inside this block (empty when not written)."""
        child = self.block.child(kind, name)
        if child is None:
            child = Block(kind, name, parent=self.block)
        return SettingsView(self.schema, child)

    def __iter__(self) -> Iterator[SettingsView]:
        return iter(SettingsView(self.schema, b) for b in self.block.children)
