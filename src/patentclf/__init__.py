"""patentclf: classify patents into the nine CPC sections with a LoRA-fine-tuned decoder LLM."""

from .labels import CODES, SECTIONS, Section

__version__ = "0.1.0"
__all__ = ["Classifier", "CODES", "SECTIONS", "Section", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import patentclf` (and the CLI's --help) does not pay for importing torch.
    if name == "Classifier":
        from .classifier import Classifier

        return Classifier
    raise AttributeError(name)
