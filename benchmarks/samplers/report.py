"""The table of a committed samplers record, regenerated from its rows.

    python benchmarks/samplers/report.py [RECORD]    # default: samplers.json next to this file

Results: benchmarks/RESULTS.md, section samplers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samplers import format_table

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", nargs="?", type=Path, default=HERE / "samplers.json")
    args = parser.parse_args(argv)
    print(format_table(json.loads(args.record.read_text(encoding="utf-8"))["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
