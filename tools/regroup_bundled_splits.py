"""Move near-duplicate patents so that each group sits in one split of the bundled data.

Run once after changing the bundled files: ``python tools/regroup_bundled_splits.py``. A group (same
title, abstracts sharing at least half their 5-word shingles: see ``data.near_duplicate_pairs``)
goes to the earliest split among train, validation, test that holds one of its members, so the
evaluation splits never hold a patent whose twin the model trained on.
"""

import json
import sys

from patentclf.corpus.data import bundled_data_dir, near_duplicate_pairs

SPLITS = ("train", "validation", "test")


def main() -> int:
    folder = bundled_data_dir()
    rows = [
        (split, json.loads(line))
        for split in SPLITS
        for line in (folder / f"{split}.jsonl").read_text().splitlines()
        if line.strip()
    ]
    # Union-find over the pairs, so chains of near-duplicates form one group.
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in near_duplicate_pairs([row for _, row in rows]):
        parent[root(a)] = root(b)
    home: dict[int, str] = {}
    for index, (split, _) in enumerate(rows):
        group = root(index)
        if group not in home or SPLITS.index(split) < SPLITS.index(home[group]):
            home[group] = split
    moved = [(split, home[root(i)], row["id"]) for i, (split, row) in enumerate(rows) if home[root(i)] != split]
    for split in SPLITS:
        kept = [row for i, (_, row) in enumerate(rows) if home[root(i)] == split]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in kept))
        print(f"{split}: {len(kept)} rows")
    for source, target, patent in moved:
        print(f"moved {patent}: {source} -> {target}")
    print(f"{len(moved)} rows moved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
