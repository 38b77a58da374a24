"""The SLTT paper's training recipes, per data set, as the training command applies them
(train_command.py); docs/paper.md says where each value comes from.

    >>> from sltt_kernels.recipes import recipe_defaults
    >>> recipe_defaults("paper", "cifar10")["T"]
    6

- paper: the official README commands, train_SLTT.py's defaults, Table S4, supplementary I;
- fast-1bit: the same with the rectangle surrogate (1 bit per element-step saved for the backward);
- paper-finetune: ImageNet's second stage (T = 6, 30 epochs, lr 0.001, no weight decay).
"""

from __future__ import annotations

from . import surrogate as _surrogate

__all__ = ["PAPER", "RECIPES", "SURROGATES", "recipe_defaults"]

# settings shared by every data set of the paper's recipe
PAPER = dict(tau=1.1, surrogate="triangle", momentum=0.9, amp_dtype="fp16")
# K: SLTT-K's back-propagated steps in the README's SLTT-K commands
RECIPES = {
    "paper": {
        "digits": dict(model="digits", T=4, epochs=20, lr=0.1, batch_size=64, weight_decay=1e-4, dropout=0.0,
                       loss_lambda=0.05, mse_target="onehot", K=2, drop_last=False),  # not a paper data set
        "cifar10": dict(model="resnet18", T=6, epochs=200, lr=0.1, batch_size=128, weight_decay=5e-5, dropout=0.0,
                        loss_lambda=0.05, mse_target="threshold", K=2, drop_last=False),
        "cifar100": dict(model="resnet18", T=6, epochs=200, lr=0.1, batch_size=128, weight_decay=5e-4, dropout=0.0,
                         loss_lambda=0.05, mse_target="threshold", K=2, drop_last=False),
        "dvs-gesture": dict(model="vgg11_bn", T=20, epochs=300, lr=0.1, batch_size=16, weight_decay=5e-4,
                            dropout=0.4, loss_lambda=0.05, mse_target="threshold", K=4, drop_last=True),
        "dvs-cifar10": dict(model="vgg11_bn", T=10, epochs=300, lr=0.05, batch_size=128, weight_decay=5e-4,
                            dropout=0.3, loss_lambda=0.05, mse_target="onehot", K=2, drop_last=False),
        "imagenet": dict(model="nf_resnet34", T=1, epochs=100, lr=0.1, batch_size=256, weight_decay=1e-5,
                         dropout=0.0, loss_lambda=0.0, mse_target="threshold", K=2, drop_last=False),
    },
}
RECIPES["fast-1bit"] = {k: dict(v, surrogate="rect") for k, v in RECIPES["paper"].items()}
RECIPES["paper-finetune"] = {"imagenet": dict(RECIPES["paper"]["imagenet"], T=6, epochs=30, lr=0.001,
                                              weight_decay=0.0)}

SURROGATES = {
    "triangle": lambda: _surrogate.Triangle(1.0),  # SpikingJelly's PiecewiseQuadratic(alpha=1)
    "rect": lambda: _surrogate.Rect(width=1.0),  # the official Rectangle: 1 on |d| <= V_th / 2
    "sigmoid": lambda: _surrogate.Sigmoid(4.0),  # SpikingJelly's Sigmoid default
}


def recipe_defaults(recipe: str, dataset: str) -> dict:
    """Every setting the recipe gives for dataset (a new dict); ValueError naming both when the
    recipe has no settings for it."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    if dataset not in RECIPES[recipe]:
        raise ValueError(f"--recipe {recipe} has no settings for --dataset {dataset} "
                         f"(it covers {', '.join(sorted(RECIPES[recipe]))})")
    return dict(PAPER, method="sltt", seed=0, image_size=224, **RECIPES[recipe][dataset])
