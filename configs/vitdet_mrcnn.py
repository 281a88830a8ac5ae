# Baseline: ViTDet-B Mask R-CNN, 100 epochs on COCO from MAE (upstream mask_rcnn_vitdet_b_100ep.py).
from detectron2 import model_zoo

from .common.coco_loader_lsj import dataloader
from .common.vitdet_schedule import lr_multiplier, optimizer, train

model = model_zoo.get_config("common/models/mask_rcnn_vitdet.py").model
