"""Write, or compare against, every field of a bundle's predictions on the bundled test split: the check
that a refactor changed no answer. The suite runs the same comparison (tests/test_prediction_snapshot.py)
against tests/data/shipped_test_predictions.jsonl.gz; rewrite that file when an answer is meant to change.

    python tools/prediction_snapshot.py compare                  # exit 1 if any field moved by > 1e-6
    python tools/prediction_snapshot.py write                    # store the shipped model's answers now
    python tools/prediction_snapshot.py compare --snapshot other.jsonl.gz --model BUNDLE
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ is importable

from tests.snapshot import SNAPSHOT, TOLERANCE, differences, predict_split, read_snapshot, write_snapshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "compare"])
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT, help=f"gzipped JSONL (default {SNAPSHOT})")
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)

    rows = predict_split(args.model, args.split)
    if args.action == "write":
        write_snapshot(rows, args.snapshot)
        print(f"{len(rows)} predictions written to {args.snapshot}")
        return 0
    found = differences(read_snapshot(args.snapshot), rows, "rows")
    print(f"{len(rows)} rows compared, {len(found)} differences (tolerance {TOLERANCE})")
    for line in found[:20]:
        print(" ", line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
