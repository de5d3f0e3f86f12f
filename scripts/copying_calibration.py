"""How the data-copying test (``xaigan copying``) reads on image sets whose relation to a training set is known: the
training set is a 20% subset of Fashion-MNIST (all 70,000 images, seed 0, as ``fmnist-efficiency-mlp`` takes it), the
fresh sample 10,000 of the images it leaves out, and the "generated" sets are

* ``unseen``: another 10,000 left-out images (a perfect generator that copies nothing: expected ~0),
* ``copies``: 10,000 training images themselves (pure memorisation),
* ``copies+noise``: the same with uniform pixel noise of +-16 grey levels (near copies),
* ``copies+shift``: the same shifted by 2 pixels (a copy a pixel metric would miss),
* ``unseen+blur``: the unseen images blurred (3x3 box): off the data, expected > 0.

    python scripts/copying_calibration.py [--json docs/analysis/copying-calibration.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from xaigan import data as data_mod
from xaigan.evaluate import PROVIDERS, ExtractorRequest
from xaigan.metrics.copying import copying_test
from xaigan.report.tables import COPYING_COLUMNS, copying_row, md_table

N = 10000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    train = data_mod.load("fashion-mnist", fraction=0.2, seed=0, download=False)
    heldout = data_mod.load_heldout("fashion-mnist", fraction=0.2, seed=0)
    order = np.random.default_rng(0).permutation(len(heldout))
    fresh, unseen = heldout.images[order[:N]], heldout.images[order[N : 2 * N]]
    copies = train.images[torch.from_numpy(np.random.default_rng(1).permutation(len(train))[:N])]
    noise = torch.from_numpy(np.random.default_rng(2).integers(-16, 17, size=copies.shape))
    blurred = F.avg_pool2d(unseen.float(), 3, stride=1, padding=1, count_include_pad=False)
    cases = {
        "unseen": unseen,
        "copies": copies,
        "copies+noise": (copies.long() + noise).clamp(0, 255).to(torch.uint8),
        "copies+shift": torch.roll(copies, shifts=(2, 2), dims=(-2, -1)),
        "unseen+blur": blurred.round().to(torch.uint8),
    }
    extractor, _ = PROVIDERS["domain"].provide(ExtractorRequest("fashion-mnist"))
    t, p = extractor(train.images), extractor(fresh)
    results = {name: copying_test(t, p, extractor(images)) for name, images in cases.items()}
    print("\n".join(md_table(("generated set", *COPYING_COLUMNS), [copying_row(k, r) for k, r in results.items()])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"extractor": extractor.meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
