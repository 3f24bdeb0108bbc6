"""docs/settings.md is derived from the declarations and kept in step with them."""

from __future__ import annotations

from columba.config.docs import settings_markdown
from columba.config.schema import default_schema
from tests.conftest import REPO


def test_settings_doc_is_current() -> None:
    current = (REPO / "docs" / "settings.md").read_text()
    assert current == settings_markdown(), (
        "docs/settings.md is stale: run `python -m columba.config.docs > docs/settings.md`"
    )


def test_every_declared_setting_is_documented() -> None:
    text = settings_markdown()
    for name, decl in default_schema().settings.items():
        assert f"| `{name}` |" in text
        assert decl.doc.strip()
