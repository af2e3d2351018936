"""How much memory models may use, and how much a model really takes.

The budget (``runtime.budget_bytes``, else ``runtime.budget_fraction`` of the memory models can use):
- Unified memory (a Jetson's integrated GPU, or no GPU at all): the CPU and the GPU share one pool,
  so the GPU allocator's view says little about what is really free. The pool is what the kernel
  reports as ``MemAvailable`` plus the bytes thorgen's own models already hold (they would come back
  if thorgen let them go). This is measured once, when the swapper starts.
- A discrete GPU: the device's total memory as CUDA reports it (``torch.cuda.mem_get_info``).

A model's size is the bytes of its parameters and buffers, each storage counted once, so modules two
pipelines share (``from_pipe``) count once. Before a load, the size is estimated from the
safetensors headers (shapes × the dtype it will be cast to), which costs no memory.

torch is imported inside functions only: the server starts and serves utilities without it.
"""

from __future__ import annotations

import gc
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                      "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cuda" or "cpu"
    name: str
    unified: bool  # CPU and GPU share one memory (Jetson) or there is no GPU


@dataclass(frozen=True)
class Budget:
    bytes: int
    how: str  # one sentence saying how it was computed, for /info, the log and `thorgen doctor`


def device_info() -> DeviceInfo:
    try:
        import torch
    except ImportError:
        return DeviceInfo("cpu", "cpu (torch is not installed)", True)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return DeviceInfo("cuda", props.name, bool(getattr(props, "is_integrated", False)))
    return DeviceInfo("cpu", "cpu", True)


def compute_budget(budget_bytes: int, fraction: float, device: DeviceInfo, held: int = 0) -> Budget:
    if budget_bytes > 0:
        return Budget(budget_bytes, f"runtime.budget_bytes = {budget_bytes}")
    if device.unified:
        available = psutil.virtual_memory().available
        pool = available + held
        return Budget(int(pool * fraction), f"{fraction:g} × (MemAvailable {_gib(available)} + held by "
                      f"thorgen {_gib(held)}): {device.name} shares system memory")
    import torch

    _, total = torch.cuda.mem_get_info(0)
    return Budget(int(total * fraction), f"{fraction:g} × {device.name} total memory {_gib(total)}")


def pipeline_bytes(pipeline: Any) -> int:
    """Bytes of every parameter and buffer of a pipeline's modules (or of one module), each once."""
    import torch

    modules: list[torch.nn.Module]
    if isinstance(pipeline, torch.nn.Module):
        modules = [pipeline]
    else:
        components = getattr(pipeline, "components", {}) or {}
        modules = [m for m in components.values() if isinstance(m, torch.nn.Module)]
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            for plain in _plain_tensors(tensor):
                storage = plain.untyped_storage()
                key = storage.data_ptr()
                if key in seen or storage.nbytes() == 0:
                    continue
                seen.add(key)
                total += storage.nbytes()
    return total


def _plain_tensors(tensor: Any) -> list[Any]:
    """The tensors that really hold a tensor's data. A tensor subclass that wraps others (torchao's
    int8 and fp8 weights: int8 data plus scales) reports its nominal dtype's size as its storage;
    what it holds is in the inner tensors it flattens into."""
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is None or type(tensor).__name__ in ("Parameter", "Tensor"):
        return [tensor]
    names, _ = flatten()
    return [inner for name in names for inner in _plain_tensors(getattr(tensor, name))]


def estimate_bytes(path: Path, dtype: str) -> int:
    """Weights a model will take once loaded in ``dtype``, read from its safetensors headers.

    Floating-point tensors are counted at the target dtype's width, others at their own. A folder
    with no safetensors (a .nemo archive, say) is estimated by its size on disk.
    """
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else []
    if not files:
        return disk_bytes(path)
    width = DTYPE_BYTES[dtype]
    total = 0
    for file in files:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = math.prod(entry["shape"])
            kind = entry["dtype"]
            total += count * (width if kind in ("F64", "F32", "F16", "BF16") else _SAFETENSORS_BYTES.get(kind, 4))
    return total


def disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA), a plain MemoryError (host), or an allocator RuntimeError."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "failed to allocate" in text)


def release_memory() -> None:
    """Hand freed memory back: collect cycles, then return CUDA's cached blocks to the driver."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def accelerator_allocated() -> int | None:
    """Bytes the CUDA allocator holds now (None without CUDA)."""
    try:
        import torch
    except ImportError:
        return None
    return int(torch.cuda.memory_allocated()) if torch.cuda.is_available() else None


def _gib(value: int) -> str:
    return f"{value / 1024**3:.1f} GiB"


def hook_state_bytes(module: Any) -> int:
    """Bytes of the tensors diffusers' cache hooks keep on ``module`` and its children, each once.

    A cache (TaylorSeer's Taylor factors per attention layer, MagCache's residual, FirstBlockCache's
    first-block output) holds activations between steps: at Flux's 1024² that is up to gigabytes, not
    part of the weights and so not in ``pipeline_bytes``. Read from the hooks' state objects (diffusers'
    ``StateManager`` keeps one per cache context), walking their attributes down to tensors.
    """
    seen: set[int] = set()
    total = 0

    def count(value: Any, depth: int = 0) -> None:
        nonlocal total
        if depth > 4:  # state objects hold dicts of dicts of tensors at most; never walk further
            return
        if hasattr(value, "untyped_storage"):
            for plain in _plain_tensors(value):
                storage = plain.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                count(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                count(item, depth + 1)

    for child in module.modules():
        registry = getattr(child, "_diffusers_hook", None)
        for hook in getattr(registry, "hooks", {}).values():
            manager = getattr(hook, "state_manager", None)
            for state in getattr(manager, "_state_cache", {}).values():
                count(vars(state))
    return total
