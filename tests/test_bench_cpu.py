"""The CPU benchmarks run end to end on the tiny model and print their side-by-side tables.

They are smoke tests of the scripts (arguments, the shared training/prediction code they reuse, the
report), not timings: speed belongs in the benchmarks' own output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_row(output: str, name: str) -> list[str]:
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in:\n{output}")


def test_predict_speed_bench_compares_the_classifier_with_the_one_at_a_time_loop(tiny_bundle):
    out = run_bench("predict_speed.py", "--model", tiny_bundle, "--rows", 9, "--repeats", 1, "--no-compile")
    assert table_row(out, "baseline")[-1] == "1.00x"
    new = table_row(out, "new: Classifier.predict")
    assert float(new[-2]) > 0 and new[-1].endswith("x")
    assert "same label as the baseline on" in out


def test_train_speed_bench_trains_each_path_and_reports_padding(tiny_base_model):
    out = run_bench("train_speed.py", "--base-model", tiny_base_model, "--rows", 16, "--repeats", 1, "--max-length", 64)
    baseline, new = table_row(out, "baseline"), table_row(out, "new")
    assert baseline[1] == "fp32" and baseline[-1] == "1.00x"
    assert baseline[6].startswith("64 ")  # the original recipe pads every row to the maximum
    assert int(new[6].split()[0]) <= 64
    assert "over the whole bundled train split" in out


def test_memory_bench_measures_training_and_serving_in_child_processes(tiny_bundle, tiny_base_model):
    out = run_bench("memory.py", "--model", tiny_bundle, "--base-model", tiny_base_model, "--steps", 1, "--rows", 4)
    for name in ("train baseline", "train new", "serve"):
        assert float(table_row(out, name)[3]) > 100  # peak RSS in MB: at least torch itself


def test_soak_script_parses_its_arguments():
    # Only its arguments: the soak itself runs for minutes (see bench/README.md).
    assert "--minutes" in run_bench("soak.py", "--help")
    refused = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), "--minutes", "0"], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2 and "--minutes must be > 0" in refused.stderr


def test_shape_memory_bench_runs_both_paddings_and_counts_their_shapes(tiny_bundle):
    out = run_bench("shape_memory.py", "--model", tiny_bundle, "--batches", 8)
    before = table_row(out, "padded to the longest row (before)")
    now = table_row(out, "padded to a multiple of 32 (now)")
    assert int(now[-1]) <= int(before[-1])  # rounded lengths never make more shapes
    assert float(now[-2]) > 0 and "speed now/before" in out


def test_ensemble_ablation_bench_shows_each_part_of_the_answer(tiny_hierarchy_bundle):
    out = run_bench("ensemble_ablation.py", "--model", tiny_hierarchy_bundle, "--limit", 30)
    for name in ("LLM alone, raw softmax", "TF-IDF alone", "pooled with the class / subclass heads"):
        accuracy = float(table_row(out, name)[1])
        assert 0.0 <= accuracy <= 1.0
    assert table_row(out, "sections stack (shipped)")[2] != ""
    assert "everything after it (TF-IDF, pool, map, stack)" in out


def test_busy_machine_bench_times_each_openmp_setting(tiny_bundle):
    out = run_bench("busy_machine.py", "--model", tiny_bundle, "--rows", 16, "--runs", 1, "--busy", 0)
    rows = [line for line in out.splitlines() if line.startswith("| 0 ")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]
    assert len(cells) == 6 and all(float(c[4].split()[0]) > 0 for c in cells)
    spins = {c[1]: c[2] for c in cells}  # what the timed process itself saw
    assert spins["libgomp default"] == "300000" and spins["patentclf default (spin 1000)"] == "1000"
    assert {c[3] for c in cells if c[1] == "1 thread"} == {"1"}
