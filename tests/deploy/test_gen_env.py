"""`make env` (deploy/gen_env.py): real secrets, kept across runs, rotated on request."""

from __future__ import annotations

import stat
from pathlib import Path

from deploykit import ENV_EXAMPLE, parse_env_file
from gen_env import GENERATED, PLACEHOLDER, main


def test_generates_keeps_and_rotates(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    assert main(["--template", str(ENV_EXAMPLE), "--output", str(out)]) == 0
    first = parse_env_file(out.read_text())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert set(first) == set(parse_env_file(ENV_EXAMPLE.read_text()))
    for name in GENERATED:
        assert PLACEHOLDER not in first[name] and len(first[name]) >= 32, name
    assert first["POSTGRES_PASSWORD"].isalnum()  # goes into URLs unescaped
    assert len(first["AVISOS_VAPID_PUBLIC_KEY"]) == 87  # 65-byte P-256 point, base64url

    main(["--template", str(ENV_EXAMPLE), "--output", str(out)])
    assert parse_env_file(out.read_text()) == first

    main(["--template", str(ENV_EXAMPLE), "--output", str(out), "--rotate", "AVISOS_TICKET_SECRET"])
    third = parse_env_file(out.read_text())
    assert third["AVISOS_TICKET_SECRET"] != first["AVISOS_TICKET_SECRET"]
    assert {k: v for k, v in third.items() if k != "AVISOS_TICKET_SECRET"} == {
        k: v for k, v in first.items() if k != "AVISOS_TICKET_SECRET"
    }
