"""Catalog of the hardware a run can target, and its eformer accelerator config.

Figures are Google's published per-chip numbers: HBM in GiB and peak dense
bf16 TFLOP/s. Slice names follow `gcloud` accelerator types (v4 and v5p count
TensorCores, two per chip; v5e and v6e count chips). eformer is imported only
inside `eformer_config`, which runs in the launcher, never the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TpuGeneration:
    name: str
    cores_per_chip: int
    chips_per_host: int
    hbm_gib_per_chip: float
    peak_bf16_tflops: float
    sizes: tuple[int, ...]
    #: Small slices that sit on one host with more chips than `chips_per_host`.
    single_host_max_chips: int = 4


GENERATIONS: dict[str, TpuGeneration] = {
    "v4": TpuGeneration("v4", 2, 4, 32.0, 275.0,
                        (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)),
    "v5p": TpuGeneration("v5p", 2, 4, 95.0, 459.0,
                         (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 6144, 12288)),
    "v5litepod": TpuGeneration("v5litepod", 1, 4, 16.0, 197.0, (1, 4, 8, 16, 32, 64, 128, 256), 8),
    "v6e": TpuGeneration("v6e", 1, 4, 32.0, 918.0, (1, 4, 8, 16, 32, 64, 128, 256), 8),
}
ALIASES = {"v5e": "v5litepod"}


@dataclass(frozen=True)
class TpuSlice:
    """One TPU slice type, e.g. v4-64: 32 chips on 8 hosts."""

    name: str
    generation: TpuGeneration
    chips: int
    hosts: int

    @property
    def hbm_gib(self) -> float:
        return self.chips * self.generation.hbm_gib_per_chip

    @property
    def peak_tflops(self) -> float:
        return self.chips * self.generation.peak_bf16_tflops

    def describe(self) -> str:
        g = self.generation
        return (f"{self.name}: {self.chips} chips on {self.hosts} host{'s' * (self.hosts > 1)}, "
                f"{g.hbm_gib_per_chip:g} GiB HBM/chip ({self.hbm_gib:g} GiB), "
                f"{g.peak_bf16_tflops:g} TFLOP/s bf16/chip")


def _make(gen: TpuGeneration, size: int) -> TpuSlice:
    chips = size // gen.cores_per_chip
    hosts = 1 if chips <= gen.single_host_max_chips else chips // gen.chips_per_host
    return TpuSlice(f"{gen.name}-{size}", gen, chips, hosts)


SLICES: dict[str, TpuSlice] = {
    s.name: s for gen in GENERATIONS.values() for s in (_make(gen, n) for n in gen.sizes)
}


def tpu_slice(name: str) -> TpuSlice:
    """Look up a slice by name (v4-64, v5litepod-16 or its alias v5e-16, v6e-8 ...)."""
    key = name.strip().lower()
    gen, _, size = key.rpartition("-")
    key = f"{ALIASES.get(gen, gen)}-{size}"
    if key in SLICES:
        return SLICES[key]
    known = GENERATIONS.get(ALIASES.get(gen, gen))
    if known:
        sizes = ", ".join(str(n) for n in known.sizes)
        raise KeyError(f"unknown slice {name!r}: {known.name} comes in sizes {sizes}")
    raise KeyError(f"unknown slice {name!r}: use a TPU type such as "
                   f"{', '.join(f'{g}-N' for g in GENERATIONS)} (e.g. v4-64)")


# Peak dense bf16 TFLOP/s per GPU, for MFU.
GPU_PEAK_TFLOPS = {"a100": 312.0, "h100": 989.0, "h200": 989.0, "l4": 121.0, "a10g": 125.0, "v100": 125.0}


def peak_tflops(kind: str, type_: str, count: int = 1) -> float | None:
    """Peak bf16 TFLOP/s of the whole target, or None where unknown (CPU)."""
    if kind == "tpu":
        try:
            return tpu_slice(type_).peak_tflops
        except KeyError:
            return None
    if kind == "gpu":
        per = GPU_PEAK_TFLOPS.get(type_.lower())
        return per * count if per else None
    return None


def device_count(kind: str, type_: str, count: int = 1) -> int:
    if kind == "tpu":
        return tpu_slice(type_).chips
    if kind == "gpu":
        return count
    return 1


def eformer_config(kind: str, type_: str, count: int, runtime_env: dict[str, Any]) -> Any:
    """The eformer accelerator config for `execute(...)` (imports eformer: launcher only)."""
    from eformer.executor.ray import CpuAcceleratorConfig, GpuAcceleratorConfig, TpuAcceleratorConfig

    if kind == "tpu":
        return TpuAcceleratorConfig(tpu_slice(type_).name, execution_env=runtime_env)
    if kind == "gpu":
        return GpuAcceleratorConfig(device_count=count, gpu_model=type_, execution_env=runtime_env)
    return CpuAcceleratorConfig(core_count=count, execution_env=runtime_env)
