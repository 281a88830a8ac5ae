# ViTDet's COCO loader: large-scale jitter (LSJ) at 1024, as upstream's
# projects/ViTDet/configs/common/coco_loader_lsj.py (not installed with detectron2).
import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from lift_det.data import DetectionDatasetMapper, get_detection_dataset_dicts

image_size = 1024
dataloader = model_zoo.get_config("common/data/coco.py").dataloader
# detectron2's dataset function and mapper, plus: errors that name empty/missing dataset files,
# 16-bit images read right, zero- or negative-size boxes dropped with a count (lift_det.data)
for split in (dataloader.train, dataloader.test):
    split.dataset.update(_target_=get_detection_dataset_dicts)
    split.mapper.update(_target_=DetectionDatasetMapper)
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),  # flip first
    L(T.ResizeScale)(
        min_scale=0.1, max_scale=2.0, target_height=image_size, target_width=image_size
    ),
    L(T.FixedSizeCrop)(crop_size=(image_size, image_size), pad=False),
]
# the loaded data is checked before training (lift_det.data.validate); masks if the mapper uses them
dataloader.train.dataset.instance_masks = "${..mapper.use_instance_mask}"
dataloader.train.mapper.instance_mask_format = "polygon"  # "bitmask" for RLE masks
dataloader.train.dataset.mask_format = "${..mapper.instance_mask_format}"
dataloader.train.mapper.image_format = "RGB"
dataloader.train.total_batch_size = 64
# recompute boxes due to cropping
dataloader.train.mapper.recompute_boxes = True

dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size),
]
