"""Resident memory at stage boundaries, framework-free (issue 18).

tracemalloc sees neither torch's nor TensorFlow's buffers, so the port reads
the kernel's figures instead: the current resident set (VmRSS in
/proc/self/status) and the peak so far (getrusage(RUSAGE_SELF).ru_maxrss).
`MemoryLog.mark(stage)` records both, MiB; with KTP_MEMORY_TRACE=1 in the
environment it also prints them to stderr as they happen (a run the kernel
kills still shows how far it got).
"""

from __future__ import annotations

import gc
import os
import resource
import sys

__all__ = ["MemoryLog", "rss_mib", "peak_rss_mib", "release", "available_mib", "export_memory_refusal",
           "TF2ONNX_BYTES_PER_PARAMETER", "ONNX_EXPORT_BUDGET_MIB"]

TRACE_ENV = "KTP_MEMORY_TRACE"  # set to 1: print each stage's figures to stderr
_KIB_PER_MIB = 1024
_BYTES_PER_MIB = 1024 * 1024


def rss_mib() -> float:
    """This process' current resident set size, MiB (None-safe: 0.0 where /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / _KIB_PER_MIB
    except OSError:
        pass
    return 0.0


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size so far, MiB, of this process (RUSAGE_SELF) or of
    its largest waited-for child (RUSAGE_CHILDREN); ru_maxrss is KiB on Linux, bytes on macOS."""
    rss = resource.getrusage(who).ru_maxrss
    return rss / _BYTES_PER_MIB if sys.platform == "darwin" else rss / _KIB_PER_MIB


# tf2onnx's in-process export of a Keras model (keras_impl/export.py) needs
# more than 13.5 GiB for VGG11-BN's 132.9M parameters: a fresh process that
# only built the float32 model and exported it was killed by the watchdog at
# 13.5 GiB (issue 18, 2026-12-03): over 109 bytes per parameter (its graph
# freezing copies every weight into constants several times over).
TF2ONNX_BYTES_PER_PARAMETER = 109
# The most an ONNX export may be expected to need: issue 18's target for the
# whole `compare.py port` process (8 GiB), which an export alone must not pass.
ONNX_EXPORT_BUDGET_MIB = 8192


def available_mib() -> float | None:
    """MemAvailable in /proc/meminfo, MiB; None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / _KIB_PER_MIB
    except OSError:
        pass
    return None


def export_memory_refusal(exporter: str, parameters: int, bytes_per_parameter: float,
                          budget_mib: float = ONNX_EXPORT_BUDGET_MIB, available: float | None = None) -> str | None:
    """Why an export of `parameters` parameters must not run (its estimated
    need, parameters x bytes_per_parameter, is over the budget or over the
    memory available, MiB), or None when it may run."""
    need = parameters * bytes_per_parameter / _BYTES_PER_MIB
    limits = [(budget_mib, "the export budget")] + ([(available, "MemAvailable")] if available is not None else [])
    limit, name = min(limits, key=lambda x: x[0])
    if need <= limit:
        return None
    return (f"not run: {exporter} needs about {need / 1024:.1f} GiB for {parameters / 1e6:.1f}M parameters "
            f"({bytes_per_parameter:g} bytes/parameter, measured on VGG11-BN), over {name} "
            f"({limit / 1024:.1f} GiB; shared/core/memory.py)")


def _libc_trim():
    """glibc's malloc_trim, or None (another C library, another system)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _libc_trim()


def release() -> None:
    """Collect now, then hand freed heap pages back to the system.

    The big arrays of a finished stage sit in reference cycles (Keras layers,
    torch modules) that would otherwise wait for a later collection; once
    freed, glibc keeps the pages of its arenas (TensorFlow's and torch's
    tensors below its mmap threshold live there) and the RSS stays high until
    malloc_trim(0) returns them."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


class MemoryLog:
    """{stage: {"rss": current MiB, "peak": peak MiB so far, "child_peak": the
    largest child process' peak (the fresh-process reload), MiB}}, in stage order."""

    def __init__(self):
        self.stages: dict = {}
        self._trace = os.environ.get(TRACE_ENV, "") not in ("", "0")

    def mark(self, stage: str) -> None:
        row = {"rss": round(rss_mib(), 1), "peak": round(peak_rss_mib(), 1),
               "child_peak": round(peak_rss_mib(resource.RUSAGE_CHILDREN), 1)}
        self.stages[stage] = row
        if self._trace:
            print(f"[memory] {stage:28s} rss {row['rss']:9.1f} MiB  peak {row['peak']:9.1f} MiB  child peak {row['child_peak']:7.1f} MiB", file=sys.stderr, flush=True)
