# configs/vitdet_mrcnn.py on the built-in mini COCO data (3 classes, 256x256, generated on first
# use) with a small ViT and slimmer heads, so that it trains on a CPU. Same code paths; no
# pretrained weights exist for this ViT: it trains from scratch.
#   tools/train_net.py --config-file configs/mini/vitdet_mrcnn.py \
#       train.max_iter=… train.output_dir=…
import torch

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from lift_det.data import ensure_mini_coco

from ..vitdet_mrcnn import dataloader, lr_multiplier, model, optimizer, train

has_cuda = torch.cuda.is_available()
image_size = 256

# the mini ViT (configs/mini/lift_stage1.py trains LiFT against exactly this one)
model.backbone.net.update(
    img_size=image_size, embed_dim=192, depth=4, num_heads=3, window_size=8,
    window_block_indexes=[0, 2], drop_path_rate=0.0,
)  # fmt: skip
model.backbone.square_pad = image_size
# 64-channel pyramid and slim heads (ViTDet: 256 channels, 4conv1fc box head, 4-conv mask head,
# 2-conv RPN head): a CPU budget. The head classes and the code paths are ViTDet's.
channels = 64
model.backbone.out_channels = channels
model.proposal_generator.head.in_channels = channels
model.proposal_generator.head.conv_dims = [-1]
model.proposal_generator.post_nms_topk = (500, 200)
model.roi_heads.box_head.input_shape = ShapeSpec(channels=channels, height=7, width=7)
model.roi_heads.box_head.conv_dims = []
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.box_predictor.test_topk_per_image = 50
model.roi_heads.mask_head.input_shape = ShapeSpec(channels=channels, width=14, height=14)
model.roi_heads.mask_head.conv_dims = [channels] * 2
model.roi_heads.batch_size_per_image = 64
model.roi_heads.num_classes = 3

dataloader.train.dataset.names = L(ensure_mini_coco)(split="train")
dataloader.test.dataset.names = L(ensure_mini_coco)(split="val")
dataloader.train.mapper.augmentations = [  # a light large-scale jitter
    L(T.RandomFlip)(horizontal=True),
    L(T.ResizeScale)(
        min_scale=0.75, max_scale=1.5, target_height=image_size, target_width=image_size
    ),
    L(T.FixedSizeCrop)(crop_size=(image_size, image_size), pad=False),
]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 1
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=image_size, max_size=image_size),
]
dataloader.test.num_workers = 1
dataloader.evaluator.output_dir = "${...train.output_dir}"  # dumps coco_instances_results.json

train.device = "cuda" if has_cuda else "cpu"
train.amp.enabled = has_cuda
train.ddp.fp16_compression = False
train.init_checkpoint = ""  # from scratch: there is no pretrained mini ViT
train.output_dir = "./output/mini/vitdet_mrcnn"
train.seed = 0
# 10 ep = 400 iters * 4 images/iter / 160 images/ep
train.max_iter = 400
train.eval_period = train.max_iter  # evaluate at the end
train.checkpointer.period = 100
train.log_period = 20

lr_multiplier.scheduler.values = [1.0, 0.1]
lr_multiplier.scheduler.milestones = [int(train.max_iter * 0.9)]
lr_multiplier.scheduler.num_updates = train.max_iter
lr_multiplier.warmup_length = 50 / train.max_iter
lr_multiplier.warmup_factor = 0.01

optimizer.lr = 4e-4  # from scratch, small batch: higher than ViTDet's 1e-4 at batch 64
optimizer.params.pop("lr_factor_func")  # 4 blocks from scratch: no layer-wise lr decay
