"""Where the model goes and in which number format, decided from a plain description of the
hardware, so that every GPU profile (T4, A100, multi-A100, CPU) is a unit test, not a machine.

Rules:
- dtype: bfloat16 only on compute capability 8.0 or newer (A100); float16 below (the T4 is 7.5:
  `torch.cuda.is_bf16_supported()` says True there because it counts emulated bf16, which is
  slow, so it is not asked); float32 on CPU, where half precision has no fast kernels.
- quantization (`none`, `8bit`, `4bit`) goes through bitsandbytes, as the AI Toolkit loads its
  base models; it needs a GPU.
- several GPUs: the model is spread over all of them (`device_map="auto"`) when it does not fit
  comfortably on one; otherwise it stays on one and the plan says why (layers split across GPUs
  run one after another: no faster, only more transfers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference_app.settings import QUANTIZATIONS

BF16_MIN_CAPABILITY = (8, 0)
# Share of one GPU's memory the weights may take and still leave room for activations and the
# KV cache of a full batch.
WEIGHTS_SHARE_OF_GPU = 0.7
_BYTES_PER_WEIGHT = {"none": 2.0, "8bit": 1.0, "4bit": 0.5}  # 16-bit checkpoint -> loaded size


class PlacementError(ValueError):
    """The requested loading cannot work on this hardware; one line naming the setting and fix."""


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]
    memory_bytes: int


@dataclass(frozen=True)
class Hardware:
    gpus: tuple[Gpu, ...] = ()

    @classmethod
    def detect(cls) -> Hardware:
        import torch

        if not torch.cuda.is_available():
            return cls()
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(Gpu(props.name, (props.major, props.minor), int(props.total_memory)))
        return cls(tuple(gpus))

    def describe(self) -> str:
        if not self.gpus:
            return "CPU (no GPU visible)"
        first = self.gpus[0]
        count = f"{len(self.gpus)} x " if len(self.gpus) > 1 else ""
        major, minor = first.capability
        return (
            f"{count}{first.name} (compute capability {major}.{minor}, "
            f"{first.memory_bytes / 2**30:.0f} GiB)"
        )


@dataclass(frozen=True)
class LoadPlan:
    device: str  # where inputs go: "cpu" or "cuda:0"
    dtype: str  # a torch dtype name
    quantization: str
    device_map: str | dict[str, int] | None  # None: load, then move to `device`
    placement: str  # one line for the log: where the weights go and why
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)


def check_quantization(value: str) -> str:
    if value not in QUANTIZATIONS:
        raise PlacementError(
            f"ACA_INFER_QUANTIZATION: {value!r} is not one of {', '.join(QUANTIZATIONS)}; "
            "use none (full 16-bit weights), 8bit or 4bit"
        )
    return value


def dtype_for(hardware: Hardware) -> str:
    if not hardware.gpus:
        return "float32"
    oldest = min(gpu.capability for gpu in hardware.gpus)
    return "bfloat16" if oldest >= BF16_MIN_CAPABILITY else "float16"


def plan_load(hardware: Hardware, quantization: str = "none", weights_bytes: int = 0) -> LoadPlan:
    """The plan for a checkpoint of `weights_bytes` stored in 16 bits (0 when unknown)."""
    check_quantization(quantization)
    dtype = dtype_for(hardware)
    if not hardware.gpus:
        if quantization != "none":
            raise PlacementError(
                f"ACA_INFER_QUANTIZATION: {quantization} needs a GPU (bitsandbytes) and this "
                "replica has none; set it to none or use a GPU workload profile"
            )
        return LoadPlan("cpu", dtype, quantization, None, "on the CPU")
    loaded_bytes = weights_bytes / 2.0 * _BYTES_PER_WEIGHT[quantization]
    one_gpu = hardware.gpus[0].memory_bytes
    fits_one = loaded_bytes <= WEIGHTS_SHARE_OF_GPU * one_gpu
    size = f"{loaded_bytes / 2**30:.1f} GiB of weights"
    warnings: list[str] = []
    if len(hardware.gpus) > 1 and not fits_one:
        return LoadPlan(
            "cuda:0",
            dtype,
            quantization,
            "auto",
            f"across all {len(hardware.gpus)} GPUs (device_map=auto): {size} do not fit "
            f"comfortably on one {hardware.gpus[0].name}",
        )
    if len(hardware.gpus) > 1:
        placement = (
            f"on GPU 0 of {len(hardware.gpus)}: {size} fit on one with room for the KV cache; "
            "layers split across GPUs run one after another, so spreading them would only add "
            "transfers"
        )
    else:
        placement = f"on GPU 0 ({size})"
    if not fits_one:
        warnings.append(
            f"{size} leave little room on a {hardware.gpus[0].memory_bytes / 2**30:.0f} GiB "
            f"{hardware.gpus[0].name}"
            + ("; set quantization to 8bit or 4bit" if quantization != "4bit" else "")
        )
    # bitsandbytes quantizes while loading onto the GPU, which needs an explicit device map.
    device_map = {"": 0} if quantization != "none" else None
    return LoadPlan("cuda:0", dtype, quantization, device_map, placement, tuple(warnings))
