"""Our paper networks against small independent float64 re-implementations written from the
official SLTT code's description (plain torch.nn layers, a hand-written LIF neuron with the
triangle surrogate). The reference mirrors the official module names, so loading our weights
with strict=True checks the networks layer for layer; then outputs and the SLTT, SLTT-K and
BPTT gradients must agree to 1e-10."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sltt_kernels import models, training
from sltt_kernels.nn import PaperLIFNode

from conftest import HAVE_EXT

BACKEND = "cpu" if HAVE_EXT else "reference"
TOL = dict(rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# the reference: SpikingJelly-style LIF (decay_input False, soft reset, tau 1.1) with the
# PiecewiseQuadratic (triangle) surrogate of alpha 1; SLTT detaches the membrane it carries.


class TriangleSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, d):
        ctx.save_for_backward(d)
        return (d >= 0).to(d.dtype)

    @staticmethod
    def backward(ctx, grad):
        (d,) = ctx.saved_tensors
        return grad * (1.0 - d.abs()).clamp(min=0.0)


class RefLIF(nn.Module):
    def __init__(self, sltt: bool, tau: float = 1.1):
        super().__init__()
        self.sltt, self.tau, self.v = sltt, tau, None

    def reset(self):
        self.v = None

    def forward(self, x):
        if self.v is None:
            v = x
        else:
            prev = self.v.detach() if self.sltt else self.v
            v = prev * (1.0 - 1.0 / self.tau) + x
        spike = TriangleSpike.apply(v - 1.0)
        self.v = v - spike  # soft reset by V_th = 1
        return spike


class RefWSConv(nn.Conv2d):
    """Scaled weight standardisation with torch.var's default (unbiased) and a gain."""

    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__(cin, cout, k, stride, padding, bias=True)
        self.gain = nn.Parameter(torch.ones(cout, 1, 1, 1))

    def forward(self, x):
        w = self.weight
        fan_in = w[0].numel()
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (torch.var(w, (1, 2, 3), keepdim=True) * fan_in + 1e-4) ** 0.5
        return F.conv2d(x, w * self.gain, self.bias, self.stride, self.padding)


class RefPreActBlock(nn.Module):
    def __init__(self, cin, cout, stride, sltt):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=True)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=True) if (stride != 1 or cin != cout) else nn.Sequential()
        self.sn1, self.sn2 = RefLIF(sltt), RefLIF(sltt)

    def forward(self, x):
        x = self.sn1(self.bn1(x))  # the shortcut takes these spikes
        out = self.conv2(self.sn2(self.bn2(self.conv1(x))))
        return out + self.shortcut(x)


class RefPreActResNet18(nn.Module):
    def __init__(self, width, classes, sltt):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        cin, stages = width, []
        for i in range(4):
            cout = width * 2**i
            stages.append(nn.Sequential(RefPreActBlock(cin, cout, 1 if i == 0 else 2, sltt),
                                        RefPreActBlock(cout, cout, 1, sltt)))
            cin = cout
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.sn = RefLIF(sltt)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        out = self.sn(self.bn(self.layers(self.conv1(x))))
        return self.fc(out.mean((2, 3)))  # AvgPool2d over the final map, flatten


def ref_vgg11(width, classes, sltt):
    layers = []
    cin = 2
    for stage in ((1,), (2,), (4, 4), (8, 8), (8, 8)):
        for mult in stage:
            layers += [nn.Conv2d(cin, width * mult, 3, padding=1), nn.BatchNorm2d(width * mult), RefLIF(sltt),
                       nn.Identity()]  # the dropout's place (p = 0)
            cin = width * mult
        layers.append(nn.AvgPool2d(2))
    net = nn.Module()
    net.features = nn.Sequential(*layers)
    net.fc = nn.Linear(cin * 49, classes)
    net.forward = lambda x: net.fc(F.adaptive_avg_pool2d(net.features(x), 7).flatten(1))
    return net


class RefNFBlock(nn.Module):
    def __init__(self, cin, planes, stride, beta, sltt):
        super().__init__()
        self.conv1 = RefWSConv(cin, planes, 3, stride, 1)
        self.conv2 = RefWSConv(planes, planes, 3, 1, 1)
        self.sn1, self.sn2 = RefLIF(sltt), RefLIF(sltt)
        self.downsample = RefWSConv(cin, planes, 1, stride) if (stride != 1 or cin != planes) else None
        self.beta, self.alpha = beta, 0.2
        self.skipinit_gain = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = self.sn1(x / self.beta) * 2.74
        identity = self.downsample(out) if self.downsample is not None else x
        out = self.conv2(self.sn2(self.conv1(out)) * 2.74)
        return out * self.skipinit_gain * self.alpha + identity


class RefNFResNet34(nn.Module):
    def __init__(self, width, classes, sltt):
        super().__init__()
        self.stem = RefWSConv(3, width, 7, 2, 3)
        cin, var, stages = width, 1.0, []
        for i, n in enumerate((3, 4, 6, 3)):
            planes, blocks = width * 2**i, []
            for j in range(n):
                b = RefNFBlock(cin, planes, 2 if (i > 0 and j == 0) else 1, var**0.5, sltt)
                blocks.append(b)
                var = (1.0 if b.downsample is not None else var) + 0.04
                cin = planes
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        out = self.layers(F.avg_pool2d(self.stem(x), 3, 2, 1))
        return self.fc(out.mean((2, 3)))


# ----------------------------------------------------------------------------------------------


def _ours_state_as_reference(net):
    # our stateless layers sit in FoldTime wrappers (.module); the reference has them bare
    return {k.replace(".module.", "."): v for k, v in net.state_dict().items()}


def _perturb(net):
    # away from the zero / unit initial values, so that every parameter carries a gradient
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("skipinit_gain"):
                p.fill_(0.7)
            elif p.dim() <= 1 or name.endswith("gain"):
                p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            elif name.startswith("fc"):
                p.normal_(0, 0.1, generator=g)


CASES = {
    "resnet18": (lambda: models.spiking_resnet18(num_classes=5, width=4, neuron=lambda: PaperLIFNode(backend=BACKEND)),
                 lambda sltt: RefPreActResNet18(4, 5, sltt), (2, 3, 8, 8), "threshold"),
    "vgg11_bn": (lambda: models.vgg11_bn(num_classes=5, width=4, neuron=lambda: PaperLIFNode(backend=BACKEND)),
                 lambda sltt: ref_vgg11(4, 5, sltt), (2, 2, 32, 32), "onehot"),
    "nf_resnet34": (lambda: models.nf_resnet34(num_classes=5, width=4, neuron=lambda: PaperLIFNode(backend=BACKEND)),
                    lambda sltt: RefNFResNet34(4, 5, sltt), (2, 3, 16, 16), "threshold"),
}


def _pair(name, sltt):
    build, build_ref, shape, target = CASES[name]
    torch.manual_seed(0)
    ours = build().double()
    _perturb(ours)
    ref = build_ref(sltt).double()
    ref.load_state_dict(_ours_state_as_reference(ours), strict=True)  # layer for layer
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    y = torch.tensor([1, 3])
    return ours, ref, x, y, training.make_loss(0.05, target)


def _reset(ref):
    for m in ref.modules():
        if isinstance(m, RefLIF):
            m.reset()


def _compare(ours, ref, result, ref_outs):
    torch.testing.assert_close(result.output.double(), torch.stack(ref_outs).mean(0), **TOL)
    ref_params = dict(ref.named_parameters())
    n_nonzero = 0
    for name, p in ours.named_parameters():
        r = ref_params[name.replace(".module.", ".")]
        torch.testing.assert_close(p.grad, r.grad, **TOL, msg=name)
        n_nonzero += bool(r.grad.abs().max() > 0)
    assert n_nonzero >= len(ref_params) // 2  # a real comparison, not zeros against zeros


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("method", ["sltt", "sltt-k", "bptt"])
def test_outputs_and_gradients_equal_the_official_description(name, method):
    T, K = 3, 2
    ours, ref, x, y, loss_fn = _pair(name, sltt=method != "bptt")
    opt = torch.optim.SGD(ours.parameters(), lr=0.0)
    if method == "bptt":
        res = training.bptt_step(ours, opt, x, y, T, loss_fn=loss_fn)
        bp_steps = set(range(T))
    elif method == "sltt":
        res = training.sltt_step(ours, opt, x, y, T, loss_fn=loss_fn)
        bp_steps = set(range(T))
    else:
        res = training.sltt_step(ours, opt, x, y, T, K=K, loss_fn=loss_fn, generator=random.Random(11))
        bp_steps = set(random.Random(11).sample(range(T), K))
    _reset(ref)
    outs, total = [], 0.0
    for t in range(T):
        out = ref(x)
        outs.append(out.detach())
        if t in bp_steps:
            total = total + loss_fn(out, y) / T  # Algorithm S2: / T, for SLTT-K too
    total.backward()
    _compare(ours, ref, res, outs)
