"""docs/operations.md's configuration reference is what the settings classes say."""

from __future__ import annotations

from config_reference import DOC, committed_block, render, settings_class


def test_committed_reference_matches_settings() -> None:
    assert committed_block(DOC.read_text()) == render(), (
        "docs/operations.md is out of date: "
        "uv run --frozen python scripts/config_reference.py --write"
    )


def test_reference_lists_secrets_and_descriptions() -> None:
    block = render()
    assert "| `AVISOS_TICKET_SECRET` |" in block
    row = next(line for line in block.splitlines() if "`AVISOS_INTERNAL_TOKEN`" in line)
    assert "| yes |" in row and "dev-only" in row
    cls = settings_class("ws-gateway")
    assert cls is not None
    for name in cls.model_fields:
        if name != "secret_fields":
            assert f"`AVISOS_{name.upper()}`" in block
