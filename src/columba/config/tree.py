"""The parsed configuration as a tree of filter blocks holding typed setting assignments.

The root block holds global settings; each child block is a filter (``namespace inbox``,
``protocol imap``, ``obox``, ...). Repeated blocks with the same kind and name are one block.
A setting's value inside a block keeps apart what came from included groups and what was
written explicitly, because explicit settings always win over group settings whatever their
order in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from columba.config.errors import Origin
from columba.config.types import BoolList, StrList, Value, merge_values


@dataclass
class Assignment:
    """The value of one setting inside one block."""

    origin: Origin
    explicit: Value | None = None
    group: Value | None = None

    @property
    def value(self) -> Value:
        if self.explicit is None:
            assert self.group is not None
            return self.group
        if self.group is None:
            return self.explicit
        return merge_values(self.group, self.explicit)

    def assign(self, value: Value, origin: Origin, *, from_group: bool) -> None:
        if from_group:
            self.group = merge_values(self.group, value)
        else:
            self.explicit = merge_values(self.explicit, value)
            self.origin = origin

    def copy(self) -> Assignment:
        return Assignment(self.origin, self.explicit, self.group)


@dataclass
class GroupInclude:
    """An ``@label = name`` line."""

    label: str
    name: str
    origin: Origin


@dataclass
class Block:
    """One filter block (or the root)."""

    kind: str
    name: str = ""
    origin: Origin | None = None
    settings: dict[str, Assignment] = field(default_factory=dict)
    children: list[Block] = field(default_factory=list)
    groups: list[GroupInclude] = field(default_factory=list)
    parent: Block | None = field(default=None, repr=False, compare=False)

    def child(self, kind: str, name: str = "") -> Block | None:
        for block in self.children:
            if block.kind == kind and block.name == name:
                return block
        return None

    def ensure_child(self, kind: str, name: str, origin: Origin | None) -> Block:
        existing = self.child(kind, name)
        if existing is not None:
            return existing
        block = Block(kind, name, origin, parent=self)
        self.children.append(block)
        return block

    def remove_children(self, kind: str, keep: set[str] | None = None) -> None:
        self.children = [
            b for b in self.children if b.kind != kind or (keep is not None and b.name in keep)
        ]

    def set(self, key: str, value: Value, origin: Origin, *, from_group: bool = False) -> None:
        current = self.settings.get(key)
        if current is None:
            current = self.settings[key] = Assignment(origin)
        current.assign(value, origin, from_group=from_group)

    def get(self, key: str) -> Value | None:
        assignment = self.settings.get(key)
        return assignment.value if assignment else None

    def path(self) -> list[tuple[str, str]]:
        """(kind, name) pairs from the root's child down to this block."""
        parts: list[tuple[str, str]] = []
        block: Block | None = self
        while block is not None and block.parent is not None:
            parts.append((block.kind, block.name))
            block = block.parent
        return list(reversed(parts))

    def walk(self) -> Iterator[Block]:
        yield self
        for child in self.children:
            yield from child.walk()

    def copy(self, parent: Block | None = None) -> Block:
        clone = Block(self.kind, self.name, self.origin, parent=parent)
        clone.settings = {key: a.copy() for key, a in self.settings.items()}
        clone.groups = list(self.groups)
        clone.children = [child.copy(clone) for child in self.children]
        return clone

    def merge_from(self, other: Block, *, from_group: bool) -> None:
        """Apply ``other``'s settings and children on top of this block."""
        for key, assignment in other.settings.items():
            if assignment.group is not None:
                self.set(key, assignment.group, assignment.origin, from_group=True)
            if assignment.explicit is not None:
                self.set(key, assignment.explicit, assignment.origin, from_group=from_group)
        for child in other.children:
            mine = self.ensure_child(child.kind, child.name, child.origin)
            mine.merge_from(child, from_group=from_group)

    def effective(self) -> dict[str, Value]:
        return {key: a.value for key, a in self.settings.items()}


def snapshot(block: Block) -> tuple[object, ...]:
    """A comparable picture of a block's effective settings and children (for tests)."""
    settings = tuple(sorted((k, _freeze(v)) for k, v in block.effective().items()))
    children = tuple(snapshot(c) for c in block.children)
    return (block.kind, block.name, settings, children)


def _freeze(value: Value) -> object:
    if isinstance(value, BoolList):
        return ("boollist", value.replace, tuple(value.items))
    if isinstance(value, StrList):
        return ("strlist", value.replace, tuple(sorted(value.items)))
    return value
