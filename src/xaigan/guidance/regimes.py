"""Which regime each guided step falls in: nothing, some or all of the batch explained.

With the paper's ``batch-minmax`` a partially explained batch fills the other samples with 1.0 before the min-max;
saliencies are far below 1, so the explained samples get masks near 0 and the others 1, and the rule amounts to
"scale the gradient by ``1 + alpha`` for the samples D accepts" in those steps. Counting the regimes per run says
how often the guidance did what its name says.
"""

from __future__ import annotations

from torch import Tensor


class Regimes:
    """Counts of guided calls by regime, and the mean masks of partial calls (JSON-able state for resume)."""

    KEYS = ("none", "partial", "all", "sum_explained", "sum_others")

    def __init__(self) -> None:
        self.state: dict = {"none": 0, "partial": 0, "all": 0, "sum_explained": 0.0, "sum_others": 0.0}

    def update(self, mask: Tensor, selected: Tensor) -> None:
        n, s = int(selected.sum()), self.state
        if n == 0:
            s["none"] += 1
        elif n == len(selected):
            s["all"] += 1
        else:
            s["partial"] += 1
            s["sum_explained"] += float(mask[selected].mean())
            s["sum_others"] += float(mask[~selected].mean())

    def summary(self) -> dict:
        """``none``/``partial``/``all``: calls that explained no sample (the gradient is unchanged), some, or the
        whole batch; for partial calls, ``partial_mask_mean_explained`` and ``partial_mask_mean_others``."""
        s = self.state
        out: dict = {k: s[k] for k in ("none", "partial", "all")}
        if s["partial"]:
            out["partial_mask_mean_explained"] = s["sum_explained"] / s["partial"]
            out["partial_mask_mean_others"] = s["sum_others"] / s["partial"]
        return out

    def state_dict(self) -> dict:
        return dict(self.state)

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.KEYS):
            raise ValueError(f"guidance regime state must hold {self.KEYS}, got {sorted(state)}")
        self.state = {k: type(self.state[k])(state[k]) for k in self.KEYS}
