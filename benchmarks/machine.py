"""The machine line every benchmark records beside its numbers, and where its results go."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"


def machine() -> str:
    """Cores, CPU model (from /proc/cpuinfo where there is one) and platform."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.platform()}"


def save(name: str, **fields: Any) -> dict[str, Any]:
    """Write ``benchmarks/out/<name>.json`` (date, machine, ``fields``), print the date and machine, return it."""
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), **fields}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(f"\n{result['date']}, {result['machine']}\n")
    return result
