"""The tables of a committed guidance sweep, one per checkpoint, regenerated from its rows.

    python benchmarks/guidance/report.py                              # guidance.json
    python benchmarks/guidance/report.py guidance_noise_seeds.json    # another record

Results: benchmarks/RESULTS.md, sections guidance_interval and demo_recipes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from guidance import format_table, read_rows

HERE = Path(__file__).resolve().parent


def report(rows: list[dict[str, Any]]) -> str:
    """format_table of each checkpoint's rows, in the order the checkpoints first appear."""
    checkpoints = dict.fromkeys(row["checkpoint"] for row in rows)
    return "\n\n".join(format_table([row for row in rows if row["checkpoint"] == c]) for c in checkpoints)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", nargs="?", type=Path, default=HERE / "guidance.json")
    args = parser.parse_args(argv)
    path = args.record if args.record.exists() else HERE / args.record
    print(report(read_rows(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
