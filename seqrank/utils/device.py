"""Moving host tensors to the model's device."""

import torch

__all__ = ["to_device"]


def to_device(tensors, device):
    """Host tensors -> the same tensors on ``device`` (views of one flat buffer on CUDA).

    On CUDA they are packed into one pinned buffer and copied with one non-blocking transfer
    (the caching host allocator keeps the buffer until the copy is done); elsewhere each is moved
    as is.
    """
    device = torch.device(device)
    if device.type != "cuda" or not tensors or any(t.device.type != "cpu" for t in tensors):
        return [t.to(device) for t in tensors]
    dtype = tensors[0].dtype
    flat = torch.empty(sum(t.numel() for t in tensors), dtype=dtype, pin_memory=True)
    torch.cat([t.reshape(-1).to(dtype) for t in tensors], out=flat)
    flat = flat.to(device, non_blocking=True)
    sizes = [t.numel() for t in tensors]
    return [part.view(t.shape) for part, t in zip(flat.split(sizes), tensors)]
