# Stage two on the mini data: the trained mini ViTDet + LiFT-S (192 channels) from stage one; ViT
# and LiFT frozen, pyramid and heads finetuned. tools/run_mini.py passes the two files:
#   train.init_checkpoint=<baseline>/model_final.pth
#   model.backbone.net.lift_weights=<stage1>/lift_final.pth
from lift_det.config import lift_backbone, stage2_lr_multiplier

from .vitdet_mrcnn import dataloader, model, optimizer, train

# LiFT-S, the paper's module (no preset is tied to this 192-channel ViT); lift_weights: the
# stage-one LiFT file, given on the command line
model.backbone = lift_backbone(model.backbone, "LiFT-S", lift_weights="", freeze=True)

train.init_checkpoint = ""  # the trained mini ViTDet (configs/mini/vitdet_mrcnn.py)
train.output_dir = "./output/mini/vitdet_mrcnn_lift"
# finetune: 4 ep = 160 iters * 4 images/iter / 160 images/ep
train.max_iter = 160
train.eval_period = 40  # 4 evaluations and checkpoints
train.checkpointer.period = 40
lr_multiplier = stage2_lr_multiplier(train.max_iter)  # 10x drop at 90%, 16-iter warmup
optimizer.lr = 2e-4
