"""Loading a configuration: parse, apply ``-o`` overrides, expand groups, resolve ``$SET:``.

:func:`load` is what every part of Columba calls; it returns a :class:`Config` whose root
block holds explicit and group-included settings (defaults are not stored: they come from
the declarations when a setting is read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from columba.config.builtin_groups import BUILTIN_GROUPS_TEXT
from columba.config.errors import ConfigError, Origin
from columba.config.parser import ConfigParser, ParseResult, PendingSet, parse_typed
from columba.config.schema import ROOT, Schema, default_schema
from columba.config.tree import Block, GroupInclude

MAX_GROUP_DEPTH = 8
OVERRIDE_ORIGIN = Origin("-o", 0)


@dataclass
class Config:
    """A loaded configuration."""

    schema: Schema
    root: Block
    path: str
    groups: dict[tuple[str, str], Block] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def group(self, label: str, name: str) -> Block | None:
        return self.groups.get((label, name)) or builtin_groups().get((label, name))


@cache
def builtin_groups() -> dict[tuple[str, str], Block]:
    """The built-in groups, parsed once."""
    parser = ConfigParser(default_schema(), {})
    result = parser.parse_text(BUILTIN_GROUPS_TEXT, "<builtin>", Path("."), require_version=False)
    return result.groups


def load(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    schema: Schema | None = None,
) -> Config:
    """Load the configuration file at ``path``; raise ConfigError naming file:line on errors."""
    schema = schema or default_schema()
    parser = ConfigParser(schema, os.environ if env is None else env)
    result = parser.parse_file(path)
    return _finish(parser, result, str(path), overrides)


def load_text(
    text: str,
    filename: str = "<text>",
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Load configuration text (tests, ``columba config`` round trips)."""
    parser = ConfigParser(default_schema(), os.environ if env is None else env)
    result = parser.parse_text(text, filename, base_dir or Path("."))
    return _finish(parser, result, filename, overrides)


def _finish(
    parser: ConfigParser, result: ParseResult, path: str, overrides: Sequence[str]
) -> Config:
    config = Config(parser.schema, result.root, path, dict(result.groups), list(result.files))
    for override in overrides:
        apply_override(parser, config, override)
    _expand_groups(parser, config, config.root, depth=0)
    _resolve_pending(parser, result.pending)
    return config


# ---------------------------------------------------------------------- groups


def _expand_groups(parser: ConfigParser, config: Config, block: Block, depth: int) -> None:
    for include in list(block.groups):
        _include_group(parser, config, block, include, depth)
    for child in list(block.children):
        _expand_groups(parser, config, child, depth)


def _include_group(
    parser: ConfigParser, config: Config, target: Block, include: GroupInclude, depth: int
) -> None:
    if depth >= MAX_GROUP_DEPTH:
        raise ConfigError(
            f"Groups include each other too deeply (@{include.label})", include.origin
        )
    group = config.group(include.label, include.name)
    if group is None:
        known = sorted(
            n for (label, n) in {**builtin_groups(), **config.groups} if label == include.label
        )
        hint = f" (known: {', '.join(known)})" if known else ""
        raise ConfigError(f"Unknown group @{include.label} = {include.name}{hint}", include.origin)
    content = group.copy()
    _check_placement(parser.schema, content, target, include.origin)
    # Groups inside the group's content are expanded in the group's copy first.
    for nested in content.walk():
        for inner in list(nested.groups):
            _include_group(parser, config, nested, inner, depth + 1)
        nested.groups = []
    target.merge_from(content, from_group=True)


def _check_placement(schema: Schema, content: Block, target: Block, origin: Origin) -> None:
    for child in content.children:
        spec = schema.filter(child.kind)
        if spec is None:  # pragma: no cover - the parser only creates declared filters
            continue
        if not schema.filter_allowed(spec, target.kind, []):
            where = "the top level" if target.kind == ROOT else f"{target.kind} {target.name}"
            raise ConfigError(
                f"Group {content.name}: filter {child.kind} is not allowed inside {where}", origin
            )
        _check_placement(schema, child, child, origin)


# ---------------------------------------------------------------------- $SET:


def _resolve_pending(parser: ConfigParser, pending: list[PendingSet]) -> None:
    todo = {(id(p.block), p.key): p for p in pending}
    done: set[tuple[int, str]] = set()

    def resolve(item: PendingSet, seen: tuple[tuple[int, str], ...]) -> None:
        key = (id(item.block), item.key)
        if key in done:
            return
        if key in seen:
            raise ConfigError(f"$SET: loop through {item.key}", item.origin)
        words = []
        for word in item.text.split():
            if word.startswith("$SET:"):
                ref = word[5:]
                for other_key, other in todo.items():
                    if other_key[1] == ref.rsplit("/", 1)[-1] and _visible(other.block, item.block):
                        resolve(other, (*seen, key))
                words.append(parser.lookup_text(item.block, ref))
            else:
                words.append(word)
        decl = parser.schema.settings[item.key]
        value = parse_typed(decl, " ".join(w for w in words if w), item.origin)
        item.block.set(item.key, value, item.origin, from_group=item.from_group)
        done.add(key)

    for item in pending:
        resolve(item, ())


def _visible(source: Block, reader: Block) -> bool:
    node: Block | None = reader
    while node is not None:
        if node is source:
            return True
        node = node.parent
    return False


# ---------------------------------------------------------------------- -o overrides


def apply_override(parser: ConfigParser, config: Config, override: str) -> None:
    """Apply one ``-o`` override: ``key=value``, ``a/b/key=value``, ``list+=name``, ``list=a,b``."""
    origin = OVERRIDE_ORIGIN
    if "=" not in override:
        raise ConfigError(f"Invalid -o override (expecting key=value): {override}", origin)
    path_text, _, value = override.partition("=")
    append = path_text.endswith("+")
    if append:
        path_text = path_text[:-1]
    parts = [p for p in path_text.split("/") if p]
    if not parts:
        raise ConfigError(f"Invalid -o override: {override}", origin)
    block = config.root
    while len(parts) > 1:
        kind = parts.pop(0)
        spec = parser.schema.filter(kind)
        if spec is None:
            raise ConfigError(f"-o {override}: unknown filter {kind}", origin)
        name = ""
        if spec.listed:
            if len(parts) < 2:
                raise ConfigError(f"-o {override}: filter {kind} needs a name", origin)
            name = parts.pop(0)
        block = block.ensure_child(kind, name, origin)
    key = parts[0]
    if key.startswith("@"):
        label = key[1:]
        matches = [g for g in block.groups if g.label == label]
        if not matches:
            raise ConfigError(f"-o {override}: @{label} is not used there in the config", origin)
        for include in matches:
            include.name = value
        return
    spec = parser.schema.filter(key)
    if spec is not None and spec.listed:
        names = [n for n in value.split(",") if n]
        if not append:
            block.remove_children(key, keep=set(names))
        for name in names:
            block.ensure_child(key, name, origin)
        return
    full = parser.resolve_key(key, origin, block)
    decl = parser.schema.settings[full]
    block.set(full, parse_typed(decl, value, origin), origin)
