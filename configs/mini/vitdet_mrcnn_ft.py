# Control: the plain mini ViTDet given the same extra iterations as stage two (ViT at lr 0, the
# pyramid and heads finetuned on the same schedule as configs/mini/vitdet_mrcnn_lift.py).
from lift_det.config import frozen_vit_lr_factor

from .vitdet_mrcnn import dataloader, model, optimizer, train
from .vitdet_mrcnn_lift import lr_multiplier  # noqa: F401  (the same schedule)
from .vitdet_mrcnn_lift import train as _stage2_train

train.max_iter = _stage2_train.max_iter
train.eval_period = _stage2_train.eval_period
train.checkpointer.period = _stage2_train.checkpointer.period
train.init_checkpoint = ""  # the trained mini ViTDet
train.output_dir = "./output/mini/vitdet_mrcnn_ft"
optimizer.lr = 2e-4
optimizer.params.lr_factor_func = frozen_vit_lr_factor
