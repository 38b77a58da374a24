"""Layers for spiking networks in single-step ('s') and multi-step ('m', x: [T, B, ...]) mode."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["FoldTime", "StepBatchNorm2d", "ScaledWSConv2d", "TimeDropout", "Scale"]


class FoldTime(nn.Module):
    """Runs a stateless layer on multi-step input by folding T into the batch.

    step_mode='m': x [T, B, ...] -> module(x as [T*B, ...]) -> [T, B, ...]; 's': module(x).

    Example:
        >>> conv = FoldTime(nn.Conv2d(3, 8, 3, padding=1), step_mode="m")
        >>> conv(torch.randn(4, 2, 3, 32, 32)).shape
        torch.Size([4, 2, 8, 32, 32])
    """

    def __init__(self, module: nn.Module, step_mode: str = "s"):
        super().__init__()
        self.module = module
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.module(x)
        T, B = x.shape[0], x.shape[1]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode!r}"


class StepBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with batch statistics per time step, as the paper's BN applied once per step.

    step_mode='m': x [T, B, C, H, W]; each step is normalised with its own batch statistics,
    and the running statistics and the affine parameters are shared across steps (updated once
    per step, in order, exactly as T single-step calls would). 's': x [B, C, H, W].
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, step_mode: str = "s"):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return super().forward(x)
        if x.dim() != 5:
            raise ValueError(f"StepBatchNorm2d(step_mode='m') needs x [T, B, C, H, W], got {tuple(x.shape)}")
        return torch.stack([super(StepBatchNorm2d, self).forward(x[t]) for t in range(x.shape[0])])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", step_mode={self.step_mode!r}"


class ScaledWSConv2d(nn.Conv2d):
    """Conv2d with scaled weight standardisation (as in normaliser-free networks):

        W_hat = gain * (W - mean(W)) / sqrt(var(W) * fan_in + eps)

    per output channel, with a learnable gain (initialised to 1). x: [B, C, H, W]; wrap it in
    FoldTime (or use step_mode='m') for [T, B, C, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, gain: bool = True, eps: float = 1e-4, step_mode: str = "s"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1)) if gain else None
        self.eps = eps
        self.step_mode = step_mode

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight
        fan_in = w[0].numel()
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) * torch.rsqrt(var * fan_in + self.eps)
        return w * self.gain if self.gain is not None else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.standardized_weight()
        if self.step_mode == "m":
            T, B = x.shape[0], x.shape[1]
            return self._conv_forward(x.flatten(0, 1), w, self.bias).unflatten(0, (T, B))
        return self._conv_forward(x, w, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gain={self.gain is not None}, eps={self.eps}, step_mode={self.step_mode!r}"


class TimeDropout(nn.Module):
    """Dropout with one mask for all time steps of a sample (drawn at the first step after
    reset(), or for the whole sequence in step_mode='m'), so that online and multi-step runs
    drop the same units. Scales kept units by 1/(1-p) in training; identity in eval."""

    def __init__(self, p: float = 0.5, step_mode: str = "s"):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must lie in [0, 1), got {p}")
        self.p = p
        self.step_mode = step_mode
        self.mask: Optional[torch.Tensor] = None

    def reset(self) -> None:
        self.mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = x.shape[1:] if self.step_mode == "m" else x.shape
        if self.mask is None or tuple(self.mask.shape) != tuple(shape):
            self.mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1 - self.p) / (1 - self.p)
        return x * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}, step_mode={self.step_mode!r}"


class Scale(nn.Module):
    """Multiplies by a constant (no parameter): x * scale, any shape, either step mode.

    Example:
        >>> Scale(2.74)(torch.ones(2, 3)).max().item()
        2.74
    """

    def __init__(self, scale: float):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
