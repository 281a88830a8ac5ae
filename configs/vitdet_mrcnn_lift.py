# Stage two: ViTDet-B Mask R-CNN + LiFT-B (paper §3.5, Table 4). Starts from the pretrained ViTDet
# and the stage-one LiFT file; the ViT and LiFT stay frozen, the pyramid and heads are finetuned.
#   tools/train_net.py --config-file configs/vitdet_mrcnn_lift.py \
#       model.backbone.net.lift_weights=output/lift_stage1_coco/lift_final.pth
from lift_det.config import lift_backbone, set_image_size, stage2_lr_multiplier

from .vitdet_mrcnn import dataloader, model, optimizer, train

# ViT -> LiFT-B (the preset for 768 channels) -> ViTDet's pyramid; ViT and LiFT frozen.
# lift_weights: the stage-one file (tools/train_lift.py writes OUTPUT_DIR/lift_final.pth)
model.backbone = lift_backbone(
    model.backbone,
    "LiFT-B",
    lift_weights="output/lift_stage1_coco/lift_final.pth",
    freeze=True,
    placement="half",
)
# "up": the detector sees 2048 px, the ViT and LiFT 1024 px (ViTDet's own view); every ViTDet
# tensor loads, none is new. vitdet_mrcnn_lift_down.py: 1024 px (ViT at 512),
# vitdet_mrcnn_lift_s8.py: the stride-8 pyramid
set_image_size(model, dataloader, 2048)

# ViTDet-B Mask R-CNN from detectron2's ViTDet model zoo (51.6 box AP in its table)
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_b/f325346929/model_final_61ccd1.pkl"
)
# "briefly finetune": 5 ep = 9219 iters * 64 images/iter / 118000 images/ep, 1/20 of ViTDet's
train.max_iter = 9219
train.eval_period = 2304  # 4 evaluations and checkpoints (~1.25 ep apart)
train.checkpointer.period = 2304
lr_multiplier = stage2_lr_multiplier(train.max_iter)  # 10x drop at 90%, 100-iter warmup
