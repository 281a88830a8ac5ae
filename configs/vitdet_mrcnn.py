# Baseline: ViTDet-B Mask R-CNN, 100 epochs on COCO from MAE (upstream mask_rcnn_vitdet_b_100ep.py).
from detectron2 import model_zoo

from lift_det.modeling import AttnViT

from .common.coco_loader_lsj import dataloader
from .common.vitdet_schedule import lr_multiplier, optimizer, train

model = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
# detectron2's ViT with a choice of attention: "eager" (upstream's) or "sdpa" (the same weights,
# scaled_dot_product_attention with the rel-pos bias as its mask); L/H and +LiFT configs inherit it
model.backbone.net.update(_target_=AttnViT, attn_impl="eager")
