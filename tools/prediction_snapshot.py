"""Write, or compare against, every field of a bundle's predictions on a split: the check that a
refactor of the post-processing changed no answer.

    python tools/prediction_snapshot.py write before.jsonl            # the shipped model, bundled test split
    python tools/prediction_snapshot.py compare before.jsonl          # exit 1 if any field moved by > 1e-6
"""

from __future__ import annotations

import argparse
import json
import sys


def differences(before, after, path: str = "", tolerance: float = 1e-6) -> list[str]:
    """Where two JSON values differ (numbers by more than ``tolerance``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        if before.keys() != after.keys():
            return [f"{path}: keys {sorted(before)} != {sorted(after)}"]
        return [d for key in before for d in differences(before[key], after[key], f"{path}.{key}", tolerance)]
    if isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            return [f"{path}: {len(before)} items != {len(after)}"]
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{path}[{i}]", tolerance)]
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and not isinstance(before, bool):
        return [] if abs(before - after) <= tolerance else [f"{path}: {before} != {after}"]
    return [] if before == after else [f"{path}: {before!r} != {after!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["write", "compare"])
    parser.add_argument("snapshot")
    parser.add_argument("--model", default=None, help="bundle folder (default: the shipped model)")
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)

    from patentclf.classifier import Classifier
    from patentclf.data import load_split

    texts = load_split("bundled", args.split).texts
    rows = [p.to_dict() for p in Classifier.load(args.model).predict(texts)]
    if args.action == "write":
        with open(args.snapshot, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        print(f"{len(rows)} predictions written to {args.snapshot}")
        return 0
    with open(args.snapshot) as f:
        before = [json.loads(line) for line in f]
    found = differences(before, rows, "rows")
    print(f"{len(rows)} rows compared, {len(found)} differences (tolerance 1e-6)")
    for line in found[:20]:
        print(" ", line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
