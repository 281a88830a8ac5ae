# Stage one in the paper's own setting: LiFT-S against a frozen DINO ViT-S/16 from timm
# ("vit_small_patch16_224.dino"), at 448x448, on COCO train2017. Nothing is downloaded: give the
# DINO weights (dino_deitsmall16_pretrain.pth from facebookresearch/dino) as a local file:
#   tools/train_net.py --config-file configs/lift_stage1_timm_dino_s16.py --num-gpus 8 \
#       model.source.weights=/path/to/dino_vits16.pth
# The LiFT file it writes records the timm backbone; stage two (ViTDet) needs a detectron2 ViT.
from detectron2.config import LazyCall as L

from lift_det.modeling.timm_source import TimmViTSource

from .common.lift_stage1 import dataloader, model, optimizer, stage1_schedule, train

# the frozen teacher: timm's ViT-S/16 (DINO's mean/std from timm's pretrained config; position
# embeddings interpolated from DINO's 224 grid to each input size)
model.source = L(TimmViTSource)(model_name="vit_small_patch16_224.dino", weights="")
# LiFT-S for ViT-S/16's 384 channels and 16-pixel patches
model.lift.update(name="LiFT-S", in_channels=384, patch_size=16)
model.square_pad = 448  # 28 x 28 patches; x/4 = 112 = 7 x 7
dataloader.train.mapper.patch_size = 16

train.init_checkpoint = ""  # the ViT's weights are model.source.weights
train.export[0].update(teacher_weights="${model.source.weights}", feature_layer="forward_features")
train.output_dir = "./output/lift_stage1_timm_dino_s16"

# configs/lift_stage1_coco.py's schedule:
# 100 ep = 184824 iters * 64 images/iter / 118287 images/ep (all of train2017, annotated or not)
train.max_iter = 184824
lr_multiplier = stage1_schedule(train.max_iter, warmup_iters=500)
# every 10 epochs
train.eval_period = 18483
train.checkpointer.period = 18483
dataloader.test.dataset.max_images = 500  # held-out quality on the first 500 val2017 images
