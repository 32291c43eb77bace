"""``make run``: the whole Avisos stack on this machine, for trying it out.

1. Checks that PostgreSQL, Redis and RabbitMQ answer (URLs from AVISOS_DATABASE_URL,
   AVISOS_REDIS_URL, AVISOS_AMQP_URL, local defaults otherwise) and says how to start
   the one that does not.
2. Creates the database if needed, migrates it, and loads the demo data.
3. Starts every service as a process, waits until each is ready, prints the URL and the
   demo login. Ctrl-C stops everything (SIGTERM, then SIGKILL after a grace period).

Development secrets are generated once into ``var/dev-secrets.env``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from avisos_testkit.smtp import Received, SmtpSink  # noqa: E402
from avisos_testkit.stack import SERVICES, Stack  # noqa: E402

DEFAULTS = {
    "AVISOS_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/avisos",
    "AVISOS_REDIS_URL": "redis://127.0.0.1:6379/0",
    "AVISOS_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/",
}
PORTS = {"web": 8080, "api": 8000, "gateway": 8001, "dispatcher": 8002, "reports": 8003}
#: The local mail catcher: every email the dispatcher sends lands in var/mail/*.eml.
SMTP_PORT = 1025
HOW_TO_START = {
    "PostgreSQL": (
        "docker compose up -d postgres   # or, with Debian's packages:\n"
        "  sudo pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
    ),
    "Redis": (
        "docker compose up -d redis   # or, with Debian's packages:\n"
        "  redis-server --daemonize yes --bind 127.0.0.1 --port 6379"
    ),
    "RabbitMQ": (
        "docker compose up -d rabbitmq   # or, with Debian's packages:\n"
        "  sudo rabbitmq-server -detached"
    ),
}


def say(msg: str) -> None:
    print(f"avisos ▸ {msg}", flush=True)


def dev_secrets() -> dict[str, str]:
    path = ROOT / "var" / "dev-secrets.env"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(ROOT / "services" / "notification-api" / "src"))
        from avisos_api.cli import vapid_keypair

        private, public = vapid_keypair()
        path.write_text(
            f"AVISOS_TICKET_SECRET={secrets.token_urlsafe(48)}\n"
            f"AVISOS_INTERNAL_TOKEN={secrets.token_urlsafe(48)}\n"
            f"AVISOS_VAPID_PRIVATE_KEY={private}\n"
            f"AVISOS_VAPID_PUBLIC_KEY={public}\n"
            "AVISOS_VAPID_SUBJECT=mailto:ops@avisos.demo\n"
        )
        path.chmod(0o600)
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


async def check_backing(env: dict[str, str]) -> list[str]:
    """Return the names of the backing services that do not answer."""
    import aio_pika
    import asyncpg
    import redis.asyncio as redis

    down = []
    db = urlparse(env["AVISOS_DATABASE_URL"].replace("+asyncpg", ""))
    admin_url = db._replace(path="/postgres").geturl()
    try:
        conn = await asyncio.wait_for(asyncpg.connect(admin_url), 5)
        name = db.path.lstrip("/")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")
        await conn.close()
    except Exception as exc:
        down.append(("PostgreSQL", exc))
    try:
        client = redis.from_url(env["AVISOS_REDIS_URL"])
        await asyncio.wait_for(client.ping(), 5)
        await client.aclose()
    except Exception as exc:
        down.append(("Redis", exc))
    try:
        amqp = await asyncio.wait_for(aio_pika.connect(env["AVISOS_AMQP_URL"]), 5)
        await amqp.close()
    except Exception as exc:
        down.append(("RabbitMQ", exc))
    for name, exc in down:
        say(
            f"{name} does not answer ({type(exc).__name__}: {exc}). Start it with:\n  "
            f"{HOW_TO_START[name]}"
        )
    return [name for name, _ in down]


class MailFolder(SmtpSink):
    """A local SMTP server that saves each message as an .eml file (open it with any mail
    client), standing in for a real relay in the demo."""

    def __init__(self, folder: Path, port: int) -> None:
        super().__init__(port=port)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _record(self, received: Received) -> None:
        super()._record(received)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{len(self.messages):04d}.eml"
        (self.folder / name).write_bytes(received.data)


def installed(kind: str) -> bool:
    return importlib.util.find_spec(f"{SERVICES[kind].module}.__main__") is not None


def main() -> int:
    env = {k: os.environ.get(k, v) for k, v in DEFAULTS.items()}
    env.update({"AVISOS_ENV": os.environ.get("AVISOS_ENV", "dev")})
    for k, v in dev_secrets().items():
        env.setdefault(k, os.environ.get(k, v))
    web_url = f"http://localhost:{PORTS['web']}"
    env["AVISOS_PUBLIC_URL"] = web_url
    env["AVISOS_ALLOWED_ORIGINS"] = f"{web_url},http://127.0.0.1:{PORTS['web']}"
    env["AVISOS_API_INTERNAL_URL"] = f"http://127.0.0.1:{PORTS['api']}"
    env["AVISOS_API_URL"] = f"http://127.0.0.1:{PORTS['api']}"
    env["AVISOS_GATEWAY_URL"] = f"ws://127.0.0.1:{PORTS['gateway']}"
    env["AVISOS_REPORTS_DIR"] = str(ROOT / "var" / "reports")
    env["AVISOS_SERVICE_READY_URLS"] = ",".join(
        f"{name}=http://127.0.0.1:{PORTS[kind]}/{path}"
        for name, kind, path in (
            ("ws-gateway", "gateway", "readyz"),
            ("dispatcher", "dispatcher", "readyz"),
            ("reports", "reports", "readyz"),
            ("web", "web", "healthz"),
        )
    )
    # The demo sends email to a local catcher and Web Push; SMS needs a Twilio account
    # (AVISOS_TWILIO_*), so it is off unless you configure one.
    env.setdefault("AVISOS_SMTP_HOST", "127.0.0.1")
    env.setdefault("AVISOS_SMTP_PORT", str(SMTP_PORT))
    env.setdefault("AVISOS_SMTP_TLS", "none")
    env.setdefault("AVISOS_CHANNELS", '["email","push"]')

    say("checking PostgreSQL, Redis and RabbitMQ")
    if asyncio.run(check_backing(env)):
        return 1
    os.environ.update(env)
    from avisos_api.cli import main as admin

    say("migrating the database")
    admin(["migrate"])
    say("loading demo data")
    admin(["seed-demo"])

    mail = MailFolder(ROOT / "var" / "mail", SMTP_PORT).start()
    stack = Stack(env, ROOT / "var" / "logs")
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for kind in ("api", "gateway", "dispatcher", "reports", "web"):
            if not installed(kind):
                continue
            say(f"starting {kind} on port {PORTS[kind]}")
            try:
                stack.start(kind, port=PORTS[kind], timeout_secs=60)
            except (RuntimeError, TimeoutError) as exc:
                say(
                    f"{kind} did not start: {str(exc).splitlines()[0]}; "
                    f"see {ROOT / 'var' / 'logs' / (kind + '.log')}"
                )
        entry = web_url if "web" in stack.running else f"http://localhost:{PORTS['api']}/docs"
        from avisos_api.seed import DEMO_ADMIN_EMAIL, DEMO_PASSWORD

        print(
            "\n"
            f"  Avisos is running: {entry}\n"
            f"  Demo login:        {DEMO_ADMIN_EMAIL} / {DEMO_PASSWORD}\n"
            f"  API docs:          http://localhost:{PORTS['api']}/docs\n"
            f"  Emails sent:       {ROOT / 'var' / 'mail'} (.eml files)\n"
            f"  Logs:              {ROOT / 'var' / 'logs'}\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            for run in list(stack.running.values()):
                if run.process.poll() is not None:
                    say(f"{run.name} exited ({run.process.returncode}); see {run.log_path}")
                    stack.running.pop(run.name)
            time.sleep(0.5)
    finally:
        say("stopping")
        stack.stop_all()
        mail.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
