# Stage two: ViTDet-B Mask R-CNN + LiFT-B (paper §3.5, Table 4). Starts from the pretrained ViTDet
# and the stage-one LiFT file; the ViT and LiFT stay frozen, the pyramid and heads are finetuned.
#   tools/train_net.py --config-file configs/vitdet_mrcnn_lift.py \
#       model.backbone.net.lift_weights=output/lift_stage1_coco/lift_final.pth
from lift_det.config import lift_backbone

from .common.stage2 import finetune_schedule, freeze_for_stage2
from .vitdet_mrcnn import dataloader, model, optimizer, train

model.backbone = lift_backbone(model.backbone, "LiFT-B")
# the stage-one LiFT file (tools/train_lift.py writes OUTPUT_DIR/lift_final.pth)
model.backbone.net.lift_weights = "output/lift_stage1_coco/lift_final.pth"
freeze_for_stage2(model.backbone)

# ViTDet-B Mask R-CNN from detectron2's ViTDet model zoo (51.6 box AP in its table)
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/mask_rcnn_vitdet_b/f325346929/model_final_61ccd1.pkl"
)
# "briefly finetune": 5 ep = 9219 iters * 64 images/iter / 118000 images/ep, 1/20 of ViTDet's
lr_multiplier = finetune_schedule(train, max_iter=9219)
