# Turn a Mask R-CNN ViTDet model config into Cascade Mask R-CNN (upstream
# cascade_mask_rcnn_vitdet_b_100ep.py): three box heads with IoU 0.5 / 0.6 / 0.7.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import (
    CascadeROIHeads,
    FastRCNNConvFCHead,
    FastRCNNOutputLayers,
)


def to_cascade(model):
    # the cascade's box heads copy the Mask R-CNN box head's widths (ViTDet: 4 convs + 1 fc)
    channels = model.backbone.out_channels
    conv_dims, fc_dims = list(model.roi_heads.box_head.conv_dims), list(
        model.roi_heads.box_head.fc_dims
    )
    # arguments that don't exist for Cascade R-CNN
    [model.roi_heads.pop(k) for k in ["box_head", "box_predictor", "proposal_matcher"]]
    model.roi_heads.update(
        _target_=CascadeROIHeads,
        box_heads=[
            L(FastRCNNConvFCHead)(
                input_shape=ShapeSpec(channels=channels, height=7, width=7),
                conv_dims=conv_dims,
                fc_dims=fc_dims,
                conv_norm="LN",
            )
            for _ in range(3)
        ],
        box_predictors=[
            L(FastRCNNOutputLayers)(
                input_shape=ShapeSpec(channels=fc_dims[-1]),
                test_score_thresh=0.05,
                box2box_transform=L(Box2BoxTransform)(weights=(w1, w1, w2, w2)),
                cls_agnostic_bbox_reg=True,
                num_classes="${...num_classes}",
            )
            for (w1, w2) in [(10, 5), (20, 10), (30, 15)]
        ],
        proposal_matchers=[
            L(Matcher)(thresholds=[th], labels=[0, 1], allow_low_quality_matches=False)
            for th in [0.5, 0.6, 0.7]
        ],
    )
    return model
