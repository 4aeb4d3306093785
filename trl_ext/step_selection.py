"""Which recorded denoising step a trajectory's image loss uses (Sec. 3.4 and the reference's options).

- ``uniform``: one step drawn uniformly (the paper: "one randomly chosen denoising step");
- ``round_robin``: steps taken in turn across trajectories, so each is trained equally often (the reference's
  default);
- ``weighted``: drawn with weights ``sin(π·(k + ½)/N)``, favouring the middle of the trajectory (the reference's
  third option).
"""

from __future__ import annotations

import math
import random

from clear_plugins.errors import ClearConfigError

STRATEGIES: tuple[str, ...] = ("uniform", "round_robin", "weighted")


class StepSelector:
    """Draws step indices ``0..N−1`` with one strategy; seeded, and resumable through :attr:`counter`."""

    def __init__(self, strategy: str = "uniform", seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ClearConfigError(f"step selection {strategy!r} is not one of {STRATEGIES}.")
        self.strategy = strategy
        self.rng = random.Random(seed)
        self.counter = 0

    def choose(self, num_steps: int) -> int:
        """One step index for a trajectory of ``num_steps`` recorded steps."""
        if num_steps < 1:
            raise ClearConfigError(f"num_steps={num_steps}: a restored trajectory records at least one step.")
        self.counter += 1
        if self.strategy == "round_robin":
            return (self.counter - 1) % num_steps
        if self.strategy == "weighted":
            weights = [math.sin(math.pi * (k + 0.5) / num_steps) for k in range(num_steps)]
            return self.rng.choices(range(num_steps), weights=weights)[0]
        return self.rng.randrange(num_steps)

    def state_dict(self) -> dict:
        """JSON-ready state (counter and generator), for checkpoints."""
        version, internal, gauss = self.rng.getstate()
        return {"strategy": self.strategy, "counter": self.counter, "rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (resume continues the same sequence of choices)."""
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.counter = int(state["counter"])
