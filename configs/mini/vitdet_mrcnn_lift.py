# Stage two on the mini data, the "up" placement: the detector sees the 2x image (512 px), the
# trained mini ViTDet's ViT and LiFT-S (from stage one) see it at the usual 256 px, and LiFT's
# stride-8 output of the 256 px image is the stride-16 feature of the 512 px image: upstream's
# pyramid and heads take it unchanged, so every ViTDet tensor loads and none is new. ViTDet on the
# 2x image (vitdet_mrcnn_2x.py) at a fraction of its ViT's cost. ViT and LiFT frozen, pyramid and
# heads finetuned. tools/run_mini.py passes the two files:
#   train.init_checkpoint=<baseline>/model_final.pth
#   model.backbone.net.lift_weights=<stage1>/lift_final.pth
# The other placements: vitdet_mrcnn_lift_down.py (ViT at half of 256 px), vitdet_mrcnn_lift_s8.py
# (stride-8 pyramid). The controls (bilinear, resize_conv, jbu, attn) inherit this placement.
from lift_det.config import lift_backbone, set_image_size, stage2_lr_multiplier

from .vitdet_mrcnn import dataloader, model, optimizer, train

# LiFT-S, the paper's module (no preset is tied to this 192-channel ViT); lift_weights: the
# stage-one LiFT file, given on the command line
model.backbone = lift_backbone(
    model.backbone, "LiFT-S", lift_weights="", freeze=True, placement="half"
)
set_image_size(model, dataloader, 512)  # the ViT keeps img_size=256 and sees 256 px

train.init_checkpoint = ""  # the trained mini ViTDet (configs/mini/vitdet_mrcnn.py)
train.output_dir = "./output/mini/vitdet_mrcnn_lift"
# finetune: 4 ep = 160 iters * 4 images/iter / 160 images/ep
train.max_iter = 160
train.eval_period = 40  # 4 evaluations and checkpoints
train.checkpointer.period = 40
lr_multiplier = stage2_lr_multiplier(train.max_iter)  # 10x drop at 90%, 16-iter warmup
optimizer.lr = 2e-4
