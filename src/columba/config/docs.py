"""``docs/settings.md``: the settings table, generated from the declarations.

Run ``python -m columba.config.docs > docs/settings.md``; a test keeps the file in step.
"""

from __future__ import annotations

import sys

from columba.config.schema import default_schema
from columba.config.types import format_value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    schema = default_schema()
    lines = [
        "# Settings",
        "",
        "Generated from `src/columba/config/declarations.py` by "
        "`python -m columba.config.docs`; do not edit by hand.",
        "Names, types and defaults follow Dovecot 2.4 (`dovecot.conf`); `columba_*` settings "
        "are Columba's own.",
        "",
        "## Filters",
        "",
        "| filter | form | allowed inside | what it is |",
        "|---|---|---|---|",
    ]
    for kind in schema.filters.values():
        form = f"`{kind.name} NAME {{ }}`" if kind.listed else f"`{kind.name} {{ }}`"
        parents = (
            "top level, connection filters"
            if kind.is_connection
            else ", ".join("top level" if p == "root" else p for p in sorted(kind.parents))
        )
        lines.append(f"| `{kind.name}` | {form} | {parents} | {_cell(kind.doc)} |")
    lines += [
        "",
        "## Settings",
        "",
        "| setting | type | default | roles | what it does |",
        "|---|---|---|---|---|",
    ]
    for decl in sorted(schema.settings.values(), key=lambda d: d.name):
        default = format_value(decl, decl.parsed_default)
        default_cell = f"`{_cell(default)}`" if default else "(empty)"
        type_text = decl.type.value
        if decl.choices:
            type_text += ": " + " ".join(decl.choices)
        roles = " ".join(sorted(decl.roles))
        secret = " (secret: hidden in dumps)" if decl.secret else ""
        doc = _cell(decl.doc) + secret
        lines.append(f"| `{decl.name}` | {type_text} | {default_cell} | {roles} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_markdown())
