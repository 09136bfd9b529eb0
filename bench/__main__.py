"""``make bench``: run every benchmark module and print ratios against in-run baselines.

Each ``bench/bench_*.py`` module exposes ``run() -> list[str]`` returning report lines; a
module's baseline is measured in the same run as the thing it is compared with, so the ratios
hold on any machine.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    """Run all benchmark modules (or those named on the command line) and print results."""
    here = Path(__file__).parent
    wanted = set(sys.argv[1:])
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    for name in names:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}")
        for line in module.run():
            print(f"   {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
