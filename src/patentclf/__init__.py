"""patentclf: classify patents into CPC sections, classes, subclasses and main groups with a LoRA-fine-tuned decoder LLM."""

import os

from patentclf.corpus.labels import CODES, SECTIONS, Section

# Torch's CPU build on Linux runs its threads with GNU OpenMP, whose idle threads spin 300,000 rounds
# before they sleep. Where another process holds a core, that spinning starves the working thread:
# prediction ran 14x slower on 2 cores with one busy process (bench/busy_machine.py). A short spin
# keeps nearly all of the quiet-machine speed. libgomp reads it when torch loads, so it is set here,
# and only where the user chose no OpenMP wait setting of their own.
OPENMP_SPIN_COUNT = 1000
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = str(OPENMP_SPIN_COUNT)

__version__ = "0.1.0"

# The public API, as setfit exports its model, trainer and arguments: load and predict, train with
# its settings, evaluate and recalibrate a bundle, build a patent index, read a bundle's description.
# Imported on first use, so that `import patentclf` (and the CLI's --help) does not pay for torch.
_EXPORTS = {
    "Classifier": "patentclf.inference.classifier",
    "Prediction": "patentclf.inference.prediction",
    "PredictOptions": "patentclf.inference.options",
    "TrainConfig": "patentclf.model.train_config",
    "train": "patentclf.training.trainer",
    "evaluate_bundle": "patentclf.training.evaluate",
    "recalibrate_bundle": "patentclf.training.recalibrate",
    "build_index": "patentclf.jobs.indexing",
    "BundleInfo": "patentclf.model.bundle",
    "read_info": "patentclf.model.bundle",
}
__all__ = [*_EXPORTS, "CODES", "SECTIONS", "Section", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'patentclf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
