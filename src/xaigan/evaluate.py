"""Evaluate generators: FID, KID and precision/recall in-process, from the generator directly (no PNG round trip).

Generated images are drawn with a seeded noise source, quantised to uint8 exactly as a saved image would be, and fed
to a feature extractor; real statistics are cached by content (see :mod:`xaigan.metrics.cache`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xaigan import data as data_mod
from xaigan import metrics, models
from xaigan.config import Config
from xaigan.errors import InputError, MissingFileError
from xaigan.io import UnreadableFileError, atomic_write_text, to_uint8
from xaigan.metrics.features import FeatureExtractor
from xaigan.registry import Registry
from xaigan.rundir import BEST, LAST, RunDir
from xaigan.train import Trainer, pick_device
from xaigan.train import checkpoint as checkpoint_mod
from xaigan.train.checkpoint import rng_state, set_rng_state

log = logging.getLogger(__name__)


def metrics_home() -> Path:
    return data_mod.home() / "metrics"


@torch.no_grad()
def generate_uint8(
    G: nn.Module, n: int, noise_dim: int, seed: int = 0, batch_size: int = 1000, rows: slice | None = None
) -> torch.Tensor:
    """``n`` samples of ``G`` as uint8 ``(n, C, H, W)``; same seed, same images. G's mode is restored. ``rows``:
    only those of the ``n`` samples (a distributed run's rank makes its share)."""
    device = next(G.parameters()).device
    noise = torch.randn(n, noise_dim, generator=torch.Generator().manual_seed(seed))  # one draw: batch-size free
    if rows is not None:
        noise = noise[rows]
    was_training = G.training
    G.eval()
    out = []
    for start in range(0, len(noise), batch_size):
        out.append(to_uint8(G(noise[start : start + batch_size].to(device))).cpu())
    G.train(was_training)
    return torch.cat(out)


PR_K = 5
"""Neighbours for precision/recall and density/coverage: with k = 3 real train vs real test scored 0.87-0.89 on
Fashion-MNIST (10k each), with k = 5 0.94-0.95 (``docs/metrics.md``)."""


@dataclass(frozen=True)
class ExtractorRequest:
    """What a provider may use to build a feature extractor for one evaluation."""

    dataset: str
    data_dir: str | None = None
    device: str | torch.device = "cpu"
    seed: int = 0  # of the domain classifier's training, when it is not cached yet
    inception_weights: str | None = None


@dataclass(frozen=True)
class ExtractorProvider:
    """How the evaluator obtains one registered feature extractor: ``provide(request)`` gives the extractor and what
    a result records beside its meta (the domain classifier's accuracy, ...); ``check(request)`` fails at once on
    what is missing, before a training run spends epochs."""

    provide: Callable[[ExtractorRequest], tuple[FeatureExtractor, dict[str, Any]]]
    check: Callable[[ExtractorRequest], None] = lambda request: None


PROVIDERS: Registry[ExtractorProvider] = Registry("feature extractor")
"""One provider per extractor of :data:`xaigan.metrics.features.REGISTRY`, under the same name."""


def _provide_domain(req: ExtractorRequest) -> tuple[FeatureExtractor, dict[str, Any]]:
    """The dataset's own classifier (trained on its train split, cached by content), as a feature extractor."""
    train = data_mod.load(req.dataset, data_dir=req.data_dir, split="train", download=False)
    if (train.labels < 0).any():
        raise InputError(
            f"the domain extractor needs labelled data and {req.dataset} has no labels; use --features inception"
        )
    kwargs: dict[str, Any] = {}
    if train.meta["split"] == "train":  # a real split exists: measure accuracy on the official test split
        test = data_mod.load(req.dataset, data_dir=req.data_dir, split="test", download=False)
        kwargs.update(val_images=test.images, val_labels=test.labels)
    model, info = metrics.load_or_train_domain(
        train.images,
        train.labels,
        dataset_hash=train.meta["content_sha256"],
        cache_dir=metrics_home() / "domain",
        seed=req.seed,
        log=log.info,
        augment=True,
        **kwargs,
    )
    # Whether it came from the cache is logged, not stored: a result must not depend on what was cached.
    log.info(
        "domain extractor %s (%s): held-out accuracy %.4f",
        info["arch"],
        "cached" if info["cached"] else "trained now",
        info["accuracy"],
    )
    extractor = metrics.features.get("domain", model=model, device=req.device)
    return extractor, {"accuracy": info["accuracy"], "trained_on": f"{req.dataset}:{train.meta['split']}"}


def _provide_inception(req: ExtractorRequest) -> tuple[FeatureExtractor, dict[str, Any]]:
    return metrics.features.get("inception", weights_path=req.inception_weights, device=req.device), {}


PROVIDERS.register("domain", ExtractorProvider(_provide_domain))
PROVIDERS.register(
    "inception",
    ExtractorProvider(
        _provide_inception, check=lambda req: metrics.inception.resolve_weights_path(req.inception_weights)
    ),
)


class Evaluator:
    """Holds a feature extractor and the cached real statistics of one reference set; scores generators."""

    def __init__(
        self,
        dataset: str,
        *,
        data_dir: str | None = None,
        reference: str = "all",
        features: str = "domain",
        inception_weights: str | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        provider = PROVIDERS[features]  # an unknown name fails before any data is read
        self.reference = data_mod.load(dataset, data_dir=data_dir, split=reference, download=False)
        self.reference_id = {
            "dataset": dataset,
            "split": self.reference.meta["split"],
            "n": len(self.reference),
            "content_sha256": self.reference.meta["content_sha256"],
            "source": self.reference.meta["source"],
        }
        request = ExtractorRequest(dataset, data_dir, device, seed, inception_weights)
        self.extractor, info = provider.provide(request)
        self.extractor_info: dict[str, Any] = {**info, **self.extractor.meta}
        self.real = metrics.real_statistics(
            self.extractor,
            self.reference.images,
            cache_dir=metrics_home(),
            data_key=f"{dataset}-{reference}",
            data_hash=self.reference.meta["content_sha256"],
        )

    def score_images(self, fake_uint8: torch.Tensor, kid_subsets: int = 100) -> dict[str, Any]:
        t0 = time.perf_counter()
        return self.score_features(self.extractor(fake_uint8), kid_subsets, t0)

    def score_features(self, feats: np.ndarray, kid_subsets: int = 100, t0: float | None = None) -> dict[str, Any]:
        """Scores of generated samples from their features (as :attr:`extractor` computes them)."""
        t0 = time.perf_counter() if t0 is None else t0
        fid = metrics.frechet_distance(self.real["mu"], self.real["sigma"], *metrics.feature_statistics(feats))
        real = self.real["features"]
        kid_mean, kid_std = metrics.kid(real, feats, num_subsets=kid_subsets)
        if len(real) > len(feats):  # precision/recall compare sets of equal size (recall is inflated otherwise)
            real = real[np.sort(np.random.default_rng(0).choice(len(real), len(feats), replace=False))]
        knn = metrics.manifold_scores(real, feats, k=PR_K)
        return {
            **self.classified(feats),
            "fid": float(fid),
            "kid_mean": float(kid_mean),
            "kid_std": float(kid_std),
            "precision": knn["precision"],
            "recall": knn["recall"],
            "density": knn["density"],
            "coverage": knn["coverage"],
            "k": PR_K,
            "n": int(len(feats)),
            "extractor": dict(self.extractor_info),
            "reference": dict(self.reference_id),
            "seconds": round(time.perf_counter() - t0, 2),
        }

    def classified(self, features: np.ndarray, confident: float = 0.9) -> dict[str, Any]:
        """With the domain extractor, which is a classifier of the dataset's classes: the fraction of samples it
        classifies with max softmax >= ``confident`` and how many classes those cover (a recognisability check that
        does not depend on the feature space's distances), from the samples' ``features``. Empty for other
        extractors."""
        probs = self.extractor.classify(features)
        if probs is None:
            return {}
        sure = probs.max(1).values >= confident
        return {
            "confident": float(sure.float().mean()),
            "classes_covered": len(set(probs.argmax(1)[sure].tolist())),
        }

    def score_generator(self, G: nn.Module, n: int, noise_dim: int, seed: int = 0) -> dict[str, Any]:
        result = self.score_images(generate_uint8(G, n, noise_dim, seed))
        result["noise_seed"] = seed
        return result


def load_generator(
    run_dir: str | Path | RunDir, checkpoint: str = LAST, average: bool = True
) -> tuple[nn.Module, Config]:
    """The generator of a run's checkpoint (on CPU; G's weight average if the run kept one, unless ``average`` is
    False: then G itself) and the run's config."""
    run = RunDir(run_dir)
    cfg = Config.from_dict(run.read_config())
    shape = run.read_data_meta()["image_shape"]
    G, _ = models.build(cfg.model, shape[0], shape[1], cfg.noise_dim)
    path = run.checkpoint(checkpoint)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint {path}")
    state = checkpoint_mod.load(path)
    if cfg.g_ema > 0 and average:  # the run's result is G's weight average (xaigan.train.ema)
        if "G_ema" not in state:
            raise UnreadableFileError(f"{path} has no G_ema although the run was trained with g_ema {cfg.g_ema}")
        G.load_state_dict(state["G_ema"]["weights"])
    else:
        G.load_state_dict(state["G"])
    return G, cfg


def evaluate_run(
    run_dir: str | Path | RunDir,
    *,
    n: int = 10000,
    features: str = "domain",
    reference: str = "all",
    checkpoint: str = LAST,
    inception_weights: str | None = None,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score a run's checkpoint and write ``eval.json`` (atomically) into the run folder.

    A run with a weight average of G (``g_ema``) is scored through the average (the run's result) and, on the same
    noise, through G itself: ``eval.json`` then holds G's own scores under ``g_itself``.
    ``device``: where G runs and features are extracted (default: the run's own device setting).
    """
    run = RunDir(run_dir)
    run.remove_stale_temps()
    G, cfg = load_generator(run, checkpoint)
    where = pick_device(cfg.device) if device is None else torch.device(device)
    G.to(where)
    evaluator = evaluator or Evaluator(
        cfg.dataset,
        data_dir=cfg.data_dir,
        reference=reference,
        features=features,
        inception_weights=inception_weights,
        device=where,
    )
    result = evaluator.score_generator(G, n, cfg.noise_dim, seed)
    if cfg.g_ema > 0:
        itself, _ = load_generator(run, checkpoint, average=False)
        own = evaluator.score_generator(itself.to(where), n, cfg.noise_dim, seed)
        result["g_itself"] = {k: own[k] for k in OWN_SCORES if k in own}
    result.update(run=str(run.path), checkpoint=checkpoint)
    run.write_eval(result)
    return result


OWN_SCORES = ("fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage")
"""What ``eval.json`` keeps of G's own scores beside its weight average's."""


def copying_run(
    run_dir: str | Path | RunDir,
    *,
    n: int = 10000,
    features: str = "domain",
    checkpoint: str = LAST,
    inception_weights: str | None = None,
    seed: int = 0,
    cells: int = 20,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """The data-copying test (:mod:`xaigan.metrics.copying`) of a run's checkpoint: ``n`` samples against the images
    it trained on, with up to ``n`` images of the same data it never saw as the fresh sample, in the feature space
    of ``features``; writes ``copying.json`` (atomically) into the run folder."""
    run = RunDir(run_dir)
    G, cfg = load_generator(run, checkpoint)
    where = pick_device(cfg.device) if device is None else torch.device(device)
    kwargs: dict[str, Any] = dict(
        data_dir=cfg.data_dir, split=cfg.split, fraction=cfg.fraction, subset=cfg.subset, seed=cfg.seed
    )
    train = data_mod.load(cfg.dataset, download=False, **kwargs)
    recorded = run.read_data_meta().get("content_sha256")
    if recorded and recorded != train.meta["content_sha256"]:
        raise InputError(f"{run.path}: its training images are not the ones it recorded (data.json): data changed")
    heldout = data_mod.load_heldout(cfg.dataset, **kwargs)
    pick = np.sort(np.random.default_rng(seed).permutation(len(heldout))[:n])
    extractor, info = PROVIDERS[features].provide(
        ExtractorRequest(cfg.dataset, cfg.data_dir, where, 0, inception_weights)
    )
    result = metrics.copying.copying_test(
        extractor(train.images),
        extractor(heldout.images[torch.from_numpy(pick)]),
        extractor(generate_uint8(G.to(where), n, cfg.noise_dim, seed)),
        cells=min(cells, len(train)),
        seed=seed,
    )
    result.update(
        run=str(run.path),
        checkpoint=checkpoint,
        noise_seed=seed,
        extractor={**info, **extractor.meta},
        heldout={
            "split": heldout.meta["split"],
            "n_total": len(heldout),
            "content_sha256": heldout.meta["content_sha256"],
        },
    )
    atomic_write_text(run.copying_path, json.dumps(result, indent=2))
    return result


def attach(trainer: Trainer) -> None:
    """Score the generator every ``eval_every`` epochs during training (on the run's device); keep the best
    checkpoint by FID. With ``g_ema`` the weight average is scored, and G's own FID is logged as ``fid_raw``."""
    cfg = trainer.cfg
    state: dict[str, Any] = {}

    PROVIDERS[cfg.eval_features].check(ExtractorRequest(cfg.dataset, cfg.data_dir))  # fail now, not after epochs

    def callback(tr: Trainer, epoch: int) -> None:
        if (epoch + 1) % cfg.eval_every and epoch + 1 != cfg.epochs:
            return
        rng = rng_state()  # evaluation (and a first-time domain-classifier training) must not shift training's RNG
        try:
            fid = _evaluate(tr, epoch)
        finally:
            set_rng_state(rng)
        if not tr.main:
            return
        if fid < tr.extra.get("best_fid", float("inf")):
            tr.extra["best_fid"] = fid
            tr.extra["best_epoch"] = epoch
            tr.save_checkpoint(BEST)  # after the RNG is restored: best.pt holds training's state, not evaluation's
        log.info("epoch %d: FID %.3f (best %.3f)", epoch, fid, tr.extra["best_fid"])

    def _evaluate(tr: Trainer, epoch: int) -> float:
        if "evaluator" not in state:
            if tr.dist is not None and not tr.main:
                tr.dist.barrier()  # rank 0 trains and caches a missing extractor first; the others load it
            state["evaluator"] = Evaluator(
                cfg.dataset,
                data_dir=cfg.data_dir,
                reference=cfg.eval_reference,
                features=cfg.eval_features,
                device=tr.device,
            )
            if tr.dist is not None and tr.main:
                tr.dist.barrier()
        evaluator = state["evaluator"]
        if tr.dist is None:
            result = evaluator.score_generator(tr.generator, cfg.eval_n, cfg.noise_dim, seed=0)
        else:  # each rank extracts the features of its share of the samples; rank 0 scores them all
            share = generate_uint8(tr.generator, cfg.eval_n, cfg.noise_dim, seed=0, rows=tr.dist.shard(cfg.eval_n))
            feats = tr.dist.gather(torch.as_tensor(np.asarray(evaluator.extractor(share))))
            if not tr.main:
                return math.nan
            result = evaluator.score_features(feats.numpy())
        record = {"epoch": epoch, "step": tr.step, **{k: result[k] for k in ("fid", "kid_mean", "kid_std")}}
        record.update(precision=result["precision"], recall=result["recall"], eval_n=result["n"])
        record["extractor"] = evaluator.extractor.weights_hash  # late FIDs pair only within one extractor
        if tr.ema is not None and tr.dist is None:  # the weight average is scored; G itself beside it, to compare
            record["fid_raw"] = evaluator.score_generator(tr.G, cfg.eval_n, cfg.noise_dim, seed=0)["fid"]
        tr.log_record(record)
        return result["fid"]

    trainer.callbacks.append(callback)
