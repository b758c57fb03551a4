"""What this machine has: GPUs through NVML (pynvml, from nvidia-ml-py), RAM and CPU through psutil.

The app talks to NVML only through `NvmlSource` (four calls), so tests and screenshots can swap in
fake cards with realistic numbers. No GPU, no driver or no library is a normal answer
(`Hardware.gpus == []` with `nvml_error` saying why), never an exception.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .config import DistributedConfig

GIB = 1024 ** 3


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    total_gib: float
    free_gib: float
    compute_capability: tuple[int, int] = (0, 0)
    util_pct: int | None = None
    temp_c: int | None = None

    @property
    def used_gib(self) -> float:
        return round(self.total_gib - self.free_gib, 2)

    @property
    def bf16(self) -> bool:
        return self.compute_capability >= (8, 0)  # Ampere and newer


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[GPU, ...] = ()
    ram_total_gib: float = 0.0
    ram_available_gib: float = 0.0
    cpu_count: int = 1
    cpu_name: str = ""
    driver: str | None = None
    nvml_error: str | None = None

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def summary(self) -> str:
        if not self.gpus:
            return (f"CPU only ({self.cpu_count} cores, {self.ram_total_gib:.0f} GB RAM)"
                    + (f": {self.nvml_error}" if self.nvml_error else ""))
        names = {g.name for g in self.gpus}
        name = names.pop() if len(names) == 1 else "mixed GPUs"
        free = sum(g.free_gib for g in self.gpus)
        total = sum(g.total_gib for g in self.gpus)
        return f"{len(self.gpus)}x {name} · {free:.1f} / {total:.1f} GB free"


def run_gpus(hw: Hardware | None, dist: "DistributedConfig | None" = None) -> tuple[GPU, ...]:
    """The GPUs a run started on this machine trains on (empty: the CPU), following the config's
    `distributed` section (None: its defaults). One process per card: distributed.gpus [i, j] takes
    those cards (the hardware step's choice; the launcher makes them the only visible ones, see
    `cuda_env`); auto takes the cards CUDA_VISIBLE_DEVICES names (NVML lists every card, whatever that
    variable says), else every card; then nproc_per_node N takes the first N; strategy none the first
    card only. Every figure the wizard shows (memory per card, effective batch, steps per epoch) is
    for these cards."""
    if hw is None or not hw.gpus:
        return ()
    from .config import DistributedConfig

    dist = dist or DistributedConfig()
    gpus = hw.gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if isinstance(dist.gpus, list):
        by_index = {g.index: g for g in gpus}
        gpus = tuple(by_index[i] for i in dist.gpus if i in by_index)
    elif visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        if all(v.isdigit() for v in wanted):
            gpus = tuple(g for g in gpus if str(g.index) in wanted)
    if dist.strategy == "none":
        return gpus[:1]
    if isinstance(dist.nproc_per_node, int):
        return gpus[:dist.nproc_per_node]
    return gpus


def check_gpus(hw: Hardware, dist: "DistributedConfig", gpu: bool) -> None:
    """distributed.gpus names cards this machine has (and the run trains on GPUs), else a one-line error."""
    if not isinstance(dist.gpus, list):
        return
    from .errors import UserError

    if not gpu or not hw.gpus:
        raise UserError(f"names cards {dist.gpus} but this run trains on the CPU (no NVIDIA GPU here, or "
                        "train.device: cpu): set it to auto", field="distributed.gpus")
    have = {g.index for g in hw.gpus}
    missing = [i for i in dist.gpus if i not in have]
    if missing:
        raise UserError(f"names card {missing[0]} but this machine has cards {sorted(have)}",
                        field="distributed.gpus")


def cuda_env(dist: "DistributedConfig") -> dict[str, str]:
    """What the training processes' environment needs for distributed.gpus: CUDA_VISIBLE_DEVICES naming
    the chosen cards, numbered as NVML (and nvidia-smi) number them: PCI bus order, which CUDA uses only
    when CUDA_DEVICE_ORDER says so (its own default puts the fastest card first). For auto, only that
    order (unless the environment sets one): CUDA_VISIBLE_DEVICES as the user set it then means the
    cards `run_gpus` counted, and the trainer's device i is card i of the monitor's meters."""
    order = {"CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")}
    if not isinstance(dist.gpus, list):
        return order
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in dist.gpus), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def run_world_size(hw: Hardware | None, dist: "DistributedConfig | None" = None) -> int:
    """How many processes train together in a run started from this machine: processes per node
    (one per card of `run_gpus`; on a CPU 1 unless nproc_per_node says N) times distributed.nnodes."""
    from .config import DistributedConfig

    dist = dist or DistributedConfig()
    if dist.strategy == "none":
        return 1
    if hw is not None and hw.gpus:
        per_node = len(run_gpus(hw, dist)) or 1
    else:
        per_node = dist.nproc_per_node if isinstance(dist.nproc_per_node, int) else 1
    return max(1, per_node) * dist.nnodes


class NvmlSource(Protocol):
    """The four NVML calls ftwizard makes. `PynvmlSource` is the real one."""

    def init(self) -> None: ...
    def driver(self) -> str | None: ...
    def gpus(self) -> list[GPU]: ...
    def shutdown(self) -> None: ...


class PynvmlSource:
    def __init__(self):
        self._ok = False

    def init(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._ok = True

    def driver(self) -> str | None:
        import pynvml

        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v

    def gpus(self) -> list[GPU]:
        import pynvml

        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                cc = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            except pynvml.NVMLError:
                cc = (0, 0)
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
            except pynvml.NVMLError:
                util = None
            try:
                temp = pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
            except pynvml.NVMLError:
                temp = None
            out.append(GPU(i, name, round(mem.total / GIB, 2), round(mem.free / GIB, 2), cc, util, temp))
        return out

    def shutdown(self) -> None:
        import pynvml

        if self._ok:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError:
                pass
            self._ok = False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect(source: NvmlSource | None = None) -> Hardware:
    """One reading of the machine. Never raises for a missing GPU, driver or library."""
    import psutil

    vm = psutil.virtual_memory()
    base = dict(ram_total_gib=round(vm.total / GIB, 1), ram_available_gib=round(vm.available / GIB, 1),
                cpu_count=os.cpu_count() or 1, cpu_name=_cpu_name())
    source = source or PynvmlSource()
    try:
        source.init()
    except Exception as exc:  # pynvml.NVMLError_LibraryNotFound, DriverNotLoaded, ImportError, ...
        return Hardware(nvml_error=_nvml_reason(exc), **base)
    try:
        return Hardware(gpus=tuple(source.gpus()), driver=source.driver(), **base)
    except Exception as exc:
        return Hardware(nvml_error=_nvml_reason(exc), **base)
    finally:
        source.shutdown()


def _nvml_reason(exc: Exception) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "no NVIDIA driver library (NVML) found"
    if "DriverNotLoaded" in name:
        return "the NVIDIA driver is not loaded"
    if isinstance(exc, ImportError):
        return "nvidia-ml-py is not installed"
    return f"NVML: {exc or name}"


@dataclass
class GPUSampler:
    """Keeps NVML initialised between samples (the monitor samples about once a second)."""

    source: NvmlSource = field(default_factory=PynvmlSource)
    _ready: bool | None = None

    def sample(self) -> list[GPU]:
        if self._ready is None:
            try:
                self.source.init()
                self._ready = True
            except Exception:
                self._ready = False
        if not self._ready:
            return []
        try:
            return self.source.gpus()
        except Exception:
            return []

    def close(self) -> None:
        if self._ready:
            self.source.shutdown()
        self._ready = None
