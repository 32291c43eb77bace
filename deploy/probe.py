#!/usr/bin/env python3
"""``avisos-probe URL``: exit 0 if URL answers 2xx within 3 s, 1 otherwise (and print
the answer, e.g. the /readyz body naming the unreachable dependency).

The container HEALTHCHECK of every Avisos image (the slim base has no curl or wget).
Standard library only, so it runs with the image's interpreter outside the venv too.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_SECS = 3.0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].startswith("http://"):
        print("usage: avisos-probe http://127.0.0.1:PORT/PATH", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[1], timeout=TIMEOUT_SECS) as resp:  # noqa: S310
            return 0 if 200 <= resp.status < 300 else 1
    except urllib.error.HTTPError as exc:
        # /readyz names the dependency that is down: show it to the operator.
        print(f"{argv[1]}: {exc.code} {exc.read(2000).decode(errors='replace')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{argv[1]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
