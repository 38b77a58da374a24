"""The SLTT paper's networks, each taking a neuron factory and running in single-step (online,
step_mode='s') or multi-step (step_mode='m') mode."""

from .digits import DigitsSNN, digits_snn
from .nf_resnet import SpikingNFResNet, nf_resnet34, nf_resnet50, nf_resnet101
from .resnet import SpikingPreActResNet, spiking_resnet18, spiking_resnet34
from .vgg import SpikingVGG11, vgg11_bn, vgg11_ws

__all__ = [
    "DigitsSNN",
    "digits_snn",
    "SpikingPreActResNet",
    "spiking_resnet18",
    "spiking_resnet34",
    "SpikingVGG11",
    "vgg11_bn",
    "vgg11_ws",
    "SpikingNFResNet",
    "nf_resnet34",
    "nf_resnet50",
    "nf_resnet101",
]
