"""The one fake in the test suite: NVML. Realistic cards behind the same `NvmlSource` interface the app uses."""

from __future__ import annotations

from ftwizard.core.hardware import GPU


class FakeNvml:
    """Pretends to be NVML with the given cards; `FakeNvml.none()` behaves like a machine without a driver."""

    def __init__(self, gpus: list[GPU], driver: str = "570.86.15", fail: Exception | None = None):
        self._gpus = list(gpus)
        self._driver = driver
        self._fail = fail
        self.inits = 0

    def init(self) -> None:
        if self._fail is not None:
            raise self._fail
        self.inits += 1

    def driver(self) -> str | None:
        return self._driver

    def gpus(self) -> list[GPU]:
        return list(self._gpus)

    def shutdown(self) -> None:
        pass

    @classmethod
    def none(cls) -> "FakeNvml":
        import pynvml

        return cls([], fail=pynvml.NVMLError_LibraryNotFound())


# Realistic readings (an idle card shows a few hundred MB used by the driver/display).
RTX_4060_8GB = GPU(0, "NVIDIA GeForce RTX 4060 Laptop GPU", 8.0, 7.6, (8, 9), 3, 41)
RTX_3090_24GB = GPU(0, "NVIDIA GeForce RTX 3090", 24.0, 23.4, (8, 6), 0, 35)
L4_24GB = GPU(0, "NVIDIA L4", 22.49, 22.05, (8, 9), 0, 38)
A100_80GB = GPU(0, "NVIDIA A100-SXM4-80GB", 80.0, 79.2, (8, 0), 0, 33)
T4_16GB = GPU(0, "Tesla T4", 15.0, 14.6, (7, 5), 0, 40)  # no bf16
TWO_A6000 = [GPU(0, "NVIDIA RTX A6000", 47.99, 47.4, (8, 6), 0, 36),
             GPU(1, "NVIDIA RTX A6000", 47.99, 47.5, (8, 6), 0, 34)]

SCENARIOS = {
    "8gb": [RTX_4060_8GB],
    "24gb": [RTX_3090_24GB],
    "80gb": [A100_80GB],
    "two-gpus": TWO_A6000,
}


def fake(name: str) -> FakeNvml:
    return FakeNvml.none() if name == "none" else FakeNvml(SCENARIOS[name])


def machine(ram_available_gib: float, gpus: list[GPU] | None = None, ram_total_gib: float | None = None):
    """A `Hardware` reading with the given free RAM (and cards): a fake reading of psutil, for the launch
    check's refusals without filling this machine's memory."""
    from ftwizard.core.hardware import Hardware

    return Hardware(gpus=tuple(gpus or ()), ram_total_gib=ram_total_gib or max(ram_available_gib, 1.0),
                    ram_available_gib=ram_available_gib, cpu_count=2, cpu_name="fake CPU")
