"""Main groups against the size of the patent index: what a user's own corpus adds.

Scores the test split's main groups with indexes of 2k, 4k and all of the bundled training patents,
then of training + validation (the bigger corpus a user would index), beside the TF-IDF neighbours
baseline indexing the same rows, measured in the same run. The training patents' vectors come from
the bundle's own index (built by ``patentclf index`` from the training split); the model's group
voting settings are that index's (fitted on validation). The validation and test rows'
representations and subclass probabilities are computed once and cached under ``--cache`` (keyed by
the model's digest), so a rerun takes seconds.

    .venv/bin/python bench/group_index.py                  # the shipped model: ~20 min the first time on a 2-core AVX2 CPU
    .venv/bin/python bench/group_index.py --model DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common  # noqa: F401
from common import machine, table


def outputs(classifier, split, cache: Path):
    """The split's representations and calibrated subclass probabilities (cached)."""
    import numpy as np

    from patentclf.model.bundle import model_digest

    path = cache / f"{model_digest(classifier.path)}-{split.source.replace('/', '_')}.npz"
    if path.is_file():
        data = np.load(path)
        return data["embedding"], data["subclass"]
    start = time.perf_counter()
    raw = classifier.raw_outputs(split.texts)
    calibrated = classifier.calibrated(raw, split.texts)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, embedding=raw["embedding"], subclass=calibrated["subclass"])
    print(f"embedded {len(split)} rows of {split.source} in {time.perf_counter() - start:.0f} s")
    return raw["embedding"], calibrated["subclass"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=Path("outputs/bench-cache"))
    args = parser.parse_args()

    import numpy as np

    from patentclf.corpus.data import load_split
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.groups import GroupPriors, GroupVoting, group_figures, suggested_codes
    from patentclf.inference.index import IndexedPatent, PatentIndex
    from patentclf.training.evaluation import tfidf_neighbour_groups

    classifier = Classifier.load(args.model, index=None)
    voting = GroupVoting.from_dict(classifier.index.voting if classifier.index else {})
    print(machine())
    print(f"group voting: {voting}")
    if classifier.index is None:
        raise SystemExit("the bundle has no index of its training patents: build one with `patentclf index --fit-on`")
    splits = {name: load_split("bundled", name) for name in ("train", "validation", "test")}
    vectors = {name: outputs(classifier, splits[name], args.cache) for name in ("validation", "test")}
    test_vectors, test_subclass = vectors["test"]
    truth = splits["test"].groups
    # The training patents as the bundle's index holds them, in the training split's order.
    order = {patent.id: i for i, patent in enumerate(classifier.index.patents)}
    train_rows = [order[patent_id] for patent_id in splits["train"].ids if patent_id in order]
    train_vectors = classifier.index.faiss_index.reconstruct_n(0, len(classifier.index))[train_rows]
    print(f"{len(train_rows)} of {len(splits['train'])} training patents in the bundle's index")

    def corpus(size: int | None, with_validation: bool):
        train = splits["train"]
        rows = [i for i, patent_id in enumerate(train.ids) if patent_id in order]
        rows = rows if size is None else rows[:size]
        texts = [train.texts[i] for i in rows]
        groups = [train.groups[i] for i in rows]
        embedded = train_vectors[: len(rows)]
        if with_validation:
            texts += splits["validation"].texts
            groups += splits["validation"].groups
            embedded = np.concatenate([embedded, vectors["validation"][0]])
        return texts, groups, embedded

    results = []
    for label, size, with_validation in (
        ("2k training", 2000, False),
        ("4k training", 4000, False),
        ("all training", None, False),
        ("training + validation", None, True),
    ):
        texts, groups, embedded = corpus(size, with_validation)
        patents = [IndexedPatent(str(i), "", []) for i in range(len(groups))]
        index = PatentIndex.build(embedded, patents, model_digest="bench")
        index._groups = groups  # the groups straight from the split (the patents' own codes)
        priors = GroupPriors(groups, voting.other_weight)
        start = time.perf_counter()
        similarities, rows = index.search(test_vectors, max(voting.k, 5))
        suggested = suggested_codes(voting, groups, similarities, rows, test_subclass, classifier.layout.subclasses, priors)
        seconds = time.perf_counter() - start
        ours = group_figures(suggested, truth)
        theirs = group_figures(tfidf_neighbour_groups(texts, groups, splits["test"].texts), truth)
        results.append(
            [
                label,
                str(len(groups)),
                *(f"{ours[k]:.3f} / {theirs[k]:.3f}" for k in ("group_top1", "group_top5", "group_any_top5")),
                f"{1000 * seconds / len(truth):.2f}",
            ]
        )
    print(f"\nmain groups of the {len(truth)} test rows: model / TF-IDF neighbours over the same index rows")
    headers = ["index", "patents", "top-1", "top-5", "any group in top 5", "search + vote ms/row"]
    print(table(headers, results))


if __name__ == "__main__":
    main()
