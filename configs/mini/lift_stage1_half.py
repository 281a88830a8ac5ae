# Stage one at half the input size (128 px, so the teacher's forwards on x, x/2 and x/4 see 4x
# fewer pixels); the LiFT it trains is used at the full 256 px in stage two. Same budget.
from .lift_stage1 import dataloader, lr_multiplier, model, optimizer, train

model.square_pad = 128  # the data's image_size follows (configs/common/lift_stage1.py)
train.output_dir = "./output/mini_lift_stage1_half"
