"""Shared helpers for the benchmarks: the machine's description, medians, a side-by-side table."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

# Benchmarks never reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
# The source tree, and the repository root for the tests' harnesses (``from tests.servers import ...``).
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def other_load() -> str:
    """What else runs: the load average and any `patentclf train` besides this process."""
    try:
        found = subprocess.run(["pgrep", "-f", "patentclf train"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        found = []
    others = [p for p in found if int(p) != os.getpid()]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average {load}; other `patentclf train` processes: {len(others) or 'none'}"


def machine() -> str:
    import torch

    from patentclf.model.base import cpu_supports_bf16

    parts = [f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"]
    parts.append(f"CPU bf16: {'yes' if cpu_supports_bf16() else 'no'}")
    if torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    return "; ".join(parts)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def rss_mb() -> float:
    """Current resident set size of this process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def weights_dtype(model) -> str:
    """The dtype a model's weights are stored in, as a short name (``bfloat16``)."""
    return str(next(model.parameters()).dtype).replace("torch.", "")
