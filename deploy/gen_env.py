"""``make env``: write ``.env`` for ``docker compose up`` with real random secrets.

Starts from ``.env.example`` (or the existing ``.env``, whose real values are kept: running
it again never rotates a secret unless ``--rotate NAME`` says so) and replaces every
placeholder secret with a fresh one: hex for the passwords that go into URLs, URL-safe
base64 for the tokens, a new P-256 key pair for VAPID. The file is written mode 0600.

Run it with the workspace's Python (``uv run --frozen python deploy/gen_env.py``): the
VAPID pair needs ``cryptography``.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "change-me"

#: Secrets that go inside URLs (postgresql://avisos:<pw>@...): hex needs no escaping.
URL_SAFE_PASSWORDS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "RABBITMQ_PASSWORD")
TOKENS = ("AVISOS_TICKET_SECRET", "AVISOS_INTERNAL_TOKEN")
VAPID = ("AVISOS_VAPID_PRIVATE_KEY", "AVISOS_VAPID_PUBLIC_KEY")
GENERATED = (*URL_SAFE_PASSWORDS, *TOKENS, *VAPID)
SECRET_BYTES = 32


def vapid_keypair() -> tuple[str, str]:
    """(private, public) as unpadded base64url, like ``avisos-admin vapid-keys``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return b64(private), b64(public)


def parse(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def generate(
    template: str, current: dict[str, str], rotate: set[str], keypair: Callable[[], tuple[str, str]]
) -> str:
    """The template's lines with values from ``current`` where real, fresh secrets where
    the value is missing, a placeholder, or named in ``rotate``."""
    fresh: dict[str, str] = {}

    def needs(name: str) -> bool:
        value = current.get(name, PLACEHOLDER)
        return name in rotate or not value or PLACEHOLDER in value

    for name in URL_SAFE_PASSWORDS:
        if needs(name):
            fresh[name] = secrets.token_hex(SECRET_BYTES)
    for name in TOKENS:
        if needs(name):
            fresh[name] = secrets.token_urlsafe(SECRET_BYTES + 16)
    if any(needs(name) for name in VAPID):
        fresh["AVISOS_VAPID_PRIVATE_KEY"], fresh["AVISOS_VAPID_PUBLIC_KEY"] = keypair()

    out: list[str] = []
    for line in template.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            name = stripped.split("=", 1)[0].strip()
            if name in fresh:
                line = f"{name}={fresh[name]}"
            elif name in current:
                line = f"{name}={current[name]}"
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gen_env", description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=ROOT / ".env.example")
    parser.add_argument("--output", type=Path, default=ROOT / ".env")
    parser.add_argument(
        "--rotate", action="append", default=[], choices=GENERATED, help="regenerate this one"
    )
    args = parser.parse_args(argv)
    current = parse(args.output.read_text()) if args.output.exists() else {}
    text = generate(args.template.read_text(), current, set(args.rotate), vapid_keypair)
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(args.output, 0o600)
    left = [k for k, v in parse(text).items() if PLACEHOLDER in v]
    print(f"wrote {args.output} (mode 0600)")
    if left:
        print(f"still placeholders, set them by hand: {', '.join(left)}", file=sys.stderr)
    print("review the SMTP and origin settings, then: docker compose up -d --build")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
