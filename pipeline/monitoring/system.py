"""Machine readings: CPU and memory through psutil, GPUs through NVML where there is a driver."""

from __future__ import annotations

import logging
from typing import Any

import psutil

log = logging.getLogger(__name__)


class SystemSampler:
    def __init__(self, gpu: bool = True):
        self._process = psutil.Process()
        self._gpu = _Gpu() if gpu else None
        psutil.cpu_percent(interval=None)  # the first reading is always 0: prime it

    def read(self) -> dict[str, float]:
        memory = psutil.virtual_memory()
        metrics: dict[str, float] = {
            "cpu_usage_percent": psutil.cpu_percent(interval=None),
            "memory_usage_percent": memory.percent,
            "memory_available_bytes": float(memory.available),
            "process_rss_bytes": float(self._process.memory_info().rss),
            "process_cpu_percent": self._process.cpu_percent(interval=None),
        }
        if self._gpu is not None:
            metrics.update(self._gpu.read())
        return metrics


class _Gpu:
    """GPU readings through NVML; absent driver or GPU means no readings, said once in the log."""

    def __init__(self) -> None:
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as exc:  # NVMLError_LibraryNotFound without a driver, ImportError without the package
            log.debug("GPU monitoring off: %s", exc)

    def read(self) -> dict[str, float]:
        if not self._handles:
            return {}
        used = total = util = 0.0
        for handle in self._handles:
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            used, total = used + memory.used, total + memory.total
            util = max(util, float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        return {
            "gpu_memory_percent": 100.0 * used / total,
            "gpu_utilization_percent": util,
            "gpu_memory_used_bytes": used,
        }
