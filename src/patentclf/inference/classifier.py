"""Classifier: load a bundle once, predict batches of texts with probabilities for all nine sections.

A prediction is four steps, each owned elsewhere: text to token windows (``windows.py``), windows to
raw logits (an engine: ``engines/torch.py`` in this process, ``engines/vllm.py`` on a vLLM server),
raw head probabilities to the answer's tables (the bundle's fitted ``calibration.Calibration`` with
its TF-IDF partner, ``ensemble.py``), and tables to ``Prediction`` records with titles (here).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from patentclf.corpus.data import to_bigpatent_form
from patentclf.corpus.hierarchy import title
from patentclf.corpus.labels import CODES, SECTIONS
from patentclf.inference.calibration import Calibration, section_sets
from patentclf.inference.explain import expand
from patentclf.inference.groups import GroupPriors, GroupVoting, suggest_groups
from patentclf.inference.hierarchy import best, neighbour_votes, row_tables, with_evidence
from patentclf.inference.index import BUNDLE_INDEX_DIR, INFO_FILE, PatentIndex
from patentclf.inference.options import DEFAULT_OPTIONS, PredictOptions
from patentclf.inference.prediction import CodeSuggestion, LevelAnswer, Prediction, ReviewReason, SimilarPatent
from patentclf.inference.review import REASONS, Reliability, ReviewRules
from patentclf.inference.tags import TagSetError, TagSets, load_tag_sets
from patentclf.model.bundle import BundleInfo, default_model_dir, model_digest, model_version, read_info
from patentclf.model.ensemble import TfidfModels
from patentclf.model.heads import HeadLayout
from patentclf.model.windows import LONG_TEXT_MODES, Windows, chunk_overlap, make_windows

__all__ = ["Classifier", "CodeSuggestion", "Prediction", "PredictOptions", "LONG_TEXT_MODES", "chunk_overlap", "ENGINES"]

ENGINES = ("torch", "vllm", "openvino")
WARM_UP_TEXT = "warm-up: a device with a sensor"
TOP_CODES = DEFAULT_OPTIONS.classes  # class and subclass suggestions per prediction (by default: see options.py)
# The key of the texts' representations among the raw outputs (the hidden state the heads read).
EMBEDDING = "embedding"
SIMILAR_PATENTS = DEFAULT_OPTIONS.similar  # nearest indexed patents shown as evidence (by default)
LEVEL_KEYS = (("classes", "class"), ("subclasses", "subclass"), ("groups", "group"))
# The nearest patents "point elsewhere" when this share of their votes is for one other section:
# on the shipped model's validation split, 9% of answers, wrong 51% of the time against 19%.
EVIDENCE_MAJORITY = 0.5


class Classifier:
    """A loaded model bundle. ``Classifier.load(path).predict(texts)``."""

    def __init__(
        self,
        engine,
        info: BundleInfo,
        *,
        version: str,
        path: Path,
        use_tfidf: bool = True,
        index: PatentIndex | None = None,
        tags=None,
    ):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.info = info
        self.version = version
        self.path = path
        self.max_length = info.max_length
        self.normalize = info.normalized
        self.layout = HeadLayout.from_info(info)
        self.calibration = Calibration.from_dict(info.calibration, self.layout)
        # The TF-IDF partner of the blend, stored in the bundle without pickle (see ensemble.py).
        self.tfidf = TfidfModels.load(path) if use_tfidf else None
        # When an answer needs a person's check, and what each level's probabilities have meant.
        self.review = ReviewRules.from_dict(info.calibration.get("review"))
        self.reliability = Reliability.from_dict(info.calibration.get("reliability"))
        # The patent index and how its neighbours vote for main groups (all None without an index).
        self.index: PatentIndex | None = None
        self.voting: GroupVoting | None = None
        self.priors: GroupPriors | None = None
        self.use_index(index)
        # The user's own tag sets (``patentclf tags fit``), read over the same representation.
        self.tags = TagSets()
        self.use_tags(tags)

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        device: str | None = None,
        precision: str = "auto",
        compile: bool = False,
        use_tfidf: bool = True,
        engine: str = "torch",
        vllm_url: str | None = None,
        quantize: str | None = None,
        index: str | Path | bool | None = None,
        tags=None,
    ) -> "Classifier":
        """Load a bundle (default: the shipped model). ``precision``: auto (bf16 where the hardware
        has native bf16), bf16 or fp32. ``compile``: torch.compile the model now, with one warm-up
        prediction (30-80 s on a CPU); predictions then run ~20% faster: worth it for thousands of texts.
        ``use_tfidf``: blend with the bundle's TF-IDF model where it has one (False: the LLM alone,
        with its own temperature). ``engine="vllm"`` with ``vllm_url``: the forward pass runs on a vLLM
        server serving this bundle's merged export (no model is loaded here); ``engine="openvino"``: the
        backbone compiled by OpenVINO for this CPU (the openvino extra; exported once per bundle into the
        cache, ~1.2x the torch path's speed on a bf16 CPU at the same labels). ``quantize``: 4bit or
        8bit base weights (bitsandbytes; default: what the bundle was trained with). ``index``: the
        patent index whose patents are the evidence (``similar``) and vote for the main groups: a folder
        from ``patentclf index``; default the bundle's own (``<bundle>/index``) where it has one; False:
        none (no groups, no evidence). The vLLM engine gives no representations, so it has no index.
        ``tags``: tag sets (``patentclf tags fit``): a folder of one, a folder of several, or a list of
        either; each prediction then carries ``tags``. Refused for another model's tag sets."""
        path = Path(path) if path else default_model_dir()
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
        if engine == "vllm":  # imported only when chosen: the vLLM path needs no torch
            from patentclf.inference.engines.vllm import VllmEngine

            if index:
                raise ValueError("the vLLM engine answers logits only, so a patent index cannot be used with it")
            if tags:
                raise ValueError(
                    "the vLLM engine answers logits only, so tag sets (read over the representation) cannot be used with it"
                )
            backend, found = VllmEngine.from_bundle(path, vllm_url), None
        elif engine == "openvino":
            from patentclf.inference.engines.openvino import OpenVinoEngine

            if compile or quantize not in (None, "none") or (device and device != "cpu"):
                raise ValueError("the OpenVINO engine runs on the CPU, compiled by OpenVINO: no device, compile or quantize")
            backend, found = OpenVinoEngine.from_bundle(path, precision=precision), cls._find_index(path, index)
        else:
            from patentclf.inference.engines.torch import TorchEngine

            backend = TorchEngine.from_bundle(path, device=device, precision=precision, compile=compile, quantize=quantize)
            found = cls._find_index(path, index)
        classifier = cls(
            backend, read_info(path), version=model_version(path), path=path, use_tfidf=use_tfidf, index=found, tags=tags
        )
        if compile:
            # torch.compile works on the first call: make it here, so its cost and any failure (such
            # as no C++ compiler) come at load time, never with a caller's texts.
            classifier.warm_up()
        return classifier

    @staticmethod
    def _find_index(path: Path, index: str | Path | bool | None) -> PatentIndex | None:
        if index is False or index == "":
            return None
        folder = path / BUNDLE_INDEX_DIR if index is None or index is True else Path(index)
        if index is None and not (folder / INFO_FILE).is_file():
            return None
        return PatentIndex.load(folder, model_digest=model_digest(path))

    def use_index(self, index: PatentIndex | None) -> None:
        """Answer groups and evidence from ``index`` (``None``: none)."""
        self.index = index
        self.voting = GroupVoting.from_dict(index.voting) if index is not None else None
        self.priors = GroupPriors(index.groups, self.voting.other_weight) if index is not None else None
        self._patent_codes = [patent.codes for patent in index.patents] if index is not None else []

    def use_tags(self, tags) -> None:
        """Answer the tags of ``tags`` (tag set folders, ``TagSet``s or ``TagSets``; None: no tags),
        refusing those fitted on another model's representations."""
        if tags and type(self.engine).__name__ == "VllmEngine":
            raise TagSetError(
                "the vLLM engine answers logits only, so tag sets (read over the representation) cannot be used with it"
            )
        self.tags = load_tag_sets(tags, model_digest=model_digest(self.path)) if tags else TagSets()

    @property
    def device(self) -> str:
        """Where the model runs: a torch device (``cpu``, ``cuda``), or the engine's own description."""
        return str(getattr(self.engine, "device", type(self.engine).__name__))

    def warm_up(self) -> None:
        """Run the shapes that predictions will: batches of one row and of several, windows of one token,
        of a few and of ``max_length``. A model compiled with dynamic shapes still compiles sizes 0 and 1
        apart, so after a one-text warm-up the first batch of several texts would wait for the compiler."""
        ids = self.tokenizer(to_bigpatent_form(WARM_UP_TEXT), add_special_tokens=True)["input_ids"]
        for length in (1, 2, self.max_length):
            window = (ids * self.max_length)[:length]
            for rows in (1, 2):
                self.engine.logits([window] * rows)

    # -- prediction -----------------------------------------------------------------------------

    def predict(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        long_text: str = "truncate",
        progress: Callable[[int], None] | None = None,
        options: PredictOptions | Sequence[PredictOptions] | None = None,
    ) -> list[Prediction]:
        """Predict each text; the output keeps the input order. ``progress(n)`` is told of finished rows.
        ``batch_size``: most texts per model call (default 8 on CPU, 32 on a GPU). ``options``: how
        many codes per level, thresholds, depth (``PredictOptions``; one for every text, or one per
        text; default: ``PredictOptions()``, the full answer). Texts whose options ask to ``explain``
        are answered with their variants, one per sentence left out, in the same calls (``explain.py``)."""
        chosen = self._options(options, len(texts))
        if any(o.explain for o in chosen):
            expansion = expand(texts, chosen)
            scale = len(texts) / len(expansion.texts)  # progress counts the texts asked for
            told = (lambda n: progress(n * scale)) if progress else None
            every = self.predict(
                expansion.texts, batch_size=batch_size, long_text=long_text, progress=told, options=expansion.options
            )
            return expansion.collect(every)
        windows = self._windows(texts, long_text)
        raw = self._gather(self._document_outputs(windows, len(texts), batch_size, progress), len(texts))
        outputs = self._outputs(raw, texts, chosen)
        chunks = Counter(windows.owners)
        return [self._prediction(outputs, i, texts[i], windows.truncated[i], chunks[i], chosen[i]) for i in range(len(texts))]

    def answers(
        self,
        raw: dict[str, np.ndarray],
        texts: Sequence[str],
        options: PredictOptions | Sequence[PredictOptions] | None = None,
    ) -> list[Prediction]:
        """The predictions made of ``raw_outputs(texts)`` (for fitting and measuring on outputs computed
        once; a text's ``truncated`` and ``chunks`` are not known here and read False and 1)."""
        chosen = self._options(options, len(texts))
        if any(o.explain for o in chosen):
            raise ValueError("options.explain needs the texts' variants classified: use predict")
        outputs = self._outputs(raw, texts, chosen)
        return [self._prediction(outputs, i, text, False, 1, chosen[i]) for i, text in enumerate(texts)]

    @staticmethod
    def _options(options: PredictOptions | Sequence[PredictOptions] | None, count: int) -> list[PredictOptions]:
        """One ``PredictOptions`` per text."""
        if options is None or isinstance(options, PredictOptions):
            return [options or DEFAULT_OPTIONS] * count
        chosen = list(options)
        if len(chosen) != count or not all(isinstance(o, PredictOptions) for o in chosen):
            raise ValueError(f"options: give one PredictOptions, or one per text ({count}), not {len(chosen)} items")
        return chosen

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None, long_text: str = "truncate") -> np.ndarray:
        """The model's representation of each text (rows x hidden size, float32): what an index holds."""
        raw = self.raw_outputs(texts, batch_size=batch_size, long_text=long_text)
        if EMBEDDING not in raw:
            raise ValueError(f"the {type(self.engine).__name__} engine gives no representations (logits only)")
        return raw[EMBEDDING]

    def iter_predictions(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        long_text: str = "truncate",
        options: PredictOptions | Sequence[PredictOptions] | None = None,
    ) -> Iterator[list[tuple[int, Prediction]]]:
        """Like ``predict``, but hands over each text's prediction as soon as its model call is done, as
        ``(index, prediction)`` pairs per call, shortest texts first: a caller that batched several
        requests together can answer the short ones while the long ones still run. The predictions are
        the same as ``predict``'s (calibration reads each row on its own). ``options`` as for ``predict``:
        texts of several requests, each with its own, share the model calls. Explained texts wait for
        their variants: with any, every prediction comes at the end (the service expands explained
        requests itself, so their variants take turns in its queue)."""
        chosen = self._options(options, len(texts))
        if any(o.explain for o in chosen):
            yield list(enumerate(self.predict(texts, batch_size=batch_size, long_text=long_text, options=chosen)))
            return
        windows = self._windows(texts, long_text)
        chunks = Counter(windows.owners)
        for documents, raw in self._document_outputs(windows, len(texts), batch_size, None):
            outputs = self._outputs(raw, [texts[i] for i in documents], [chosen[i] for i in documents])
            yield [
                (doc, self._prediction(outputs, row, texts[doc], windows.truncated[doc], chunks[doc], chosen[doc]))
                for row, doc in enumerate(documents)
            ]

    def raw_outputs(
        self, texts: Sequence[str], *, batch_size: int | None = None, long_text: str = "truncate"
    ) -> dict[str, np.ndarray]:
        """The model's own probabilities per head (before the TF-IDF partner and calibration), one row
        per text: what calibration is fitted on."""
        windows = self._windows(texts, long_text)
        return self._gather(self._document_outputs(windows, len(texts), batch_size, None), len(texts))

    def tfidf_outputs(self, texts: Sequence[str], heads: set[str] | None = None) -> dict[str, np.ndarray | None]:
        """The TF-IDF partner's probabilities per head, aligned to the model's codes (``None`` for a head
        it lacks, or for every head with ``use_tfidf=False``); ``heads``: only these."""
        codes = {"section": list(CODES), "class": self.layout.classes, "subclass": self.layout.subclasses}
        wanted = set(codes) if heads is None else heads
        return {
            head: self.tfidf.aligned(list(texts), head, head_codes) if self.tfidf is not None and head in wanted else None
            for head, head_codes in codes.items()
        }

    def calibrated(self, raw: dict[str, np.ndarray], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The bundle's calibration applied to raw head probabilities of ``texts`` (reading TF-IDF only
        for the heads the calibration uses)."""
        return self.calibration.apply(raw, self.tfidf_outputs(texts, self.calibration.tfidf_heads()))

    def _outputs(self, raw: dict[str, np.ndarray], texts: Sequence[str], chosen: Sequence[PredictOptions]) -> dict:
        """What the predictions are made of: the calibrated tables, the representations (for the review
        rules) and, per row, its nearest indexed patents (``None`` for a row whose options need no
        search: depth ``section``). Rows are searched together by how many neighbours they need, so a
        row's neighbours never depend on the other rows' options."""
        outputs: dict = dict(self.calibrated(raw, texts))
        if EMBEDDING in raw:
            outputs[EMBEDDING] = raw[EMBEDDING]
        if self.index is not None and EMBEDDING in raw:
            by_k: dict[int, list[int]] = defaultdict(list)
            for row, options in enumerate(chosen):
                if options.searches:
                    by_k[max(self.voting.k, options.similar)].append(row)
            near: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(chosen)
            for k, rows in by_k.items():
                similarities, found = self.neighbours(raw, k, rows)["neighbours"]
                for position, row in enumerate(rows):
                    near[row] = (similarities[position], found[position])
            outputs["neighbours"] = near
        return outputs

    def neighbours(
        self, raw: dict[str, np.ndarray], k: int | None = None, rows: Sequence[int] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"neighbours": (similarities, rows)}``: the ``k`` nearest indexed patents of each text's
        representation (of the texts at ``rows`` only, if given); default enough to vote and to show
        the default number as evidence (nothing without an index)."""
        if self.index is None or EMBEDDING not in raw:
            return {}
        vectors = raw[EMBEDDING] if rows is None else raw[EMBEDDING][list(rows)]
        return {"neighbours": self.index.search(vectors, k or max(self.voting.k, SIMILAR_PATENTS))}

    def _windows(self, texts: Sequence[str], long_text: str) -> Windows:
        if long_text not in LONG_TEXT_MODES:
            raise ValueError(f"long_text must be one of {LONG_TEXT_MODES}, not {long_text!r}")
        for position, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text {position} is empty")
        return make_windows(self.tokenizer, texts, self.max_length, normalize=self.normalize, chunk=long_text == "chunk")

    def _document_outputs(
        self, windows: Windows, count: int, batch_size: int | None, progress: Callable[[int], None] | None
    ) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
        """Per engine call, the texts whose windows are all done and their head probabilities: softmax
        for the single-label heads (section, class, subclass), independent sigmoids for the
        multi-label ``sections``. Chunk mode: a text's probabilities are the unweighted mean of its
        windows' (windows of max_length tokens, neighbours sharing chunk_overlap() tokens), so a long
        description is judged on all of its text."""
        parts = self.layout.slices()
        left = Counter(windows.owners)
        counts = dict(left)
        sums: dict[int, dict[str, np.ndarray]] = {}
        for chosen in self.engine.batches([len(w) for w in windows.ids], batch_size):
            logits, representations = self.engine.outputs_of([windows.ids[i] for i in chosen])
            probs = self.engine.probabilities(logits, parts, independent={"sections"})
            if representations is not None:  # averaged over a text's windows like the probabilities
                probs[EMBEDDING] = representations
            done = []
            for row, window in enumerate(chosen):
                doc = windows.owners[window]
                total = sums.setdefault(doc, {head: np.zeros(values.shape[1], np.float32) for head, values in probs.items()})
                for head, values in probs.items():
                    total[head] += values[row]
                left[doc] -= 1
                if left[doc] == 0:
                    done.append(doc)
            if done:
                yield done, {head: np.stack([sums[d][head] / np.float32(counts[d]) for d in done]) for head in probs}
                for doc in done:
                    del sums[doc]
                if progress:
                    progress(len(done))

    @staticmethod
    def _gather(parts: Iterator[tuple[list[int], dict[str, np.ndarray]]], count: int) -> dict[str, np.ndarray]:
        """The per-call outputs put back in the texts' order."""
        out: dict[str, np.ndarray] = {}
        for documents, values in parts:
            for head, table in values.items():
                out.setdefault(head, np.empty((count, table.shape[1]), np.float32))[documents] = table
        return out

    def _prediction(
        self, outputs: dict, row: int, text: str, truncated: bool, chunks: int, options: PredictOptions = DEFAULT_OPTIONS
    ) -> Prediction:
        probs = outputs["section"][row]
        top = int(probs.argmax())
        confidence = round(float(probs[top]), 6)
        if "sections" in outputs:
            threshold = options.sections_threshold
            if threshold is None:
                threshold = float(outputs["sections_threshold"][row])
            chosen = section_sets(outputs["sections"][row : row + 1], np.array([top]), threshold)[0]
            sections = [CODES[top]] + [code for i, code in enumerate(CODES) if chosen[i] and i != top]
            section_probabilities = {code: round(float(p), 6) for code, p in zip(CODES, outputs["sections"][row])}
        else:
            sections, section_probabilities = [CODES[top]], {CODES[top]: confidence}
        codes, best_codes = self._codes(outputs, row, options)
        # The best class's and subclass's sections belong to the patent too (rarely below the threshold):
        # the levels of one answer never contradict each other. The best ones of the levels the depth
        # reaches, shown or not (how many are shown does not change the set).
        for code in best_codes:
            if code[0] not in sections:
                sections.append(code[0])
        representation = outputs[EMBEDDING][row] if EMBEDDING in outputs else None
        reasons = [ReviewReason(r, REASONS[r]) for r in self.review.reasons(text, confidence, representation)]
        return Prediction(
            label=CODES[top],
            label_id=top,
            name=SECTIONS[top].name,
            confidence=confidence,
            probabilities={code: round(float(p), 6) for code, p in zip(CODES, probs)},
            truncated=truncated,
            chunks=chunks,
            sections=sections,
            section_probabilities=section_probabilities,
            **codes,
            levels=self._levels(CODES[top], confidence, codes),
            needs_review=bool(reasons),
            review_reasons=reasons,
            evidence_disagrees=self._evidence_disagrees(outputs, row, CODES[top]),
            tags=self._tags(representation, options),
        )

    def _tags(self, representation: np.ndarray | None, options: PredictOptions) -> list | None:
        """The row's tags above their thresholds and the options' threshold (None without tag sets)."""
        if not self.tags:
            return None
        if representation is None:
            raise ValueError(f"the {type(self.engine).__name__} engine gives no representations, so no tags")
        return self.tags.matches(representation[None, :], options.threshold)[0]

    def _levels(self, section: str, confidence: float, codes: dict) -> list[LevelAnswer]:
        """The best code of each level the answer has, with the share of validation answers at about its
        probability that were right (the bundle's ``calibration.reliability``)."""
        best_codes = [("section", CodeSuggestion(section, title(section), confidence))]
        best_codes += [(level, codes[key][0]) for key, level in LEVEL_KEYS if codes.get(key)]
        return [
            LevelAnswer(level, s.code, s.title, s.probability, self.reliability.right_share(level, s.probability))
            for level, s in best_codes
        ]

    @staticmethod
    def _near(outputs: dict, row: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The row's nearest indexed patents (similarities, rows), or None: no index, or not searched."""
        return outputs["neighbours"][row] if "neighbours" in outputs else None

    def _evidence_disagrees(self, outputs: dict, row: int, section: str) -> bool:
        """Whether at least half of the nearest indexed patents' votes (their main codes, weighted as the
        groups' are) are for one section other than ``section`` (False where none were searched)."""
        near = self._near(outputs, row)
        if near is None:
            return False
        similarities, rows = near
        votes = neighbour_votes(
            self._patent_codes, similarities, rows, width=1, k=self.voting.k, power=self.voting.power, other_weight=0.0
        )
        total = sum(votes.values())
        if not total:
            return False
        leader = min(votes, key=lambda code: (-votes[code], code))
        return leader != section and votes[leader] / total >= EVIDENCE_MAJORITY

    @staticmethod
    def _suggestions(ranked: list[tuple[str, float]], count: int, threshold: float) -> list[CodeSuggestion]:
        """The first ``count`` of ``ranked`` (best first) at least ``threshold`` probable, with titles."""
        return [CodeSuggestion(code, title(code), round(p, 6)) for code, p in ranked[:count] if round(p, 6) >= threshold]

    def _codes(self, outputs: dict, row: int, options: PredictOptions = DEFAULT_OPTIONS) -> tuple[dict, list[str]]:
        """The row's classes, subclasses, main groups and nearest indexed patents as ``options`` ask
        (how many, above which probability, down to which depth): one distribution (``hierarchy.py``),
        with the neighbours' votes below each parent where there is an index; and the best class and
        subclass of the levels the depth reaches (whose sections join the answer's)."""
        near = self._near(outputs, row)
        if not options.reaches("class") or ("class" not in outputs and "subclass" not in outputs and near is None):
            return {}, []
        empty = np.zeros(0)
        section, classes, subclasses = row_tables(
            outputs["section"][row],
            outputs["class"][row] if "class" in outputs else empty,
            self.layout.classes,
            outputs["subclass"][row] if "subclass" in outputs else empty,
            self.layout.subclasses,
        )
        deep = options.reaches("subclass")
        found: dict = {}
        if near is not None:
            similarities, rows = near
            if classes or subclasses:
                settings = dict(k=self.voting.k, power=self.voting.power, other_weight=self.voting.other_weight)
                class_votes = neighbour_votes(self._patent_codes, similarities, rows, width=3, **settings)
                # Below the depth the subclasses are not answered: their votes need not be counted
                # (the classes do not depend on them).
                subclass_votes = neighbour_votes(self._patent_codes, similarities, rows, width=4, **settings) if deep else {}
                classes, subclasses = with_evidence(
                    section,
                    classes,
                    subclasses,
                    class_votes,
                    subclass_votes,
                    class_mix=self.voting.class_mix,
                    subclass_mix=self.voting.subclass_mix,
                )
            if options.count("group"):
                groups = suggest_groups(
                    self.voting,
                    self.priors,
                    self.index.groups,
                    similarities,
                    rows,
                    subclasses if "subclass" in outputs else self._voted_subclasses(section, classes, similarities, rows),
                    self.layout.subclasses,
                    top=options.groups,
                )
                found["groups"] = self._suggestions(groups, options.groups, options.threshold)
            found["similar"] = self._similar(similarities, rows, options.similar)
        ranked_classes = best(classes, max(options.count("class"), 1))
        found["classes"] = self._suggestions(ranked_classes, options.count("class"), options.threshold)
        best_codes = [code for code, _ in ranked_classes[:1]]
        if deep:
            ranked_subclasses = best(subclasses, max(options.count("subclass"), 1))
            found["subclasses"] = self._suggestions(ranked_subclasses, options.count("subclass"), options.threshold)
            best_codes += [code for code, _ in ranked_subclasses[:1]]
        return found, best_codes

    def _voted_subclasses(
        self, section: dict[str, float], classes: dict[str, float], similarities: np.ndarray, rows: np.ndarray
    ) -> dict[str, float] | None:
        """For a model without a subclass head: subclasses from the neighbours' votes alone, below the
        answer's classes (or, without a class head, below its sections), so that a main group is never
        more probable than its section; ``None`` where the neighbours voted for nothing."""
        settings = dict(k=self.voting.k, power=self.voting.power, other_weight=self.voting.other_weight)
        _, voted = with_evidence(
            section,
            classes,
            {},
            neighbour_votes(self._patent_codes, similarities, rows, width=3, **settings),
            neighbour_votes(self._patent_codes, similarities, rows, width=4, **settings),
            class_mix=0.0 if classes else 1.0,  # a class head's classes are final here
            subclass_mix=1.0,
        )
        return voted or None

    def _similar(self, similarities: np.ndarray, rows: np.ndarray, count: int = SIMILAR_PATENTS) -> list[SimilarPatent]:
        similar = []
        for similarity, found in zip(similarities[:count], rows[:count]):
            if found < 0:
                continue
            patent = self.index.patents[found]
            codes = patent.codes
            # A compressed index's vectors are not exactly unit length: keep the cosine within [-1, 1].
            cosine = round(min(1.0, max(-1.0, float(similarity))), 6)
            similar.append(SimilarPatent(patent.id, patent.title, codes[0] if codes else "", codes, cosine))
        return similar
