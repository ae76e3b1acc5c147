"""The OpenVINO engine: the bundle's backbone compiled by OpenVINO for this CPU (bf16 where the CPU has
it), the score layer in torch. On the 2-core EPYC (AVX512-BF16) its forward passes ran 1.2x torch's at
the same labels (probabilities within 0.01; ``bench/cpu_engines.py``): OpenVINO fuses the elementwise
work (norms, casts, rotary) that the eager torch path runs op by op.

The backbone is exported once per bundle (``torch.onnx``, then ``openvino.convert_model``) into
``<cache>/openvino/<model digest>/`` (a minute on a CPU), later loads read it. Everything else (windows,
length-bucketed batches, the heads, the representation for the index and tags) is the torch engine's.
Needs the ``openvino`` extra: ``pip install "patentclf[openvino]"``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from patentclf.inference.engines.torch import TorchEngine, padded_length
from patentclf.model.base import NO_QUANTIZE, cache_dir, supports_bf16
from patentclf.model.bundle import load_bundle, model_digest

MODEL_FILE = "model.xml"


class _Backbone(torch.nn.Module):
    """input_ids and each row's last position in, the hidden state there out (what the heads read)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids, last):
        hidden = self.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
        return hidden[torch.arange(hidden.shape[0]), last]


def _export(model, folder: Path) -> None:
    """The backbone as OpenVINO IR in ``folder``: written in a staging folder of this process's own and
    renamed when whole (another process that published first wins; a failed export leaves nothing)."""
    import openvino as ov

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".partial-"))
    try:
        model.set_attn_implementation("eager")  # exports cleanly; OpenVINO fuses it anyway
        ids = torch.ones((2, 64), dtype=torch.long)
        last = torch.tensor([63, 40])
        batch, length = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("length", min=2, max=8192)
        with torch.inference_mode():
            torch.onnx.export(
                _Backbone(model.model),
                (ids, last),
                str(staging / "backbone.onnx"),
                input_names=["input_ids", "last"],
                output_names=["hidden"],
                dynamic_shapes={"input_ids": {0: batch, 1: length}, "last": {0: batch}},
                dynamo=True,
                external_data=True,
                verbose=False,
            )
        ir = ov.convert_model(str(staging / "backbone.onnx"))
        ov.save_model(ir, str(staging / MODEL_FILE), compress_to_fp16=False)
        for onnx_file in staging.glob("backbone.onnx*"):
            onnx_file.unlink()
        if not (folder / MODEL_FILE).is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a folder without its model: an older failed export
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OpenVinoEngine(TorchEngine):
    """The torch engine's interface, its backbone run by OpenVINO."""

    def __init__(self, model, tokenizer, compiled, *, precision: str):
        super().__init__(model, tokenizer, torch.device("cpu"))
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        # One request runs one inference at a time (OpenVINO refuses a second: REQUEST_BUSY), and the
        # service may embed a tag set's examples while its batcher predicts.
        self._lock = threading.Lock()
        self.precision = precision
        self.model.model = None  # the torch backbone is OpenVINO's now: only the score layer stays here

    @classmethod
    def from_bundle(cls, path: str | Path, *, precision: str = "auto", threads: int | None = None) -> "OpenVinoEngine":
        """The bundle's backbone compiled for this CPU: ``precision`` auto (bf16 where the CPU has native
        bf16), bf16 or fp32; ``threads``: OpenVINO's (default: torch's)."""
        try:
            import openvino as ov
        except ImportError as exc:
            raise ImportError('the OpenVINO engine needs the openvino extra: pip install "patentclf[openvino]"') from exc
        if precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
        use_bf16 = precision == "bf16" or (precision == "auto" and supports_bf16(torch.device("cpu")))
        # Full precision and merged, whatever the bundle was trained with (a QLoRA bundle's base too).
        model, tokenizer, _ = load_bundle(path, dtype=torch.float32, device=torch.device("cpu"), quantize=NO_QUANTIZE)
        if not (hasattr(model, "model") and hasattr(model, "score")):
            raise ValueError("the OpenVINO engine runs decoder classifiers (a backbone and a score layer): use the torch engine")
        folder = cache_dir() / "openvino" / model_digest(path)
        if not (folder / MODEL_FILE).is_file():
            _export(model, folder)
        config = {
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads() or os.cpu_count() or 1),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if use_bf16 else "f32",
        }
        compiled = ov.Core().compile_model(str(folder / MODEL_FILE), "CPU", config)
        return cls(model, tokenizer, compiled, precision="bf16" if use_bf16 else "fp32")

    def forward(self, windows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        # Right padding and causal attention: no real token attends to a pad (as in the torch engine).
        ids = np.zeros((len(windows), padded_length(max(len(w) for w in windows))), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = window
        last = np.asarray([len(w) - 1 for w in windows], dtype=np.int64)
        with self._lock:
            hidden = self.request.infer({"input_ids": ids, "last": last})[self.compiled.output(0)]
            pooled = torch.from_numpy(np.array(hidden, dtype=np.float32))  # a copy: the request's buffer is reused
        return self.model.score(pooled), pooled
