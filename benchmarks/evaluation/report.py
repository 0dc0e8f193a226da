"""The table of the committed evaluation record, regenerated from it.

    python benchmarks/evaluation/report.py [RECORD]    # default: evaluation.json next to this file

Results: benchmarks/RESULTS.md, section evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evaluation import HERE, format_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("record", nargs="?", type=Path, default=HERE / "evaluation.json")
    args = parser.parse_args(argv)
    print(format_report(json.loads(args.record.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
