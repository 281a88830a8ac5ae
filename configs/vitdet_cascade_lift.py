# Stage two: ViTDet-B Cascade Mask R-CNN + LiFT-B (paper Table 4, ViTDet(CR)).
from lift_det.config import lift_backbone

from .common.cascade import to_cascade
from .common.stage2 import finetune_schedule, freeze_for_stage2
from .vitdet_mrcnn import dataloader, model, optimizer, train

model = to_cascade(model)
model.backbone = lift_backbone(model.backbone, "LiFT-B")
model.backbone.net.lift_weights = "output/lift_stage1_coco/lift_final.pth"
freeze_for_stage2(model.backbone)

# ViTDet-B Cascade Mask R-CNN from detectron2's ViTDet model zoo
train.init_checkpoint = (
    "detectron2://ViTDet/COCO/cascade_mask_rcnn_vitdet_b/f325358525/model_final_435fa9.pkl"
)
# 5 ep = 9219 iters * 64 images/iter / 118000 images/ep (see vitdet_mrcnn_lift.py)
lr_multiplier = finetune_schedule(train, max_iter=9219)
