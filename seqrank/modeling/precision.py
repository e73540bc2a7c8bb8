"""Reduced-precision inference (``TEST.PRECISION``): which autocast dtype a device can run.

``fp32`` (the default) is the faithful path: no autocast at all. ``bf16`` and ``fp16`` run the
trunk and the ranking blocks under ``torch.autocast`` on the model's device type, while the
decisions stay in float32 (:func:`float32_decision`, and the float32 sigmoids, stop tests and
mask thresholding of the ranking loop). Where the device cannot run the precision well (fp16 on a
CPU, bf16 on a CPU without BF16 instructions or a GPU without bfloat16), :func:`resolve_precision`
falls back to fp32 and says why.
"""

import functools
import logging

import torch

from ..cli import ConfigError

__all__ = [
    "PRECISIONS",
    "check_precision",
    "cpu_supports_bf16",
    "float32_decision",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of native bfloat16 arithmetic: x86 (AVX-512 BF16, AMX) and Arm (BF16).
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def check_precision(precision, key="TEST.PRECISION"):
    """``precision`` normalised to one of :data:`PRECISIONS`.

    Raises:
        ConfigError: any other value (one line naming ``key``).
    """
    value = str(precision).strip().lower()
    if value not in PRECISIONS:
        raise ConfigError(f"{key} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return value


def _cpu_flags():
    """The CPU feature flags of /proc/cpuinfo, or None where there is no such file."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


@functools.lru_cache(maxsize=None)
def cpu_supports_bf16():
    """Whether this CPU does bfloat16 arithmetic natively (AVX512_BF16 / AMX_BF16, Arm BF16).

    Without it oneDNN emulates bfloat16 and runs slower than float32. Where /proc/cpuinfo is
    missing (macOS, Windows) oneDNN's own check decides.
    """
    flags = _cpu_flags()
    if flags is not None:
        return bool(flags & _BF16_FLAGS)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def resolve_precision(precision, device):
    """``(dtype, note)``: the autocast dtype of ``precision`` on ``device`` (None: plain fp32)
    and, when the request falls back to fp32, one line saying why (else None)."""
    precision = check_precision(precision)
    if precision == "fp32":
        return None, None
    device_type = torch.device(device).type
    fallback = f"TEST.PRECISION {precision}"
    if device_type == "cpu":
        if precision == "fp16":
            return None, (
                f"{fallback} needs a GPU: inference runs in fp32 on the CPU (bf16 runs on CPUs "
                "with BF16 instructions)"
            )
        if not cpu_supports_bf16():
            return None, (
                f"{fallback}: this CPU has no BF16 instructions (avx512_bf16, amx_bf16), so "
                "bfloat16 would be slower than float32: inference runs in fp32"
            )
    elif device_type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            return None, (
                f"{fallback}: {torch.cuda.get_device_name(device)} does not support bfloat16: "
                "inference runs in fp32 (fp16 runs on this GPU)"
            )
    else:
        return None, f"{fallback} is not supported on {device_type}: inference runs in fp32"
    return _DTYPES[precision], None


def float32_decision(module, x):
    """``module(x)`` for a head whose output decides something at inference (the objectness
    and saliency logits): in eval mode it runs in float32 with autocast off; in training it runs
    as the AMP setting says. Without autocast and with a float32 ``x`` this is ``module(x)``."""
    if module.training:
        return module(x)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    with torch.autocast(x.device.type, enabled=False):
        return module(x)
