"""What every benchmark's report needs: replacing its "## Section" of docs/benchmarks.md
and a one-line description of the machine it ran on."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


def replace_section(heading: str, text: str, path: Path = DOC) -> None:
    """Put ``text`` (starting with ``## {heading}``) in place of that section, or at the end."""
    doc = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", flags=re.M | re.S)
    body = text.rstrip("\n") + "\n"
    if pattern.search(doc):
        doc = pattern.sub(lambda _m: body + "\n", doc, count=1)
    else:
        doc = doc.rstrip("\n") + "\n\n" + body
    path.write_text(doc.rstrip("\n") + "\n", encoding="utf-8")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        "redis-server with AOF everysec"
    )
