"""Random perturbations: the baseline that spends no derivative at all.

``mode="sphere"`` (the paper's baseline, reference ``fastNfair/optimizers/rand_perturbation.py``) puts δ on
the sphere, δ = r·z/‖z‖ with z ~ N(0, I); ``mode="ball"`` draws δ uniformly in the ball (direction z/‖z‖,
length r·U^{1/d}, U ~ U(0, 1)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import FastfairError
from .base import InnerMaximizer, InnerResult, SeededRandomness, loss_at, project_to_ball, sample_perturbation

MODES = ("sphere", "ball")


class RandomAdversary(InnerMaximizer):
    """δ along a Gaussian direction, on the sphere of radius r (default) or uniform in the ball.

    Args:
        mode: ``"sphere"`` or ``"ball"``.
        seed / generator: randomness (default: torch's global RNG). A seeded maximiser continues its stream
            from call to call; two built with the same seed produce the same sequence.

    ``extras``: ``"path": "random"``.
    """

    name = "random"

    def __init__(
        self, *, mode: str = "sphere", seed: int | None = None, generator: torch.Generator | None = None
    ) -> None:
        if mode not in MODES:
            raise FastfairError(f"unknown random mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.random = SeededRandomness(seed, generator)
        self._options = {"mode": mode, "seed": self.random.seed}

    def _perturb(self, model: nn.Module, x: Tensor, y: Tensor, r: Tensor) -> InnerResult:
        n, d = x.shape
        delta = sample_perturbation(n, d, r, self.mode, self.random.generator_for(x.device), x)
        x_adv = (x + project_to_ball(delta, r)).detach()
        return InnerResult(
            x_adv=x_adv,
            loss=loss_at(model, x_adv, y),
            iterations=torch.zeros(n, dtype=torch.int64, device=x.device),
            extras={"path": "random"},
        )
