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
        if name not in ("secret_fields", "credential_fields"):
            assert f"`AVISOS_{name.upper()}`" in block


def test_every_settings_class_is_registered() -> None:
    """A settings class defined anywhere in a service must be listed in SERVICE_MODULES,
    or its variables would be missing from the reference and from the compose checks."""
    import re

    from config_reference import ROOT, SERVICE_MODULES

    registered = {m for modules in SERVICE_MODULES.values() for m in modules}
    pattern = re.compile(r"^class \w+\((?:ServiceSettings|BaseSettings)\)", re.MULTILINE)
    for path in (ROOT / "services").glob("*/src/**/*.py"):
        if pattern.search(path.read_text()):
            src = next(p for p in path.parents if p.name == "src")
            module = ".".join(path.relative_to(src).with_suffix("").parts)
            assert module in registered, f"{module} defines settings; add it to SERVICE_MODULES"
