"""CPU prediction: patentclf's torch path against the engines a user would pick instead, on the same
rows in one run, with the machine's matmul peak as the yardstick.

    .venv/bin/python bench/cpu_engines.py                      # every engine that installs here
    .venv/bin/python bench/cpu_engines.py --rows 96 --repeats 3 --engines torch,onnxruntime

The engines other than torch live in their own venv (``make engines`` builds ``.venv-engines``:
their pins must not move the project's); ``--engines-python`` names another one.

What it does, in one run:

1. The machine's matmul peak with 2 threads (``--threads``) at the model's shapes (a window batch of
   ~800 tokens through q/k/v/o and gate/up/down), in bf16 and, where the CPU has int8 dot products
   (AVX512-VNNI, AMX), int8 (``torch._int_mm``); fp32 for reference.
2. ``Classifier.predict`` on the rows (the reference answers) and the bundle's merged fp32 export.
3. Each engine in a child process of its own (so start-up and peak RSS are its own), on the same
   token windows in the same length-sorted batches as patentclf's torch path (llama.cpp: the windows
   without padding, as it packs them itself). An engine's first use converts the export once (ONNX,
   OpenVINO IR, GGUF, int8): that one-off cost is its ``convert`` column, apart from ``start`` (the
   child's import, load and first batch). Each child answers the last token's hidden state (what the
   score layer reads); the score layer is applied outside in numpy where the engine has none.
4. The answers: every engine's outputs go through the same ``Classifier`` (TF-IDF blend, calibration,
   the patent index's votes), and are compared with ``Classifier.predict``: the share of the same main
   section, the largest section-probability difference, and the accuracy on the rows' labels.

texts/s counts the model's forward passes only (what differs between engines; tokenizing, TF-IDF and
the index are the same Python for all). FLOP utilisation: 2 x the non-embedding weights x the real
(unpadded) tokens, per second, over the bf16 matmul peak (attention's own ~1% more FLOPs, and the
padding, count as waste). Timings are medians of ``--repeats`` passes after a warm-up batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES_VENV = ROOT / ".venv-engines"
# name: (where it runs: "project" = this venv with patentclf; "engines" = .venv-engines), what it is
ENGINES = {
    "torch": ("project", "patentclf's default: Classifier's TorchEngine, bf16 where native, merged"),
    "torch-compile": ("project", "the same with torch.compile (--compile)"),
    "torchao-int8": ("engines", "torchao int8 dynamic activation (per token) + int8 weight (per channel), eager"),
    "onnxruntime": ("engines", "ONNX Runtime, fp32 (torch.onnx export of the backbone)"),
    "onnxruntime-int8": ("engines", "ONNX Runtime, int8 dynamic quantization (quantize_dynamic, per-channel weights)"),
    "openvino-bf16": ("engines", "OpenVINO CPU, bf16 inference precision (from the ONNX export)"),
    "openvino-int8": ("engines", "OpenVINO CPU, int8 weights and activations (NNCF quantize, SmoothQuant)"),
    "llama.cpp-bf16": ("engines", "llama.cpp (llama-cpp-python), bf16 GGUF, last-token pooling"),
    "llama.cpp-q8_0": ("engines", "llama.cpp (llama-cpp-python), Q8_0 GGUF, last-token pooling"),
}
DEFAULT_ENGINES = ",".join(ENGINES)
# Calibration windows for the int8 engines that need them: the validation split, never the test rows.
CALIBRATION_ROWS = 32


# -- the matmul peak ---------------------------------------------------------------------------------


def model_shapes(config: dict) -> list[tuple[int, int]]:
    """(in, out) of every linear layer of one decoder layer."""
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head = config.get("head_dim") or hidden // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head, config["num_key_value_heads"] * head
    return [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden), (hidden, inter), (hidden, inter), (inter, hidden)]


def matmul_peaks(config: dict, tokens: int = 800, seconds: float = 2.0) -> dict[str, float]:
    """GFLOP/s of one decoder layer's linear layers on ``tokens`` rows, per precision (best of runs)."""
    import torch

    shapes = model_shapes(config)
    flops = sum(2 * tokens * k * n for k, n in shapes)
    peaks: dict[str, float] = {}

    def measure(run) -> float:
        run()
        best, spent = float("inf"), 0.0
        while spent < seconds:
            start = time.perf_counter()
            run()
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
        return flops / best / 1e9

    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        xs = [torch.randn(tokens, k, dtype=dtype) for k, _ in shapes]
        ws = [torch.randn(n, k, dtype=dtype) for k, n in shapes]
        with torch.inference_mode():
            peaks[name] = measure(lambda: [torch.nn.functional.linear(x, w) for x, w in zip(xs, ws)])
    if int8_dot_products():
        xs = [torch.randint(-127, 127, (tokens, k), dtype=torch.int8) for k, _ in shapes]
        ws = [torch.randint(-127, 127, (k, n), dtype=torch.int8) for k, n in shapes]
        try:
            with torch.inference_mode():
                peaks["int8"] = measure(lambda: [torch._int_mm(x, w) for x, w in zip(xs, ws)])
        except RuntimeError as exc:  # no CPU kernel in this torch
            print(f"int8 matmul: {exc}")
    return peaks


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_dot_products() -> bool:
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def non_embedding_parameters(config: dict) -> int:
    return config["num_hidden_layers"] * sum(k * n for k, n in model_shapes(config))


# -- the child: one engine -----------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    """Run one engine on the job's windows; write its hidden states, logits and timings."""
    spawned = float(os.environ["CPU_ENGINES_SPAWNED"])
    job = json.loads(Path(args.job).read_text())
    threads = job["threads"]
    work = Path(job["work"])
    result: dict = {"engine": args.worker}
    try:
        converted_s, load = ENGINE_LOADERS[args.worker](job, work, threads)
        windows, batches = job["windows"], job["batches"]
        if args.worker.startswith("llama.cpp"):
            batches = [list(range(len(windows)))]  # llama.cpp packs the windows itself
        forward = load()
        forward([windows[i] for i in batches[0][:2]])  # the first call: kernels picked, caches filled
        result["start_s"] = time.time() - spawned - converted_s
        result["convert_s"] = converted_s
        passes = []
        hidden = None
        for _ in range(job["repeats"]):
            outputs: list = [None] * len(windows)
            start = time.perf_counter()
            for batch in batches:
                for index, row in zip(batch, forward([windows[i] for i in batch])):
                    outputs[index] = row
            passes.append(time.perf_counter() - start)
            hidden = outputs
        result["passes_s"] = passes
        result["rss_mb"] = peak_rss_mb()
        import numpy as np

        first = hidden[0]
        if isinstance(first, tuple):  # (logits, hidden) from an engine with the score layer
            logits = np.stack([h[0] for h in hidden]).astype(np.float32)
            states = np.stack([h[1] for h in hidden]).astype(np.float32)
        else:
            states = np.stack(hidden).astype(np.float32)
            logits = states @ score_weight(job["export"]).T
        np.savez(args.out + ".npz", logits=logits, hidden=states)
    except Exception as exc:  # noqa: BLE001 - the parent reports any engine's failure as its reason
        result["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
        traceback.print_exc()
    Path(args.out + ".json").write_text(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM (getrusage's ru_maxrss survives exec, so a child would
    report its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_weight(export: str):
    from safetensors.numpy import load_file

    return load_file(str(Path(export) / "model.safetensors"))["score.weight"].astype("float32")


def timed_once(path: Path, make) -> float:
    """Make ``path`` with ``make()`` unless it is there; the seconds it took (0 when it was there)."""
    if path.exists():
        return 0.0
    start = time.perf_counter()
    make()
    return time.perf_counter() - start


def load_torch(job: dict, work: Path, threads: int, *, compile: bool = False):
    import torch

    torch.set_num_threads(threads)
    from patentclf.inference.engines.torch import TorchEngine

    def load():
        engine = TorchEngine.from_bundle(job["bundle"], device="cpu", compile=compile)
        if compile:  # the shapes of the warm-up (Classifier.warm_up): sizes 1 and 2 compile apart
            for rows in (1, 2):
                engine.logits([job["windows"][0][:2]] * rows)

        def forward(windows):
            logits, hidden = engine.outputs_of(windows)
            return list(zip(logits, hidden))

        return forward

    return 0.0, load


def load_torchao(job: dict, work: Path, threads: int):
    import torch

    torch.set_num_threads(threads)

    def load():
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            job["export"], dtype=torch.bfloat16, attn_implementation="eager"
        ).eval()
        # Eager: compiled (torchao's advice) it took 700 s to start on the 2-core dev machine and ran
        # slower still, recompiling for new shapes.
        quantize_(model.model, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
        backbone = model.model
        return padded_forward(lambda ids: backbone(input_ids=ids, use_cache=False).last_hidden_state, torch)

    return 0.0, load


def padded_forward(run, torch):
    """A forward(windows) over right-padded ids (a multiple of 32, as patentclf pads), read at each
    row's last real token; causal attention, so no real token sees a pad and no mask is needed."""

    def forward(windows):
        width = -(-max(len(w) for w in windows) // 32) * 32
        ids = torch.zeros((len(windows), width), dtype=torch.long)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = torch.tensor(window)
        with torch.inference_mode():
            hidden = run(ids)
            last = torch.tensor([len(w) - 1 for w in windows])
            return list(hidden[torch.arange(len(windows)), last].float().numpy())

    return forward


def onnx_export(job: dict, work: Path) -> Path:
    """The merged export's backbone as ONNX (fp32): input_ids and each row's last position in, the
    hidden state there out."""
    path = work / "onnx" / "model.onnx"

    def make():
        import torch
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            job["export"], dtype=torch.float32, attn_implementation="eager"
        ).eval()

        class Backbone(torch.nn.Module):
            def __init__(self, backbone):
                super().__init__()
                self.backbone = backbone

            def forward(self, input_ids, last):
                hidden = self.backbone(input_ids=input_ids, use_cache=False).last_hidden_state
                return hidden[torch.arange(hidden.shape[0]), last]

        path.parent.mkdir(parents=True, exist_ok=True)
        ids = torch.tensor([(job["windows"][0] * 64)[:64], (job["windows"][1] * 64)[:64]])
        last = torch.tensor([63, 40])
        batch, length = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("length", min=2, max=4096)
        with torch.inference_mode():
            torch.onnx.export(
                Backbone(model.model),
                (ids, last),
                str(path),
                input_names=["input_ids", "last"],
                output_names=["hidden"],
                dynamic_shapes={"input_ids": {0: batch, 1: length}, "last": {0: batch}},
                dynamo=True,
                external_data=True,
            )

    return path, make


def padded_numpy(windows):
    import numpy as np

    width = -(-max(len(w) for w in windows) // 32) * 32
    ids = np.zeros((len(windows), width), dtype=np.int64)
    for row, window in enumerate(windows):
        ids[row, : len(window)] = window
    return ids, np.asarray([len(w) - 1 for w in windows], dtype=np.int64)


def load_onnxruntime(job: dict, work: Path, threads: int, *, int8: bool = False):
    source, make = onnx_export(job, work)
    converted = timed_once(source, make)
    path = source
    if int8:
        path = work / "onnx-int8" / "model.onnx"

        def quantize():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path.parent.mkdir(parents=True, exist_ok=True)
            quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=True)

        converted += timed_once(path, quantize)

    def load():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def forward(windows):
            ids, last = padded_numpy(windows)
            return list(session.run(["hidden"], {"input_ids": ids, "last": last})[0])

        return forward

    return converted, load


def load_openvino(job: dict, work: Path, threads: int, *, int8: bool = False):
    source, make = onnx_export(job, work)
    converted = timed_once(source, make)
    path = work / ("openvino-int8" if int8 else "openvino") / "model.xml"

    def convert():
        import openvino as ov

        model = ov.convert_model(str(source))
        if int8:
            import nncf

            calibration = [dict(zip(("input_ids", "last"), padded_numpy([w]))) for w in job["calibration"]]
            model = nncf.quantize(
                model,
                nncf.Dataset(calibration),
                model_type=nncf.ModelType.TRANSFORMER,
                subset_size=len(calibration),
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(path), compress_to_fp16=False)

    converted += timed_once(path, convert)

    def load():
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16"}
        compiled = core.compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()

        def forward(windows):
            ids, last = padded_numpy(windows)
            return list(request.infer({"input_ids": ids, "last": last})[compiled.output(0)].copy())

        return forward

    return converted, load


def load_llama_cpp(job: dict, work: Path, threads: int, *, kind: str = "bf16"):
    path = work / f"gguf/model-{kind}.gguf"
    converted = timed_once(path, lambda: write_gguf(job, path, kind))

    def load():
        import llama_cpp
        import numpy as np

        # One decode holds up to 2048 tokens of several windows; each ubatch of 512 attends within
        # itself under a mask (the cost of packing rows without padding).
        model = llama_cpp.Llama(
            str(path),
            embedding=True,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_LAST,
            n_ctx=2048,
            n_batch=2048,
            n_ubatch=512,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        size = model.n_embd()

        def decode(group: list[list[int]]) -> list:
            model._ctx.kv_cache_clear()
            model._batch.reset()
            for seq, window in enumerate(group):
                model._batch.add_sequence(window, seq, True)
            model._ctx.decode(model._batch)
            rows = [
                np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_seq(model._ctx.ctx, seq), (size,)).copy()
                for seq in range(len(group))
            ]
            return rows

        def forward(windows):
            out, group, used = [], [], 0
            for window in windows:
                if group and used + len(window) > 2048:
                    out += decode(group)
                    group, used = [], 0
                group.append(window)
                used += len(window)
            return out + decode(group)

        return forward

    return converted, load


def np_array(row):
    import numpy as np

    return np.asarray(row, dtype=np.float32)


def write_gguf(job: dict, path: Path, kind: str) -> None:
    """A GGUF of the merged model: the base's own GGUF (the file the embedded base came from) with
    its metadata and tokenizer, and the merged weights in place of its Q4_K_M ones."""
    write_merged_gguf(job["export"], job["base_gguf"], path, kind)


# HF Gemma 3 names -> GGUF names (llama.cpp's gemma3 graph); norms are stored as 1 + w in GGUF.
GGUF_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf_name: str) -> str | None:
    """The GGUF tensor name of a Gemma 3 weight (``None``: not in the GGUF, like the score layer)."""
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    parts = hf_name.split(".")
    if parts[:2] != ["model", "layers"] or parts[-1] != "weight":
        return None
    return f"blk.{parts[2]}.{GGUF_LAYER_NAMES['.'.join(parts[3:-1])]}.weight"


def write_merged_gguf(export: str, base_gguf: str, path: Path, kind: str) -> None:
    """A GGUF of the merged export: the base GGUF's metadata and tokenizer (its architecture, sizes
    and vocabulary are the export's), the export's weights in ``kind`` (bf16 | q8_0; norms f32)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    if base_gguf is None:
        raise RuntimeError("the bundle's base is not an embedded GGUF model: no metadata to write a GGUF from")
    reader = gguf.GGUFReader(base_gguf)
    architecture = reader.fields["general.architecture"].contents()
    if architecture != "gemma3":
        raise RuntimeError(f"only Gemma 3 bases are mapped to GGUF here, not {architecture}")
    weights = load_file(str(Path(export) / "model.safetensors"))
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(partial), architecture)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue
        kind_of = field.types[0]
        sub = field.types[1] if kind_of == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), kind_of, sub_type=sub)
    target = {"bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[kind]
    for hf_name, array in weights.items():
        name = gguf_name(hf_name)
        if name is None:
            continue
        array = array.astype(np.float32)
        if array.ndim == 1:  # RMSNorm scales: Gemma computes x * (1 + w); llama.cpp stores 1 + w
            writer.add_tensor(name, array + 1.0)
            continue
        data = gguf.quants.quantize(array, target)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.rename(path)


ENGINE_LOADERS = {
    "torch": load_torch,
    "torch-compile": lambda job, work, threads: load_torch(job, work, threads, compile=True),
    "torchao-int8": load_torchao,
    "onnxruntime": load_onnxruntime,
    "onnxruntime-int8": lambda job, work, threads: load_onnxruntime(job, work, threads, int8=True),
    "openvino-bf16": load_openvino,
    "openvino-int8": lambda job, work, threads: load_openvino(job, work, threads, int8=True),
    "llama.cpp-bf16": lambda job, work, threads: load_llama_cpp(job, work, threads, kind="bf16"),
    "llama.cpp-q8_0": lambda job, work, threads: load_llama_cpp(job, work, threads, kind="q8_0"),
}


# -- the parent ------------------------------------------------------------------------------------------


def thread_env(threads: int) -> dict[str, str]:
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_NUM_THREADS")
    return {**os.environ, **{name: str(threads) for name in names}, "TOKENIZERS_PARALLELISM": "false"}


def run_engine(name: str, python: Path, job_path: Path, out: Path, threads: int, timeout: float) -> dict:
    env = thread_env(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "bench"), env.get("PYTHONPATH", "")])
    env["CPU_ENGINES_SPAWNED"] = repr(time.time())
    log = out.with_suffix(".log")
    command = [str(python), str(Path(__file__).resolve()), "--worker", name, "--job", str(job_path), "--out", str(out)]
    try:
        with open(log, "wb") as sink:
            subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"engine": name, "error": f"took over {timeout:.0f} s"}
    result_file = Path(str(out) + ".json")
    if not result_file.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        return {"engine": name, "error": f"the child died: {tail[0][:200] if tail else 'no output'}"}
    return json.loads(result_file.read_text())


def missing_package(name: str, python: Path | None) -> str | None:
    """Why an engine cannot run here (``None`` where it can)."""
    where, _ = ENGINES[name]
    if where == "project":
        return None
    if python is None:
        return f"no engines venv ({ENGINES_VENV}; `make engines` builds it)"
    module = {
        "torchao": "torchao",
        "onnxruntime": "onnxruntime",
        "openvino": "nncf" if name.endswith("int8") else "openvino",
        "llama.cpp": "llama_cpp",
    }[name.split("-")[0]]
    needed = [module] + (["onnxscript"] if name.split("-")[0] in ("onnxruntime", "openvino") else [])
    for package in needed:
        found = subprocess.run([str(python), "-c", f"import {package}"], capture_output=True, text=True)
        if found.returncode != 0:
            last = found.stderr.strip().splitlines()[-1:] or ["?"]
            return f"`import {package}` fails in {python}: {last[0][:160]}"
    return None


def stem(name: str) -> str:
    """The file name of an engine's outputs (``torch (again)``: ``torch-again``)."""
    return name.replace(" (again)", "-again")


class ReplayEngine:
    """An engine that answers from one engine child's outputs, so the same Classifier (TF-IDF,
    calibration, the index's votes) turns every engine's outputs into answers."""

    def __init__(self, reference, windows: list[list[int]], logits, hidden):
        from patentclf.inference.engines.torch import TorchEngine

        self.tokenizer = reference.tokenizer
        self.device = "replay"
        self.default_batch_size, self.batch_tokens = reference.default_batch_size, reference.batch_tokens
        self._batches = TorchEngine.batches.__get__(self)
        self.probabilities = TorchEngine.probabilities
        self.table = {tuple(w): (logits[i], hidden[i]) for i, w in enumerate(windows)}

    def batches(self, lengths, batch_size=None):
        return self._batches(lengths, batch_size)

    def outputs_of(self, windows):
        import numpy as np

        rows = [self.table[tuple(w)] for w in windows]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def logits(self, windows):
        return self.outputs_of(windows)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="bundled test rows (stratified)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per engine (median)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every engine and the peak")
    parser.add_argument("--engines", default=DEFAULT_ENGINES, help=f"comma-separated, of: {DEFAULT_ENGINES}")
    parser.add_argument("--engines-python", type=Path, default=ENGINES_VENV / "bin" / "python")
    parser.add_argument("--model", type=Path, default=None, help="bundle (default: the shipped model)")
    parser.add_argument("--work", type=Path, default=None, help="keep conversions here (default: a temp folder)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds an engine child may take")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    for name in os.environ.keys() & {"OMP_NUM_THREADS"}:
        if os.environ[name] != str(args.threads):
            print(f"note: {name}={os.environ[name]} in the environment; children get {args.threads}")
    os.environ.update(thread_env(args.threads))
    chosen = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown:
        sys.exit(f"unknown engines {unknown}; known: {DEFAULT_ENGINES}")
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        measure(args, chosen, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="cpu-engines-") as work:
            measure(args, chosen, Path(work))


def measure(args: argparse.Namespace, chosen: list[str], work: Path) -> None:
    import common  # noqa: F401  (offline, the source tree on the path)
    import numpy as np
    import torch
    from common import machine, median, other_load, table

    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.corpus.labels import CODES
    from patentclf.inference.classifier import Classifier
    from patentclf.model.base import EMBEDDED_MODELS, _gguf_path
    from patentclf.model.bundle import default_model_dir, read_info
    from patentclf.model.windows import make_windows
    from patentclf.training.export import export_merged

    torch.set_num_threads(args.threads)
    bundle = args.model or default_model_dir()
    split = stratified_subset(load_split("bundled", "test"), args.rows, seed=0)
    texts, labels = split.texts, split.labels
    print(f"machine: {machine()}")
    print(f"at start: {other_load()}")
    print(f"model: {bundle}; {len(texts)} bundled test rows; {args.threads} threads everywhere")

    export = work / "export"
    if not (export / "config.json").is_file():
        export_merged(bundle, export, dtype="float32")
    config = json.loads((export / "config.json").read_text())
    peaks = matmul_peaks(config)
    print(
        "matmul peak, one decoder layer's linear layers on 800 tokens: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items())
    )

    reference = Classifier.load(bundle, device="cpu")
    reference.predict(texts[:4])  # warm-up
    start = time.perf_counter()
    expected = reference.predict(texts)
    predict_s = time.perf_counter() - start
    info = read_info(bundle)
    windows = make_windows(reference.tokenizer, texts, info.max_length, normalize=info.normalized, chunk=False).ids
    batches = reference.engine.batches([len(w) for w in windows])
    calibration_texts = stratified_subset(load_split("bundled", "validation"), CALIBRATION_ROWS, seed=1).texts
    calibration = make_windows(
        reference.tokenizer, calibration_texts, info.max_length, normalize=info.normalized, chunk=False
    ).ids
    tokens = sum(len(w) for w in windows)
    padded = sum(len(b) * (-(-max(len(windows[i]) for i in b) // 32) * 32) for b in batches)
    flops_per_pass = 2 * non_embedding_parameters(config) * tokens
    print(
        f"{tokens} tokens ({tokens / len(windows):.0f} a row), {padded} with padding ({padded / tokens - 1:.0%} more) in "
        f"{len(batches)} batches; {flops_per_pass / len(windows) / 1e9:.1f} GFLOP a row"
    )
    base = EMBEDDED_MODELS.get(info.base_model)
    job = {
        "bundle": str(bundle),
        "export": str(export),
        "base_gguf": str(_gguf_path(base)) if base else None,
        "windows": windows,
        "batches": batches,
        "calibration": calibration,
        "repeats": args.repeats,
        "threads": args.threads,
        "work": str(work),
    }
    job_path = work / "job.json"
    job_path.write_text(json.dumps(job))
    python = args.engines_python if args.engines_python.is_file() else None

    results: dict[str, dict] = {}
    # The baseline again at the end, when other engines ran between: how far the machine drifted.
    if "torch" in chosen and len(chosen) > 2:
        chosen = [*chosen, "torch (again)"]
    for name in chosen:
        engine = name.removesuffix(" (again)")
        reason = missing_package(engine, python)
        if reason:
            results[name] = {"engine": name, "error": reason}
            print(f"{name}: cannot run: {reason}", flush=True)
            continue
        where, _ = ENGINES[engine]
        started = time.perf_counter()
        result = run_engine(
            engine,
            Path(sys.executable) if where == "project" else python,
            job_path,
            work / stem(name),
            args.threads,
            args.timeout,
        )
        results[name] = result
        if "error" in result:
            print(f"{name}: failed: {result['error']} (see {work / stem(name)}.log)", flush=True)
        else:
            rate = len(windows) / median(result["passes_s"])
            print(f"{name}: {rate:.2f} texts/s ({time.perf_counter() - started:.0f} s in all)", flush=True)
    print(f"at end: {other_load()}")
    # The peak again: on a shared machine the best of the two is the nearer to the machine's own.
    again = matmul_peaks(config)
    peaks = {k: max(v, again.get(k, 0.0)) for k, v in peaks.items()}

    def answers(name: str) -> list | None:
        saved = work / f"{stem(name)}.npz"
        if not saved.is_file():
            return None
        data = np.load(saved)
        replay = ReplayEngine(reference.engine, windows, data["logits"], data["hidden"])
        classifier = Classifier(replay, reference.info, version=reference.version, path=reference.path, index=reference.index)
        return classifier.predict(texts)

    def accuracy(predictions) -> float:
        return sum(p.label_id == y for p, y in zip(predictions, labels)) / len(labels)

    base_rate = None
    if "torch" in results and "passes_s" in results["torch"]:
        base_rate = len(windows) / median(results["torch"]["passes_s"])
    rows = []
    for name in chosen:
        result = results[name]
        if "error" in result:
            rows.append([name, "-", "-", "-", "-", "-", "-", "-", "-", "-", f"cannot run: {result['error']}"])
            continue
        rate = len(windows) / median(result["passes_s"])
        predicted = answers(name)
        same = sum(a.label == b.label for a, b in zip(predicted, expected)) / len(texts)
        gap = max(abs(a.probabilities[c] - b.probabilities[c]) for a, b in zip(predicted, expected) for c in CODES)
        gflops = flops_per_pass / median(result["passes_s"]) / 1e9
        rows.append(
            [
                name,
                f"{rate:.2f}",
                f"{rate / base_rate:.2f}x" if base_rate else "-",
                f"{gflops / peaks['bf16']:.0%}",
                f"{same:.1%}",
                f"{gap:.4f}",
                f"{accuracy(predicted):.1%}",
                f"{result['start_s']:.1f}",
                f"{result['convert_s']:.0f}" if result["convert_s"] else "-",
                f"{result['rss_mb']:.0f}",
                ENGINES[name.removesuffix(" (again)")][1]
                + (", run last: the machine's drift" if name.endswith("(again)") else ""),
            ]
        )
    print()
    print(
        f"{len(texts)} bundled test rows ({tokens} tokens), {args.threads} threads, median of {args.repeats} passes "
        f"after a warm-up; the model's forward passes only. Classifier.predict end to end (torch, with "
        f"tokenizing, TF-IDF, calibration and the index): {len(texts) / predict_s:.2f} texts/s, accuracy {accuracy(expected):.1%}."
    )
    print("matmul peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    headers = [
        "engine",
        "texts/s",
        "vs torch",
        "of bf16 peak",
        "same label",
        "max prob diff",
        "accuracy",
        "start s",
        "convert s",
        "peak RSS MB",
        "what",
    ]
    print(table(headers, rows))
    summary = {name: {k: v for k, v in r.items() if k != "engine"} for name, r in results.items()}
    (work / "results.json").write_text(json.dumps({"peaks": peaks, "engines": summary}, indent=1))


if __name__ == "__main__":
    main()
