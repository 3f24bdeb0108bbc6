"""The dovecot.conf (2.4 syntax) parser: text and files into a tree of filter blocks.

Hand-written because no library parses Dovecot's language: comments, quoting, ``\\``
continuation, ``<file`` values, heredocs, named (list) filters with automatic setting-name
prefixes, connection filters, groups, ``!include``/``!include_try``, ``$ENV:`` and ``$SET:``.
Everything is bounded (file size, line length, nesting, include depth) so that any input ends
in a :class:`ConfigError` naming ``file:line`` or in a tree.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from columba.config.errors import ConfigError, Origin
from columba.config.schema import ROOT, Schema
from columba.config.tree import Block, GroupInclude
from columba.config.types import (
    BoolList,
    SettingDecl,
    SettingType,
    SettingValueError,
    StrList,
    Value,
    format_value,
    parse_bool,
    parse_value,
)

MAX_FILE_SIZE = 16 * 1024 * 1024
MAX_LINE_LENGTH = 256 * 1024
MAX_NESTING = 32
MAX_INCLUDE_DEPTH = 16
MAX_INCLUDED_FILES = 1000

_KEY_RE = re.compile(r"^(@?[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*=(.*)$")
_FILTER_NAME_RE = re.compile(r"^[^\s{}\"'=]+$")
_LABEL_RE = re.compile(r"^@[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_PROTOCOL_RE = re.compile(r"^!?[a-z0-9][a-z0-9_\-]*$")
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass
class _Frame:
    """An open ``{`` block while parsing."""

    block: Block
    list_key: str | None = None
    list_decl: SettingDecl | None = None
    list_items: list[tuple[str, str | bool]] = field(default_factory=list)
    group_label: str | None = None
    origin: Origin | None = None


@dataclass
class PendingSet:
    """A value holding ``$SET:`` references, expanded at the end of parsing."""

    block: Block
    key: str
    text: str
    origin: Origin
    from_group: bool


@dataclass
class ParseResult:
    """What the parser produced before groups are expanded and ``$SET:`` is resolved."""

    root: Block
    groups: dict[tuple[str, str], Block]
    pending: list[PendingSet]
    files: list[str]


class ConfigParser:
    """Parses one main file (and what it includes) into a tree."""

    def __init__(self, schema: Schema, env: Mapping[str, str]) -> None:
        self.schema = schema
        self.env = env
        self.root = Block(ROOT)
        self.groups: dict[tuple[str, str], Block] = {}
        self.pending: list[PendingSet] = []
        self.files: list[str] = []
        self._stack: list[_Frame] = [_Frame(self.root)]
        self._seen_first_setting = False
        self._require_version = True

    # ------------------------------------------------------------------ entry points

    def parse_file(self, path: str | os.PathLike[str]) -> ParseResult:
        main = Path(path)
        try:
            text = _read_text(main)
        except OSError as exc:
            raise ConfigError(f"Can't open config file {main}: {exc.strerror or exc}") from exc
        self._parse_text(text, str(main), main.parent, depth=0)
        return self.result()

    def parse_text(
        self, text: str, filename: str, base_dir: Path, *, require_version: bool = True
    ) -> ParseResult:
        self._require_version = require_version
        self._parse_text(text, filename, base_dir, depth=0)
        return self.result()

    def result(self) -> ParseResult:
        return ParseResult(self.root, self.groups, self.pending, self.files)

    # ------------------------------------------------------------------ lines

    def _parse_text(self, text: str, filename: str, base_dir: Path, depth: int) -> None:
        if len(text) > MAX_FILE_SIZE:
            raise ConfigError(
                f"Config file too large (over {MAX_FILE_SIZE} bytes)", Origin(filename, 1)
            )
        self.files.append(filename)
        if len(self.files) > MAX_INCLUDED_FILES:
            raise ConfigError("Too many included files", Origin(filename, 1))
        start_depth = len(self._stack)
        lines = text.split("\n")
        for origin, statement in _logical_lines(lines, filename):
            self._statement(statement, origin, base_dir, depth, lines)
        if len(self._stack) > start_depth:
            frame = self._stack[-1]
            where = frame.origin or Origin(filename, len(lines))
            raise ConfigError("Missing '}'", where)

    def _statement(
        self, line: str, origin: Origin, base_dir: Path, depth: int, lines: list[str]
    ) -> None:
        frame = self._stack[-1]
        if line == "}":
            if len(self._stack) == 1 or (
                frame.origin is not None and frame.origin.file != origin.file
            ):
                raise ConfigError("Unexpected '}'", origin)
            self._close(origin)
            return
        if line.startswith("!include"):
            self._include(line, origin, base_dir, depth)
            return
        match = _KEY_RE.match(line)
        if match:
            key, raw = match.group(1), match.group(2).strip()
            value_text, quoted = self._value_text(raw, origin, base_dir, lines)
            if key.startswith("@"):
                self._group_include(key, value_text, origin)
            else:
                self._assign(key, value_text, quoted, origin)
            return
        if line.endswith("{"):
            self._open(line[:-1].strip(), origin)
            return
        raise ConfigError(f"Expecting '=' or '{{' in: {_clip(line)}", origin)

    # ------------------------------------------------------------------ values

    def _value_text(
        self, raw: str, origin: Origin, base_dir: Path, lines: list[str]
    ) -> tuple[str, bool]:
        """The text of a value and whether it was quoted (quoted text is never expanded)."""
        if raw[:1] in ('"', "'"):
            return _unquote(raw, origin), True
        if raw.startswith("<<"):
            tag = raw[2:].strip()
            if not tag:
                raise ConfigError("Missing heredoc end marker after '<<'", origin)
            return _heredoc(lines, origin, tag), True
        if raw.startswith("<"):
            path = raw[1:].strip()
            if not path:
                raise ConfigError("Missing file name after '<'", origin)
            full = base_dir / path
            try:
                return _read_text(full), True
            except OSError as exc:
                raise ConfigError(f"Can't read {full}: {exc.strerror or exc}", origin) from exc
        if "$ENV:" in raw:
            words = raw.split()
            raw = " ".join(self.env.get(w[5:], "") if w.startswith("$ENV:") else w for w in words)
        return raw, False

    def _assign(self, key: str, text: str, quoted: bool, origin: Origin) -> None:
        frame = self._stack[-1]
        if frame.list_decl is not None:
            self._list_item(frame, key, text, origin)
            return
        if self._require_version and not self._seen_first_setting:
            if key != "dovecot_config_version":
                raise ConfigError("The first setting must be dovecot_config_version", origin)
            _check_version(text, origin)
        self._seen_first_setting = True
        block = frame.block
        name = self.resolve_key(key, origin)
        decl = self.schema.settings[name]
        if not quoted and "$SET:" in text:
            if any(w == f"$SET:{name}" for w in text.split()):
                text = self._expand_set_now(block, text)
            else:
                self._drop_pending(block, name)
                self.pending.append(PendingSet(block, name, text, origin, self._in_group()))
                return
        self._drop_pending(block, name)
        value = parse_typed(decl, text, origin)
        block.set(name, value, origin, from_group=self._in_group())

    def _list_item(self, frame: _Frame, key: str, text: str, origin: Origin) -> None:
        assert frame.list_decl is not None
        if frame.list_decl.type is SettingType.BOOLLIST:
            try:
                frame.list_items.append((key, parse_bool(text)))
            except SettingValueError as exc:
                raise ConfigError(f"{frame.list_key}: {exc}", origin) from exc
        else:
            frame.list_items.append((key, text))

    def _drop_pending(self, block: Block, name: str) -> None:
        self.pending = [p for p in self.pending if not (p.block is block and p.key == name)]

    def _expand_set_now(self, block: Block, text: str) -> str:
        words = []
        for word in text.split():
            if word.startswith("$SET:"):
                words.append(self.lookup_text(block, word[5:]))
            else:
                words.append(word)
        return " ".join(w for w in words if w)

    def lookup_text(self, block: Block, ref: str) -> str:
        """The current text of setting ``ref`` as seen from ``block`` (``a/b/c`` paths allowed)."""
        if "/" in ref:
            parts = ref.split("/")
            target: Block | None = self.root
            name = parts[-1]
            segments = parts[:-1]
            while segments and target is not None:
                kind = segments.pop(0)
                spec = self.schema.filter(kind)
                child_name = (
                    segments.pop(0) if spec is not None and spec.listed and segments else ""
                )
                target = target.child(kind, child_name)
            chain = [target] if target is not None else []
        else:
            name = ref
            chain = []
            node: Block | None = block
            while node is not None:
                chain.append(node)
                node = node.parent
        decl = self.schema.setting(name)
        if decl is None:
            return ""
        for node in chain:
            value = node.get(name)
            if value is not None:
                return format_value(decl, value)
        return format_value(decl, decl.parsed_default)

    # ------------------------------------------------------------------ names

    def resolve_key(self, key: str, origin: Origin, block: Block | None = None) -> str:
        """The full setting name of ``key`` written inside the current (or given) block."""
        candidates = self.key_candidates(key, block)
        for candidate in candidates:
            if candidate in self.schema.settings:
                return candidate
        hints: list[str] = []
        for candidate in candidates:
            for hint in self.schema.suggestions(candidate):
                if hint not in hints:
                    hints.append(hint)
        hint_text = f" (did you mean: {', '.join(hints[:3])}?)" if hints else ""
        raise ConfigError(f"Unknown setting: {key}{hint_text}", origin)

    def key_candidates(self, key: str, block: Block | None = None) -> list[str]:
        block = block or self._stack[-1].block
        return key_candidates(self.schema, block, key, self._group_label())

    def _is_connection(self, kind: str) -> bool:
        spec = self.schema.filter(kind)
        return spec is not None and spec.is_connection

    def _in_group(self) -> bool:
        return any(frame.group_label is not None for frame in self._stack)

    def _group_label(self) -> str | None:
        for frame in reversed(self._stack):
            if frame.group_label is not None:
                return frame.group_label
        return None

    # ------------------------------------------------------------------ blocks

    def _open(self, header: str, origin: Origin) -> None:
        frame = self._stack[-1]
        if frame.list_decl is not None:
            raise ConfigError(f"{frame.list_key} is a list: no blocks inside it", origin)
        if len(self._stack) > MAX_NESTING:
            raise ConfigError(f"Filters nested too deeply (over {MAX_NESTING})", origin)
        if not header:
            raise ConfigError("Missing filter name before '{'", origin)
        words = _split_header(header, origin)
        if words[0] == "group":
            self._open_group(words, origin)
            return
        kind = words[0]
        name = words[1] if len(words) == 2 else ""
        if len(words) > 2:
            raise ConfigError(f"Expecting '{{' after the filter name in: {_clip(header)}", origin)
        block = frame.block
        if not name:
            list_name = self._list_setting(kind, block)
            if list_name is not None:
                decl = self.schema.settings[list_name]
                self._stack.append(_Frame(block, list_name, decl, origin=origin))
                return
        spec = self.schema.filter(kind)
        if spec is None:
            hints = [h for h in self._filter_hints(kind)]
            hint_text = f" (did you mean: {', '.join(hints)}?)" if hints else ""
            raise ConfigError(f"Unknown filter: {kind}{hint_text}", origin)
        if spec.listed and not name:
            raise ConfigError(f"Filter {kind} needs a name: {kind} NAME {{", origin)
        if not spec.listed and name:
            raise ConfigError(f"Named filter {kind} can't have a name before '{{'", origin)
        if block.kind != "group" and not self.schema.filter_allowed(spec, block.kind, []):
            where = "the top level" if block.kind == ROOT else f"{block.kind} {block.name}".strip()
            raise ConfigError(f"Filter {kind} is not allowed inside {where}", origin)
        if spec.is_connection:
            _check_connection_name(kind, name, origin)
        child = block.ensure_child(kind, name, origin)
        if spec.name_setting and name:
            child.set(spec.name_setting, name, origin, from_group=self._in_group())
        self._stack.append(_Frame(child, origin=origin))

    def _list_setting(self, key: str, block: Block) -> str | None:
        for candidate in self.key_candidates(key, block):
            if candidate in self.schema.settings:
                return candidate if self.schema.is_list_setting(candidate) else None
        return None

    def _filter_hints(self, kind: str) -> list[str]:
        import difflib

        return difflib.get_close_matches(kind, self.schema.filters.keys(), n=3, cutoff=0.7)

    def _open_group(self, words: list[str], origin: Origin) -> None:
        if len(words) != 3 or not _LABEL_RE.match(words[1]) or not _GROUP_NAME_RE.match(words[2]):
            raise ConfigError("Expecting: group @label name {", origin)
        if len(self._stack) != 1:
            raise ConfigError("Groups can only be defined at the top level", origin)
        label, name = words[1][1:], words[2]
        block = self.groups.get((label, name))
        if block is None:
            block = self.groups[(label, name)] = Block("group", f"@{label}/{name}", origin)
        self._stack.append(_Frame(block, group_label=label, origin=origin))

    def _close(self, origin: Origin) -> None:
        frame = self._stack.pop()
        if frame.list_decl is not None and frame.list_key is not None:
            value: Value
            if frame.list_decl.type is SettingType.BOOLLIST:
                items = [(k, bool(v)) for k, v in frame.list_items]
                value = BoolList(tuple(items), replace=False)
            else:
                value = StrList(tuple((k, str(v)) for k, v in frame.list_items), replace=False)
            frame.block.set(frame.list_key, value, origin, from_group=self._in_group())

    def _group_include(self, key: str, name: str, origin: Origin) -> None:
        frame = self._stack[-1]
        if frame.list_decl is not None:
            raise ConfigError("Group includes can't stand inside a list", origin)
        if not _LABEL_RE.match(key) or not _GROUP_NAME_RE.match(name):
            raise ConfigError(f"Invalid group include: {key} = {_clip(name)}", origin)
        if self._require_version and not self._seen_first_setting:
            raise ConfigError("The first setting must be dovecot_config_version", origin)
        frame.block.groups.append(GroupInclude(key[1:], name, origin))

    # ------------------------------------------------------------------ includes

    def _include(self, line: str, origin: Origin, base_dir: Path, depth: int) -> None:
        word, _, arg = line.partition(" ")
        if word not in ("!include", "!include_try"):
            raise ConfigError(f"Unknown directive: {_clip(word)}", origin)
        optional = word == "!include_try"
        pattern = arg.strip()
        if pattern[:1] in ('"', "'"):
            pattern = _unquote(pattern, origin)
        if not pattern:
            raise ConfigError(f"{word} needs a file name", origin)
        if depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(f"Includes nested too deeply (over {MAX_INCLUDE_DEPTH})", origin)
        full = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        paths = sorted(glob.glob(full)) if glob.has_magic(full) else [full]
        for path in paths:
            try:
                text = _read_text(Path(path))
            except OSError as exc:
                if optional:
                    continue
                raise ConfigError(f"Can't include {path}: {exc.strerror or exc}", origin) from exc
            self._parse_text(text, path, Path(path).parent, depth + 1)


# ---------------------------------------------------------------------- helpers


def key_candidates(schema: Schema, block: Block, key: str, label: str | None = None) -> list[str]:
    """Full names ``key`` may stand for inside ``block``, most specific first.

    Inside ``service imap { inet_listener imaps { ssl = yes } }`` these are
    ``inet_listener_imaps_ssl``, ``inet_listener_ssl`` and ``ssl``; inside a group
    ``@label`` the ``label_`` prefix is tried first.
    """
    candidates: list[str] = []
    if label:
        candidates.append(f"{label}_{key}")
    spec = schema.filter(block.kind)
    if spec is not None and not spec.is_connection:
        if block.name:
            candidates.append(f"{block.kind}_{block.name}_{key}")
            candidates.append(f"{block.kind}_{block.name.replace('-', '_')}_{key}")
        candidates.append(f"{block.kind}_{key}")
    candidates.append(key)
    return candidates


def resolve_known(schema: Schema, block: Block, key: str) -> str | None:
    """The setting ``key`` names inside ``block``, or None."""
    for candidate in key_candidates(schema, block, key):
        if candidate in schema.settings:
            return candidate
    return None


def parse_typed(decl: SettingDecl, text: str, origin: Origin) -> Value:
    """``text`` parsed as ``decl``'s type, or a ConfigError naming the setting."""
    try:
        return parse_value(decl, text)
    except SettingValueError as exc:
        raise ConfigError(f"{decl.name}: {exc}", origin) from exc


def _read_text(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_FILE_SIZE + 1)
    if len(data) > MAX_FILE_SIZE:
        raise OSError(f"{path} is larger than {MAX_FILE_SIZE} bytes")
    return data.decode("utf-8", errors="replace")


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment (quotes protect ``#``)."""
    if "#" not in line:
        return line
    quote = ""
    escaped = False
    for index, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote:
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in ('"', "'"):
            quote = char
        elif char == "#":
            return line[:index]
    return line


def _logical_lines(lines: list[str], filename: str) -> Iterator[tuple[Origin, str]]:
    """Statements with their starting line: comments stripped, ``\\`` continuations joined.

    A heredoc (``key = <<END``) hands the raw following lines to the statement handler,
    which consumes them; the shared ``lines`` list has them blanked out so they are skipped.
    """
    index = 0
    total = len(lines)
    while index < total:
        start = index + 1
        text = _strip_comment(lines[index].rstrip("\r")).strip()
        index += 1
        while text.endswith("\\") and index < total:
            text = text[:-1].rstrip() + " " + _strip_comment(lines[index].rstrip("\r")).strip()
            index += 1
            if len(text) > MAX_LINE_LENGTH:
                break
        if text.endswith("\\"):
            text = text[:-1].rstrip()
        if len(text) > MAX_LINE_LENGTH:
            raise ConfigError(
                f"Line too long (over {MAX_LINE_LENGTH} bytes)", Origin(filename, start)
            )
        if text:
            yield Origin(filename, start), text


def _heredoc(lines: list[str], origin: Origin, tag: str) -> str:
    """The lines after ``origin`` up to the line ``tag``; they are blanked so they aren't parsed."""
    body: list[str] = []
    index = origin.line  # the line after the heredoc start (0-based index)
    while index < len(lines):
        raw = lines[index].rstrip("\r")
        lines[index] = ""
        if raw.strip() == tag:
            return "\n".join(body)
        body.append(raw)
        index += 1
    raise ConfigError(f"Missing heredoc end marker {tag}", origin)


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unquote(raw: str, origin: Origin) -> str:
    quote = raw[0]
    out: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == "\\" and index + 1 < len(raw):
            nxt = raw[index + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            index += 2
            continue
        if char == quote:
            rest = raw[index + 1 :].strip()
            if rest:
                raise ConfigError(f"Garbage after the closing quote: {_clip(rest)}", origin)
            return "".join(out)
        out.append(char)
        index += 1
    raise ConfigError("Missing closing quote", origin)


def _split_header(header: str, origin: Origin) -> list[str]:
    """``kind`` / ``kind name`` / ``group @label name`` (a name may be quoted)."""
    words: list[str] = []
    rest = header.strip()
    while rest:
        if rest[0] in ('"', "'"):
            end = rest.find(rest[0], 1)
            while end > 0 and rest[end - 1] == "\\":
                end = rest.find(rest[0], end + 1)
            if end < 0:
                raise ConfigError("Missing closing quote", origin)
            words.append(_unquote(rest[: end + 1], origin))
            rest = rest[end + 1 :].lstrip()
        else:
            word, _, rest = rest.partition(" ")
            if "{" in word or "}" in word or "=" in word:
                raise ConfigError(
                    f"Filters must be written with line feeds: {_clip(header)}", origin
                )
            words.append(word)
            rest = rest.lstrip()
    if not words:
        raise ConfigError("Missing filter name before '{'", origin)
    for word in words:
        if not word or not _FILTER_NAME_RE.match(word.replace(" ", "_")):
            raise ConfigError(f"Invalid filter name: {_clip(word)}", origin)
    return words


def _check_connection_name(kind: str, name: str, origin: Origin) -> None:
    if kind in ("remote", "local"):
        try:
            ipaddress.ip_network(name, strict=False)
        except ValueError as exc:
            raise ConfigError(f"{kind}: invalid IP address or network '{name}'", origin) from exc
    elif kind == "protocol":
        for proto in name.split():
            if not _PROTOCOL_RE.match(proto):
                raise ConfigError(f"protocol: invalid protocol name '{name}'", origin)


def _check_version(text: str, origin: Origin) -> None:
    match = _VERSION_RE.match(text.strip())
    if not match:
        raise ConfigError(f"Invalid dovecot_config_version '{text}'", origin)
    major, minor = int(match.group(1)), int(match.group(2))
    if (major, minor) < (2, 4):
        raise ConfigError(
            f"Unsupported dovecot_config_version {text} (Columba reads 2.4.0 and newer)", origin
        )
