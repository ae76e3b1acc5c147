"""The shipped bundle answers every row of the bundled test split exactly as the stored snapshot says:
every field, to 1e-6. A change that is meant to change answers rewrites the snapshot with
``python tools/prediction_snapshot.py write`` and says so in its commit. The snapshot's answers are
one distribution over the hierarchy on every row (the live answers equal them, so theirs are too)."""

import pytest

from tests.snapshot import SNAPSHOT, differences, predict_split, read_snapshot

LEVEL_OF = {1: "section", 3: "class", 4: "subclass"}


def incoherences(row: dict) -> list[str]:
    """Where one answer's levels disagree: a code more probable than its parent (or than its section),
    a section's membership below its probability of being the main section, a best subclass above the
    best class, a best class or subclass outside the predicted sections, or a level's headline that is
    not that level's best code."""
    found = []
    section = row["probabilities"]
    classes = {c["code"]: c["probability"] for c in row["classes"]}
    subclasses = {c["code"]: c["probability"] for c in row["subclasses"]}
    for code, p in classes.items():
        if p > section[code[0]] + 1e-6:
            found.append(f"class {code} {p} > section {section[code[0]]}")
    for code, p in subclasses.items():
        parent = classes.get(code[:3])
        if parent is not None and p > parent + 1e-6:
            found.append(f"subclass {code} {p} > class {parent}")
        if p > section[code[0]] + 1e-6:
            found.append(f"subclass {code} {p} > section {section[code[0]]}")
    for group in row["groups"]:
        parent = subclasses.get(group["code"][:4])
        if parent is not None and group["probability"] > parent + 1e-6:
            found.append(f"group {group['code']} > subclass {parent}")
    for code, p in section.items():
        if row["section_probabilities"].get(code, p) < p - 1e-6:
            found.append(f"section {code}: belongs {row['section_probabilities'][code]} < main {p}")
    # Each level's best: the class list's first is more probable than any subclass (sums of children).
    if row["classes"] and row["subclasses"] and row["subclasses"][0]["probability"] > row["classes"][0]["probability"] + 1e-6:
        found.append("the best subclass is more probable than the best class")
    for key in ("classes", "subclasses"):
        if row[key] and row[key][0]["code"][0] not in row["sections"]:
            found.append(f"the best of {key}, {row[key][0]['code']}, is outside the sections {row['sections']}")
    best = {level["level"]: level for level in row["levels"]}
    for level, key in (("class", "classes"), ("subclass", "subclasses"), ("group", "groups")):
        if row[key] and best.get(level, {}).get("code") != row[key][0]["code"]:
            found.append(f"the {level} headline is not the best {level}")
    return found


def test_every_snapshot_answer_is_one_distribution_over_the_hierarchy():
    rows = read_snapshot()
    assert len(rows) == 988
    found = {i: incoherences(row) for i, row in enumerate(rows)}
    found = {i: f for i, f in found.items() if f}
    assert not found, f"{len(found)} rows disagree with themselves, e.g. {next(iter(found.items()))}"


@pytest.mark.slow
def test_the_shipped_bundle_answers_the_test_split_as_the_snapshot_says(shipped_model):
    before = read_snapshot()
    after = predict_split(shipped_model)
    assert len(after) == len(before) == 988
    found = differences(before, after, "rows")
    assert not found, f"{len(found)} fields differ from {SNAPSHOT.name}, e.g. " + "; ".join(found[:5])
    assert not any(incoherences(row) for row in after)
