#!/usr/bin/env python3
"""Print "gpu" if nvidia-smi lists a GPU that MXNet 1.9.1 (mxnet-cu112) can use, else "cpu".

`make install` runs this with the system python3, before the venv exists, to choose
requirements/gpu.txt or requirements/cpu.txt; the reason goes to stderr. It loads
bnexp/runtime/gpu.py by path (standard library only) without importing the bnexp package.
"""
import importlib.util
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "bnexp" / "runtime" / "gpu.py"

spec = importlib.util.spec_from_file_location("bnexp_gpu_detect", SOURCE)
gpu = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = gpu  # dataclasses look the module up while the class is built
spec.loader.exec_module(gpu)

if __name__ == "__main__":
    sys.exit(gpu.main(sys.argv[1:] or ["detect"]))
