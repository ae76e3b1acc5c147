"""bench/cpu_engines.py's arithmetic and its map of Gemma 3 weights to GGUF names (the engines
themselves run in their own venv: the bench, not the tests, measures them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cpu_engines.py"
# The shipped model's base, Gemma 3 270M (its export's config.json).
GEMMA3_270M = {
    "hidden_size": 640,
    "intermediate_size": 2048,
    "head_dim": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "num_hidden_layers": 18,
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("cpu_engines", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_count_the_non_embedding_weights(bench):
    # q 640x1024, k and v 640x256, o 1024x640, gate/up 640x2048, down 2048x640; 18 layers: the
    # ~100.3M non-embedding weights of issue 28.
    assert bench.model_shapes(GEMMA3_270M)[:4] == [(640, 1024), (640, 256), (640, 256), (1024, 640)]
    assert bench.non_embedding_parameters(GEMMA3_270M) == 18 * 5_570_560


def test_every_gemma3_weight_has_its_llama_cpp_name(bench):
    layer = [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "self_attn.q_norm",
        "self_attn.k_norm",
        "input_layernorm",
        "post_attention_layernorm",
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ]
    names = [bench.gguf_name(f"model.layers.3.{part}.weight") for part in layer]
    assert names == [
        "blk.3.attn_q.weight",
        "blk.3.attn_k.weight",
        "blk.3.attn_v.weight",
        "blk.3.attn_output.weight",
        "blk.3.attn_q_norm.weight",
        "blk.3.attn_k_norm.weight",
        "blk.3.attn_norm.weight",
        "blk.3.post_attention_norm.weight",
        "blk.3.ffn_norm.weight",
        "blk.3.post_ffw_norm.weight",
        "blk.3.ffn_gate.weight",
        "blk.3.ffn_up.weight",
        "blk.3.ffn_down.weight",
    ]
    assert bench.gguf_name("model.embed_tokens.weight") == "token_embd.weight"
    assert bench.gguf_name("model.norm.weight") == "output_norm.weight"
    assert bench.gguf_name("score.weight") is None  # applied outside llama.cpp, in numpy


def test_the_rerun_baseline_has_a_file_of_its_own(bench):
    assert bench.stem("torch (again)") == "torch-again"
    assert bench.stem("openvino-bf16") == "openvino-bf16"
