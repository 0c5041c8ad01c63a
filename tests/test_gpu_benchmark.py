"""The GPU benchmark's own code runs (on the CPU, tiny sizes): a GPU session must not find
its one prepared script broken."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_gpu_benchmark_smoke_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(
        ["--smoke", "--device", "cpu", "--families", "vae", "--stages", "peak,families", "--out", str(tmp_path)]
    )
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["peak"]["peak_tflops"] > 0 and report["peak"]["copy_GBps"] > 0
    (row,) = report["families"]
    assert row["family"] == "vae" and row["GFLOP/image"] > 0 and row["images/s"] > 0
