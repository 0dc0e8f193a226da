"""The table and the target ratios of a committed train_step record, regenerated from its rows.

    python benchmarks/train_step/report.py                      # train_step.json
    python benchmarks/train_step/report.py train_step_b.json    # another record (a path)

Results: benchmarks/RESULTS.md, section train_step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from table import format_table, memory_label
from train_step import summarize

HERE = Path(__file__).resolve().parent


def report(record: dict[str, Any]) -> str:
    """The table the run printed, then its summary lines, both recomputed from the record's rows."""
    rows = record["rows"]
    summary = summarize(rows, presets=list(dict.fromkeys(r["preset"] for r in rows)),
                        variants=list(dict.fromkeys(r["variant"] for r in rows)),
                        ratios=list(dict.fromkeys(r["mask_ratio"] for r in rows)),
                        interleave=record["interleave"], device=record["device"],
                        model_overrides=record["model_overrides"])
    table = format_table(rows, "memory_MiB", memory_label(record["device"], record["optimizer_step"]), 1.0)
    return table + "\n\n" + "\n".join(summary["lines"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", nargs="?", type=Path, default=HERE / "train_step.json")
    args = parser.parse_args(argv)
    path = args.record if args.record.exists() else HERE / args.record
    print(report(json.loads(path.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
