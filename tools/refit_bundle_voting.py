"""Refit a bundle's own index's voting (main groups, and the neighbours' share of the class and
subclass suggestions) on the bundle's validation rows, and measure it on its test rows; only
``index/index.json`` is rewritten (the vectors and patents stay as they are).

    python tools/refit_bundle_voting.py [BUNDLE]
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

from patentclf.inference.classifier import Classifier
from patentclf.inference.groups import group_figures
from patentclf.inference.index import BUNDLE_INDEX_DIR, INFO_FILE, PatentIndex
from patentclf.jobs.indexing import fit_on_split
from patentclf.model.bundle import default_model_dir, model_digest, read_info
from patentclf.training.recalibrate import stored_config
from patentclf.training.trainer import load_training_data


def main(bundle: Path) -> None:
    splits = load_training_data(stored_config(read_info(bundle), evaluate_test=True))
    folder = bundle / BUNDLE_INDEX_DIR
    index = PatentIndex.load(folder, model_digest=model_digest(bundle))
    voting = fit_on_split(Classifier.load(bundle, index=False), index, splits["validation"])
    classifier = Classifier.load(bundle, index=False)
    classifier.use_index(index)  # the refitted settings
    test = splits["test"]
    voting["test_figures"] = group_figures([[g.code for g in p.groups] for p in classifier.predict(test.texts)], test.groups)
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    info["voting"] = {key: value for key, value in voting.items() if key != "tfidf_neighbours"} | {
        "tfidf_neighbours": info["voting"].get("tfidf_neighbours", {})
    }
    info.setdefault("history", []).append(
        {"action": "voting refitted", "date": datetime.date.today().isoformat(), "fitted_on": voting["fitted_on"]}
    )
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(info["voting"], indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_dir())
