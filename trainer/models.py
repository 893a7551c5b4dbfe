"""The reference models: torchvision constructors, randomly initialised (no weights download)."""
from typing import Callable, Dict

import torch.nn as nn
import torchvision.models as tvm

MODELS = {
    "vgg11": tvm.vgg11,
    "resnet18": tvm.resnet18,
    "mobilenet_v3_small": tvm.mobilenet_v3_small,
    "mobilenet_v3_large": tvm.mobilenet_v3_large,
}  # type: Dict[str, Callable[..., nn.Module]]


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """``num_classes`` only: every torchvision release since 0.11 builds these untrained by default."""
    return MODELS[name](num_classes=num_classes)
