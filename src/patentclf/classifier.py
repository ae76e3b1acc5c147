"""Classifier: load a bundle once, predict batches of texts with probabilities for all nine sections."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .bundle import default_model_dir, load_bundle, model_version
from .calibration import apply_confidence_map, blend, combine, section_sets, stacked_sections, to_sections
from .data import to_bigpatent_form
from .ensemble import TfidfModels
from .heads import HeadLayout, last_token_positions
from .hierarchy import title
from .labels import CODES, SECTIONS
from .models import attention_implementation, pick_device, supports_bf16
from .prediction import CodeSuggestion, Prediction

LONG_TEXT_MODES = ("truncate", "chunk")
CHUNK_STRIDE = 64  # tokens shared by neighbouring windows in chunk mode
# On CPU a batch holds at most this many (padded) tokens: larger batches spill the activations out of
# the cache and run slower per token (on the 2-core EPYC dev machine, SmolLM2 ran 3x256 tokens 27%
# faster per token than 4x256, and 8x138 faster than 12x138).
CPU_BATCH_TOKENS = 800
# Batches are padded to a multiple of this many tokens. oneDNN (bf16 on CPU) builds and caches a kernel
# for every input shape it meets: with exact-length padding every batch is a new shape, and a service's
# memory grew by ~3.5 MB per new shape (tiny model) without levelling off. Rounded lengths keep the
# shapes few (8 rows x 8 lengths at 256 tokens), so the caches fill once and then hit.
PAD_MULTIPLE = 32
WARM_UP_TEXT = "warm-up: a device with a sensor"
TOP_CODES = 5  # class and subclass suggestions per prediction


def padded_length(length: int) -> int:
    """The length a row of ``length`` tokens is padded to in a batch (a multiple of ``PAD_MULTIPLE``)."""
    return -(-length // PAD_MULTIPLE) * PAD_MULTIPLE


def chunk_overlap(max_length: int) -> int:
    """Tokens shared by neighbouring windows: ``CHUNK_STRIDE``, at most a quarter of the window
    (a window of 64 tokens or fewer would otherwise never advance)."""
    return min(CHUNK_STRIDE, max_length // 4)


class Classifier:
    """A loaded model bundle. ``Classifier.load(path).predict(texts)``."""

    def __init__(
        self,
        model,
        tokenizer,
        info: dict,
        *,
        version: str,
        path: Path,
        device: torch.device,
        compile: bool = False,
        use_tfidf: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # the unmasked fast path below relies on it
        self.info = info
        self.version = version
        self.path = path
        self.device = device
        self.max_length = int(info.get("max_length", 256))
        self.normalize = info.get("normalize", "bigpatent") == "bigpatent"
        self.layout = HeadLayout.from_info(info)
        self.calibration = info.get("calibration", {})
        # The TF-IDF partner of the blend, stored in the bundle without pickle (see ensemble.py).
        self.tfidf = TfidfModels.load(path) if use_tfidf else None
        self.batch_tokens = CPU_BATCH_TOKENS if device.type == "cpu" else None
        self.default_batch_size = 8 if device.type == "cpu" else 32
        # Decoder classifiers (Llama, Mistral, Qwen, ... *ForSequenceClassification) are a causal
        # backbone `.model` plus a linear `.score` read at the last real token.
        self.backbone = model.model if hasattr(model, "model") and hasattr(model, "score") else None
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attention_implementation(device))
        if compile:
            if self.backbone is not None:
                self.backbone = torch.compile(self.backbone, dynamic=True)
            else:
                self.model = torch.compile(model, dynamic=True)
            # torch.compile works on the first call: make it here, so its cost and any failure (such
            # as no C++ compiler) come at load time, never with a caller's texts.
            self.warm_up()

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        device: str | None = None,
        precision: str = "auto",
        compile: bool = False,
        use_tfidf: bool = True,
    ) -> "Classifier":
        """Load a bundle (default: the shipped model). ``precision``: auto (bf16 where the hardware
        has native bf16), bf16 or fp32. ``compile``: torch.compile the model now, with one warm-up
        prediction (30-80 s on a CPU); predictions then run ~20% faster: worth it for thousands of texts.
        ``use_tfidf``: blend with the bundle's TF-IDF model where it has one (False: the LLM alone,
        with its own temperature)."""
        path = Path(path) if path else default_model_dir()
        target = torch.device(device) if device else pick_device()
        if precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
        use_bf16 = precision == "bf16" or (precision == "auto" and supports_bf16(target))
        model, tokenizer, info = load_bundle(path, dtype=torch.bfloat16 if use_bf16 else torch.float32, device=target)
        return cls(
            model, tokenizer, info, version=model_version(path), path=path, device=target, compile=compile, use_tfidf=use_tfidf
        )

    def warm_up(self) -> None:
        """Run the shapes that predictions will: batches of one row and of several, windows of one token,
        of a few and of ``max_length``. A model compiled with dynamic shapes still compiles sizes 0 and 1
        apart, so after a one-text warm-up the first batch of several texts would wait for the compiler."""
        ids = self.tokenizer(to_bigpatent_form(WARM_UP_TEXT), add_special_tokens=True)["input_ids"]
        for length in (1, 2, self.max_length):
            window = (ids * self.max_length)[:length]
            for rows in (1, 2):
                self._head_probabilities([window] * rows, batch_size=rows, progress=None)

    # -- prediction -----------------------------------------------------------------------------

    def predict(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        long_text: str = "truncate",
        progress: Callable[[int], None] | None = None,
    ) -> list[Prediction]:
        """Predict each text; the output keeps the input order. ``progress(n)`` is told of finished rows.
        ``batch_size``: most texts per model call (default 8 on CPU, 32 on a GPU)."""
        if long_text not in LONG_TEXT_MODES:
            raise ValueError(f"long_text must be one of {LONG_TEXT_MODES}, not {long_text!r}")
        for position, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {position} is empty")
        raw, truncated, counts = self._raw_outputs(texts, batch_size, long_text, progress)
        outputs = self.calibrated(raw, texts)
        return [self._prediction(outputs, i, truncated[i], counts[i]) for i in range(len(texts))]

    def raw_outputs(
        self, texts: Sequence[str], *, batch_size: int | None = None, long_text: str = "truncate"
    ) -> dict[str, np.ndarray]:
        """The model's own probabilities per head (before the TF-IDF blend and temperature), one row
        per text: what calibration is fitted on."""
        return self._raw_outputs(texts, batch_size, long_text, None)[0]

    def _raw_outputs(self, texts, batch_size, long_text, progress) -> tuple[dict[str, np.ndarray], list[bool], list[int]]:
        windows, owners, truncated = self._windows(texts, chunk=long_text == "chunk")
        window_outputs = self._head_probabilities(windows, batch_size, progress if long_text == "truncate" else None)
        # Chunk mode: a document's probabilities are the unweighted mean of its windows' probabilities
        # (windows of max_length tokens, neighbours sharing chunk_overlap() tokens), so a long
        # description is judged on all of its text.
        index = torch.tensor(owners)
        counts = torch.bincount(index, minlength=len(texts)).clamp(min=1)
        documents = {}
        for head, values in window_outputs.items():
            totals = torch.zeros(len(texts), values.shape[1])
            totals.index_add_(0, index, values)
            documents[head] = (totals / counts.unsqueeze(1)).numpy()
        if long_text == "chunk" and progress:
            progress(len(texts))
        return documents, truncated, [int(c) for c in counts]

    def calibrated(self, raw: dict[str, np.ndarray], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Blend each softmax head with the bundle's TF-IDF model and apply its temperature (both
        fitted on validation; a bundle without them passes the model's probabilities through). For a
        hierarchical bundle the section is pooled with the finer heads, the sections come from the
        fitted stack, and the section's top confidence is read through the fitted confidence map.
        ``sections_threshold`` (one per row) is the threshold the sections are chosen at."""
        out = dict(raw)
        tfidf: dict[str, np.ndarray | None] = {}
        stack = self.calibration.get("sections_stack")
        stacked = set(stack["features"]) if stack else set()
        for head, codes in (("section", list(CODES)), ("class", self.layout.classes), ("subclass", self.layout.subclasses)):
            if head not in raw:
                continue
            settings = self.calibration.get(head, {})
            weight = settings.get("llm_weight", 1.0)
            wanted = weight < 1.0 or "weights" in settings or {"tfidf", f"tfidf_{head}"} & stacked
            tfidf[head] = self.tfidf_probabilities(texts, head, codes) if wanted else None
            if tfidf[head] is None:  # the LLM alone (no TF-IDF partner, or use_tfidf=False): its own temperature
                out[head] = blend(raw[head], None, 1.0, settings.get("llm_temperature", 1.0))
            elif "weights" in settings:  # the section pooled with the finer heads (see section_sources)
                sources = self.section_sources(raw, tfidf[head])
                out[head] = combine([sources[name] for name in settings["weights"]], list(settings["weights"].values()))
            else:
                out[head] = blend(raw[head], tfidf[head], weight, settings.get("temperature", 1.0))
        if "sections" in raw:  # the stack reads the pooled section before the confidence map
            threshold = self.calibration.get("sections_threshold", 0.5)
            tables = self.stack_tables(raw, out, tfidf) if stack else {}
            if stack and all(name in tables for name in stack["features"]):
                out["sections"] = stacked_sections(tables, stack)
                threshold = stack["threshold"]
            out["sections_threshold"] = np.full(len(texts), threshold)
        section = self.calibration.get("section", {})
        # The map was fitted on the full path's output: not on the LLM alone when TF-IDF is switched off.
        full_path = tfidf.get("section") is not None or (section.get("llm_weight", 1.0) >= 1.0 and "weights" not in section)
        if "confidence_map" in section and full_path:
            out["section"] = apply_confidence_map(out["section"], section["confidence_map"])
        return out

    def stack_tables(
        self, raw: dict[str, np.ndarray], pooled: dict[str, np.ndarray], tfidf: dict[str, np.ndarray | None]
    ) -> dict[str, np.ndarray]:
        """The (rows, 9) tables the sections stack reads (see ``calibration.STACK_FEATURES``);
        ``pooled["section"]`` is the pooled section before the confidence map. A table whose source
        is missing (no TF-IDF partner, or use_tfidf=False) is left out."""
        sources = self.section_sources(raw, tfidf.get("section"))  # its "tfidf", "class", "subclass"
        tables = {"sections": raw["sections"], "section": pooled["section"]}
        tables.update({name: table for name, table in sources.items() if name != "llm"})
        for head, codes in (("class", self.layout.classes), ("subclass", self.layout.subclasses)):
            if tfidf.get(head) is not None:
                tables[f"tfidf_{head}"] = to_sections(tfidf[head], codes, list(CODES))
        return tables

    def section_sources(self, raw: dict[str, np.ndarray], tfidf: np.ndarray | None) -> dict[str, np.ndarray]:
        """What each part of the model says about the main section, as (rows, 9) tables: the LLM's
        section head, the TF-IDF partner's, and the LLM's class and subclass heads summed up to
        sections (a patent's main subclass names its main section, and those heads learnt it from
        finer labels)."""
        sources = {"llm": raw["section"]}
        if tfidf is not None:
            sources["tfidf"] = tfidf
        for head, codes in (("class", self.layout.classes), ("subclass", self.layout.subclasses)):
            if head in raw:
                sources[head] = to_sections(raw[head], codes, list(CODES))
        return sources

    def tfidf_probabilities(self, texts: Sequence[str], head: str, codes: Sequence[str]) -> np.ndarray | None:
        """The bundle's TF-IDF model's probabilities for ``head``, in the order of ``codes`` (a code
        it never saw gets ~0)."""
        if self.tfidf is None or head not in self.tfidf.models:
            return None
        probs = self.tfidf.predict_proba(list(texts), head)
        aligned = np.full((len(texts), len(codes)), 1e-9)
        position = {code: i for i, code in enumerate(codes)}
        for column, known in enumerate(self.tfidf.classes(head)):
            key = CODES[known] if head == "section" else known
            if key in position:
                aligned[:, position[key]] = probs[:, column]
        return aligned / aligned.sum(axis=1, keepdims=True)

    def predict_proba(self, texts: Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
        return torch.stack(
            [torch.tensor([p.probabilities[c] for c in CODES]) for p in self.predict(texts, batch_size=batch_size)]
        )

    def _windows(self, texts: Sequence[str], chunk: bool) -> tuple[list[list[int]], list[int], list[bool]]:
        """Token id windows for each text, the text each window belongs to, and which were truncated."""
        # Lone surrogates (JSON allows "\ud800") are not text the tokenizer can encode: replace them.
        prepared = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]
        prepared = [to_bigpatent_form(t) if self.normalize else t for t in prepared]
        encoded = self.tokenizer(prepared, add_special_tokens=True, truncation=False)["input_ids"]
        windows, owners, truncated = [], [], []
        overlap = chunk_overlap(self.max_length)
        step = self.max_length - overlap
        for index, ids in enumerate(encoded):
            too_long = len(ids) > self.max_length
            truncated.append(too_long and not chunk)
            if not too_long or not chunk:
                windows.append(ids[: self.max_length])
                owners.append(index)
                continue
            for start in range(0, max(1, len(ids) - overlap), step):
                windows.append(ids[start : start + self.max_length])
                owners.append(index)
        return windows, owners, truncated

    def batches(self, lengths: Sequence[int], batch_size: int | None = None) -> list[list[int]]:
        """Indices grouped into batches of similar length, shortest first: at most ``batch_size`` rows
        and, on CPU, at most ``CPU_BATCH_TOKENS`` padded tokens (a single longer row goes alone)."""
        batch_size = batch_size or self.default_batch_size
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        for index in order:
            group = groups[-1] if groups else None
            # Rows come shortest first, so the newcomer sets the padded length of its group.
            fits = (
                group is not None
                and len(group) < batch_size
                and (self.batch_tokens is None or (len(group) + 1) * padded_length(lengths[index]) <= self.batch_tokens)
            )
            if fits:
                group.append(index)
            else:
                groups.append([index])
        return groups

    @torch.inference_mode()
    def _head_probabilities(self, windows: list[list[int]], batch_size: int | None, progress) -> dict[str, torch.Tensor]:
        """Each head's probabilities for each window: softmax for the single-label heads (section,
        class, subclass), independent sigmoids for the multi-label ``sections``."""
        parts = self.layout.slices()
        out = {head: torch.empty(len(windows), part.stop - part.start) for head, part in parts.items()}
        for chosen in self.batches([len(w) for w in windows], batch_size):
            logits = self._logits([windows[i] for i in chosen]).float().cpu()
            for head, part in parts.items():
                values = logits[:, part]
                out[head][chosen] = torch.sigmoid(values) if head == "sections" else torch.softmax(values, dim=-1)
            if progress:
                progress(len(chosen))
        return out

    def _logits(self, windows: list[list[int]]) -> torch.Tensor:
        batch = self.tokenizer.pad({"input_ids": windows}, pad_to_multiple_of=PAD_MULTIPLE, return_tensors="pt")
        if self.backbone is None:
            return self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
        # Padding is on the right and attention is causal, so no real token ever attends to a pad:
        # the attention mask can be left out (same numbers; SDPA then takes its causal kernel and no
        # mask is built), and each row is read at its own last token, as transformers' classifier does.
        hidden = self.backbone(input_ids=batch["input_ids"].to(self.device)).last_hidden_state
        last = last_token_positions(torch.tensor([len(w) for w in windows], device=self.device))
        return self.model.score(hidden[torch.arange(len(windows), device=self.device), last])

    def _prediction(self, outputs: dict[str, np.ndarray], row: int, truncated: bool, chunks: int) -> Prediction:
        probs = outputs["section"][row]
        best = int(probs.argmax())
        confidence = round(float(probs[best]), 6)
        if "sections" in outputs:
            threshold = float(outputs["sections_threshold"][row])
            chosen = section_sets(outputs["sections"][row : row + 1], np.array([best]), threshold)[0]
            sections = [CODES[best]] + [code for i, code in enumerate(CODES) if chosen[i] and i != best]
            section_probabilities = {code: round(float(p), 6) for code, p in zip(CODES, outputs["sections"][row])}
        else:
            sections, section_probabilities = [CODES[best]], {CODES[best]: confidence}
        return Prediction(
            label=CODES[best],
            label_id=best,
            name=SECTIONS[best].name,
            confidence=confidence,
            probabilities={code: round(float(p), 6) for code, p in zip(CODES, probs)},
            truncated=truncated,
            chunks=chunks,
            sections=sections,
            section_probabilities=section_probabilities,
            classes=self._top(outputs.get("class"), row, self.layout.classes),
            subclasses=self._top(outputs.get("subclass"), row, self.layout.subclasses),
        )

    @staticmethod
    def _top(probabilities: np.ndarray | None, row: int, codes: list[str], k: int = TOP_CODES) -> list[CodeSuggestion]:
        if probabilities is None or not codes:
            return []
        order = np.argsort(-probabilities[row])[:k]
        return [CodeSuggestion(codes[i], title(codes[i]), round(float(probabilities[row, i]), 6)) for i in order]
