# Stage two on the mini data: the trained mini ViTDet + LiFT-S (192 channels) from stage one; ViT
# and LiFT frozen, pyramid and heads finetuned. tools/run_mini.py passes the two files:
#   train.init_checkpoint=<baseline>/model_final.pth
#   model.backbone.net.lift_weights=<stage1>/lift_final.pth
from lift_det.config import lift_backbone

from ..common.stage2 import finetune_schedule, freeze_for_stage2
from .vitdet_mrcnn import dataloader, model, optimizer, train

model.backbone = lift_backbone(model.backbone, "LiFT-S")
model.backbone.net.lift_weights = ""  # the stage-one LiFT file; empty: LiFT stays at random init
freeze_for_stage2(model.backbone)

train.init_checkpoint = ""  # the trained mini ViTDet (configs/mini/vitdet_mrcnn.py)
train.output_dir = "./output/mini/vitdet_mrcnn_lift"
# finetune: 4 ep = 160 iters * 4 images/iter / 160 images/ep
lr_multiplier = finetune_schedule(train, max_iter=160)
optimizer.lr = 2e-4
