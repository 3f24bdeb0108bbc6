"""Printing a configuration in the dovecot.conf language (``columba config``, like doveconf).

The output parses back to the same settings: groups are printed expanded (their
``@label = name`` lines become comments), filters keep their order (an fs stack's order is
its meaning), setting names lose the prefix their filter implies, and values are quoted
whenever the plain form would read differently. Secrets are hidden unless asked for.
"""

from __future__ import annotations

from columba import __version__
from columba.config.loader import Config
from columba.config.parser import resolve_known
from columba.config.schema import ROOT, Schema
from columba.config.tree import Block
from columba.config.types import BoolList, SettingDecl, StrList, Value, format_value

HIDDEN = "# hidden, use -P to show it"
_SECRET_KEYS = ("password", "pass", "secret", "api_key", "token")


def quote_if_needed(text: str) -> str:
    """``text`` as a value that reads back as ``text``."""
    needs = (
        text != text.strip()
        or "#" in text
        or text[:1] in ('"', "'", "<")
        or "$ENV:" in text
        or "$SET:" in text
        or any(c in text for c in "\n\r\t")
        or text.endswith("\\")
    )
    if not needs:
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def short_name(schema: Schema, block: Block, full: str) -> str:
    """The shortest name that means ``full`` inside ``block``."""
    if block.kind in (ROOT, "group"):
        return full
    prefixes = []
    if block.name:
        prefixes += [f"{block.kind}_{block.name}_", f"{block.kind}_{block.name.replace('-', '_')}_"]
    prefixes.append(f"{block.kind}_")
    for prefix in prefixes:
        if full.startswith(prefix) and len(full) > len(prefix):
            short = full[len(prefix) :]
            if resolve_known(schema, block, short) == full:
                return short
    return full


def _is_secret_item(key: str, value: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_KEYS) and "%{" not in value and value != ""


def _setting_lines(
    decl: SettingDecl, name: str, value: Value, indent: str, show_secrets: bool
) -> list[str]:
    if isinstance(value, BoolList):
        if value.replace:
            return [f"{indent}{name} = {' '.join(value.enabled())}".rstrip()]
        lines = [f"{indent}{name} {{"]
        lines += [f"{indent}  {item} = {'yes' if on else 'no'}" for item, on in value.items]
        return [*lines, f"{indent}}}"]
    if isinstance(value, StrList):
        lines = [f"{indent}{name} ="] if value.replace else []
        if value.items or not value.replace:
            lines.append(f"{indent}{name} {{")
            for key, item in value.items:
                shown = (
                    HIDDEN
                    if not show_secrets and _is_secret_item(key, item)
                    else quote_if_needed(item)
                )
                lines.append(f"{indent}  {key} = {shown}".rstrip())
            lines.append(f"{indent}}}")
        return lines
    if decl.secret and not show_secrets and value != "":
        return [f"{indent}{name} = {HIDDEN}"]
    return [f"{indent}{name} = {quote_if_needed(format_value(decl, value))}".rstrip()]


def _block_lines(
    schema: Schema, block: Block, indent: str, show_secrets: bool, all_root: bool
) -> list[str]:
    lines: list[str] = []
    lines += [f"{indent}# @{g.label} = {g.name} (expanded below)" for g in block.groups]
    values = block.effective()
    if block.kind == ROOT:
        version = values.pop("dovecot_config_version", None)
        if version is not None:
            lines.append(f"dovecot_config_version = {version}")
        if all_root:
            for name, decl in schema.settings.items():
                if name != "dovecot_config_version" and name not in values:
                    values[name] = decl.parsed_default
    spec = schema.filter(block.kind)
    for name in sorted(values):
        if spec is not None and spec.name_setting == name and values[name] == block.name:
            continue
        decl = schema.settings[name]
        written = short_name(schema, block, name)
        lines += _setting_lines(decl, written, values[name], indent, show_secrets)
    for child in block.children:
        header = f"{child.kind} {_filter_name(child.name)}".rstrip()
        lines.append(f"{indent}{header} {{")
        lines += _block_lines(schema, child, indent + "  ", show_secrets, False)
        lines.append(f"{indent}}}")
    return lines


def _filter_name(name: str) -> str:
    if name and (" " in name or '"' in name or "#" in name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def dump(
    config: Config,
    *,
    all_settings: bool = False,
    show_secrets: bool = False,
    root: Block | None = None,
) -> str:
    """The configuration as text (``-n`` by default, ``-a`` with ``all_settings``)."""
    block = root if root is not None else config.root
    header = f"# columba {__version__}: {config.path}"
    body = _block_lines(config.schema, block, "", show_secrets, all_settings)
    return "\n".join([header, *body]) + "\n"


def dump_group(config: Config, label: str, name: str, *, show_secrets: bool = False) -> str:
    """A group's content (``columba config -d @label/name``)."""
    group = config.group(label, name)
    if group is None:
        raise KeyError(f"@{label}/{name}")
    lines = [f"group @{label} {name} {{"]
    lines += _block_lines(config.schema, group, "  ", show_secrets, False)
    lines.append("}")
    return "\n".join(lines) + "\n"
