"""Static tests of compose.yaml, the Dockerfiles, the Kubernetes manifests and the
monitoring config: no Docker engine or cluster needed. Helpers are in deploykit.py."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (HERE, ROOT / "scripts", ROOT / "deploy"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
