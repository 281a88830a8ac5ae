"""Where and how a tool's result was made (stamped by the tools that write results for docs/)."""

import numpy
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Dict, Optional
import PIL
import torch

from . import REPO

# the versions a result records, by key, with their names for people: what its arithmetic may
# depend on (Pillow decodes the mini data's JPEG images)
VERSIONS = {"torch": "torch", "numpy": "numpy", "pillow": "Pillow", "python": "Python"}


def provenance() -> Dict[str, str]:
    """Where and how a result was made: date, commit, machine, versions, the exact command."""
    commit = subprocess.run(
        ["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        # a copy whose .git is absent or not its own (a container, a synced folder) names its
        # commit in LIFT_DET_COMMIT
        "commit": os.environ.get("LIFT_DET_COMMIT") or commit or "unknown",
        "machine": f"{cpu}, {os.cpu_count()} CPUs, "
        + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
        "cpu_class": cpu_class(),
        "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
    }


def cpu_class() -> Dict[str, Any]:
    """What decides a CPU run's arithmetic besides the versions: the CPU's vendor, family and model
    (``/proc/cpuinfo``), the kernels torch picks for it (``AVX2``, ``AVX512``...) and the CPUs
    it sees. Two machines of one class compute the same bits; a marketing name does not say that."""
    info: Dict[str, str] = {}
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():  # the first processor's entry is enough
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    return {
        "vendor": info.get("vendor_id", platform.machine() or "unknown"),
        "family": info.get("cpu family", "?"),
        "model": info.get("model", "?"),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
    }


def class_name(made: Dict) -> Optional[str]:
    """A result's machine class for file names (its :func:`cpu_class` and versions), or None
    for results that do not record a class (older ones)."""
    c = made.get("cpu_class")
    if not c:
        return None
    stack = " ".join(f"{k} {made.get(k)}" for k in VERSIONS)
    cpu = f"{c['vendor']} family {c['family']} model {c['model']} {c['capability']}"
    return slug(f"{cpu} {c['cpus']} cpus {stack}")


def versions(made: Dict, keys=tuple(VERSIONS)) -> str:
    """``made``'s versions of ``keys`` for people, e.g. 'torch 2.14.1, numpy 1.26.4'; versions
    that ``made`` does not record (older results) are left out."""
    return ", ".join(f"{VERSIONS[k]} {made[k]}" for k in keys if made.get(k))


def slug(name: str) -> str:
    """A file name for a machine or device: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
