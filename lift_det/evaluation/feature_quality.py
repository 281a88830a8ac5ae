"""How well upsampled features match the ViT's own features at twice the resolution (paper
§3.3's reconstruction target), from :class:`lift_det.modeling.LiFTDistiller`'s eval outputs."""

import itertools
import logging
import numpy as np
from collections import OrderedDict
from typing import Dict, List

from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

logger = logging.getLogger(__name__)

_KEYS = ("cos_lift", "cos_bilinear", "cos_nearest")


class FeatureQualityEvaluator(DatasetEvaluator):
    """Averages the per-image cosines of :class:`LiFTDistiller`'s eval outputs over the dataset (all
    processes if ``distributed``): ``{"lift_quality": {"cos_lift", "cos_bilinear", ...}}``."""

    def __init__(self, distributed: bool = True):
        self._distributed = distributed
        self.reset()

    def reset(self):
        self._sims: List[Dict[str, float]] = []

    def process(self, inputs, outputs):
        for output in outputs:
            missing = [k for k in _KEYS if k not in output]
            if missing:
                raise KeyError(
                    f"FeatureQualityEvaluator expects LiFTDistiller eval outputs with {_KEYS}; "
                    f"missing {missing} in {sorted(output)}."
                )
            self._sims.append({k: float(output[k]) for k in _KEYS})

    def evaluate(self):
        sims = self._sims
        if self._distributed:
            comm.synchronize()
            sims = list(itertools.chain(*comm.gather(sims, dst=0)))
            if not comm.is_main_process():
                return {}
        if not sims:
            logger.warning("FeatureQualityEvaluator: no images were evaluated.")
            return {}
        values = np.array([[s[k] for k in _KEYS] for s in sims], dtype=np.float64)  # (images, keys)
        res = OrderedDict(zip(_KEYS, values.mean(axis=0).tolist()))  # each key: mean over images
        logger.info(
            f"Feature quality on {len(sims)} images, mean cos. similarity to F(x) of 2x-upsampled "
            f"F(x/2): LiFT {res['cos_lift']:.4f} | bilinear {res['cos_bilinear']:.4f} | "
            f"nearest {res['cos_nearest']:.4f}"
        )
        return {"lift_quality": res}
