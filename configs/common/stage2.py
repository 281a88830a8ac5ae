# Stage two (paper §3.5): LiFT goes between the pretrained ViTDet's ViT and its pyramid; the ViT
# and LiFT are frozen and the pyramid and heads are briefly finetuned on the LiFT features.
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler


def finetune_schedule(train, max_iter):
    """A short schedule: constant lr with one 10x drop at 90%, 100-iteration warmup."""
    train.max_iter = max_iter
    train.eval_period = max_iter // 4
    train.checkpointer.period = max_iter // 4
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[1.0, 0.1], milestones=[int(max_iter * 0.9)], num_updates=max_iter
        ),
        warmup_length=min(100, max_iter // 10) / max_iter,
        warmup_factor=0.001,
    )


def freeze_for_stage2(backbone):
    """Freeze what the paper keeps fixed in stage two (the ViT and LiFT)."""
    backbone.net.freeze_vit = True
    if "freeze_lift" in backbone.net:
        backbone.net.freeze_lift = True


def frozen_vit_lr_factor(name):
    """lr factor 0 for the ViT (``backbone.net.*``), for a plain ViTDet that has no freeze switch:
    the same-budget baseline control finetunes exactly what stage two finetunes."""
    return 0.0 if name.startswith("backbone.net.") else 1.0
