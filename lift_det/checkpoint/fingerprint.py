"""Fingerprints: which model wrote a checkpoint (names and shapes, checked on resume) and which
ViT a LiFT was trained against (its weights, checked when stage two loads the LiFT file)."""

import hashlib
from typing import Any, Dict, Mapping, Optional
import torch
from torch import nn


def model_fingerprint(model: nn.Module) -> Dict[str, Any]:
    """Names and shapes of the model's state dict and their hash (stored in each checkpoint)."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    text = "\n".join(f"{k}:{shapes[k]}" for k in sorted(shapes))
    return {"hash": hashlib.sha256(text.encode()).hexdigest()[:16], "shapes": shapes}


def check_fingerprint(model: nn.Module, stored: Optional[Dict[str, Any]], path: str) -> None:
    """Refuse to resume from a checkpoint written by another model (its stored fingerprint)."""
    mine = model_fingerprint(model)
    if not stored or stored.get("hash") == mine["hash"]:
        return
    a, b = stored.get("shapes", {}), mine["shapes"]
    diff = [
        f"{k}: {a.get(k, 'absent')} in the file vs {b.get(k, 'absent')} here"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]
    raise ValueError(
        f"Cannot resume from '{path}': it was written by another model (fingerprint "
        f"{stored.get('hash')}) than this one ({mine['hash']}); {len(diff)} tensors differ, "
        f"e.g. {'; '.join(diff[:3])}. Resume with the config that wrote it, or train into a "
        f"new train.output_dir (or load it as train.init_checkpoint without --resume)."
    )


def teacher_fingerprint(vit_state: Mapping[str, torch.Tensor]) -> str:
    """A hash of a ViT's weights (names, shapes, dtypes and bytes): recorded in a LiFT file for the
    teacher stage one trained against, compared with the ViT stage two loads it into."""
    h = hashlib.sha256()
    for k in sorted(vit_state):
        v = vit_state[k].detach().cpu().contiguous()
        h.update(f"{k}:{tuple(v.shape)}:{v.dtype}".encode())
        h.update(v.view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]
