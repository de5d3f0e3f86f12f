"""Packed training: each member of a pack trains as its seed trains alone (the lone ``gan_step`` is the reference).

Tolerances: on the CPUs we test on, every packed member is bit-identical to its lone run (the batched products
round as the lone ones do, see ``PackedNet._linear``), but a BLAS that rounds a batched product differently is within
its rights. Such a last-bit difference stays tiny in the losses (rtol 1e-5) and gradients, but Adam divides each
gradient element by its own running magnitude, so an element whose gradient is near zero can move by a fraction of a
learning rate (2e-4 here) and, through LeakyReLU kinks, grow over a few steps. Weights are therefore compared with
atol 1e-4 (half an Adam step): a real mistake (a wrong mask, noise row or loss weight, no clipping) moves most
elements by whole steps and the losses by far more than 1e-5.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xaigan import models
from xaigan.config import Config
from xaigan.errors import InputError
from xaigan.explain import resolve_output
from xaigan.models import MLPDiscriminator, MLPGenerator
from xaigan.train.pack import Pack, PackedNet
from xaigan.train.step import gan_step, make_optimizers
from xaigan.train.weights import sample_weights

SEEDS = (11, 12, 13)
B, STEPS, EPOCH = 16, 5, 1
WEIGHTS = {"rtol": 1e-4, "atol": 1e-4}
LOSSES = {"rtol": 1e-5, "atol": 1e-6}


def small_cfg(**options) -> Config:
    """The config of :func:`small_mlp`'s cell."""
    return Config(noise_dim=16, **options)


def small_mlp() -> tuple[nn.Module, nn.Module]:
    """The paper's MLP classes at a width that trains in milliseconds (8x8 images, noise 16)."""
    return MLPGenerator(image_size=8, noise_dim=16, widths=(32, 64, 96)), MLPDiscriminator(
        image_size=8, widths=(96, 64, 32)
    )


def reals_of(seed: int, steps: int = STEPS, size: int = 8) -> torch.Tensor:
    """``(steps, B, 1, size, size)``: a member's real batches, from their own generator."""
    return torch.rand(steps, B, 1, size, size, generator=torch.Generator().manual_seed(1000 + seed)) * 2 - 1


def lone_run(seed: int, cfg: Config, build, reals: torch.Tensor):
    """The reference: seed, build, one Adam pair, ``gan_step`` per batch; the nets, optimisers and stats."""
    torch.manual_seed(seed)
    G, D = build()
    opt_g, opt_d = make_optimizers(G, D, cfg)
    weights = sample_weights(cfg, resolve_output(D, cfg.d_output), EPOCH)
    stats = [gan_step(G, D, opt_g, opt_d, real, cfg, weights=weights) for real in reals]
    return G, D, opt_g, opt_d, stats


def packed(seeds, cfg: Config, build) -> Pack:
    """Members built as the lone runs build them; each generator starts where the global one is after building."""
    Gs, Ds, gens = [], [], []
    for seed in seeds:
        torch.manual_seed(seed)
        G, D = build()
        Gs.append(G)
        Ds.append(D)
        gens.append(torch.Generator().set_state(torch.get_rng_state()))
    return Pack(Gs, Ds, gens, cfg)


def packed_run(pack: Pack, reals: torch.Tensor) -> list[list[dict[str, float]]]:
    weights = sample_weights(pack.cfg, pack.d_output, EPOCH)
    return [pack.step(reals[:, t], weights) for t in range(reals.shape[1])]


def assert_member_is_lone(pack: Pack, k: int, lone, pstats, grads: bool = True) -> None:
    G, D, _, _, stats = lone
    state = pack.member_state(k)
    torch.testing.assert_close(dict(state["G"]), G.state_dict(), **WEIGHTS)
    torch.testing.assert_close(dict(state["D"]), D.state_dict(), **WEIGHTS)
    for t, lone_stats in enumerate(stats):
        for key, value in lone_stats.items():
            assert pstats[t][k][key] == pytest.approx(value, rel=LOSSES["rtol"], abs=LOSSES["atol"]), (t, key)
    if grads:  # G's last (clipped) gradients: gan_step leaves them in place
        for i, (p, q) in enumerate(zip(G.parameters(), pack.G.stacked)):
            torch.testing.assert_close(pack.G.member(i, q.grad, k), p.grad, rtol=1e-4, atol=1e-7)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny nets: a second thread only waits on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


OPTIONS = {
    "plain": {},
    "topk": {"g_topk": True, "g_topk_gamma": 0.5},  # epoch 1: the top half of each batch
    "accept": {"g_accept_weight": 3.0},
    "d_steps": {"d_steps": 2},
    "clip": {"g_clip": 1e-3},  # far below the gradient's norm: every G step clips
}


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("loss", ["bce-smoothed", "ns", "hinge"])
def test_members_train_as_their_seeds_alone(loss, options):
    cfg = small_cfg(loss=loss, **OPTIONS[options])
    reals = torch.stack([reals_of(s) for s in SEEDS])
    lones = [lone_run(s, cfg, small_mlp, reals[k]) for k, s in enumerate(SEEDS)]
    pack = packed(SEEDS, cfg, small_mlp)
    pstats = packed_run(pack, reals)
    for k, lone in enumerate(lones):
        assert_member_is_lone(pack, k, lone, pstats)
    if options == "clip":  # the reference clipped: its last G gradient has norm g_clip
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in lones[0][0].parameters()]))
        assert norm.item() == pytest.approx(cfg.g_clip, rel=1e-3)
    assert len({s["g_loss"] for s in pstats[0]}) == len(SEEDS), "the members are different runs"


def test_the_paper_mlp_cell():
    cfg = Config()  # the paper's bce-smoothed, g_clip 10, Dropout(0.3) in D
    seeds, steps = (3, 4), 2
    reals = torch.stack([reals_of(s, steps, 32) for s in seeds])
    lones = [lone_run(s, cfg, lambda: models.build("mlp"), reals[k]) for k, s in enumerate(seeds)]
    pack = packed(seeds, cfg, lambda: models.build("mlp"))
    pstats = packed_run(pack, reals)
    for k, lone in enumerate(lones):
        assert_member_is_lone(pack, k, lone, pstats)


def plain_sequential() -> tuple[nn.Module, nn.Module]:
    """Plain Sequential nets: a bias-free layer, ReLU, and a D that returns probabilities."""
    G = nn.Sequential(
        nn.Linear(16, 48, bias=False), nn.ReLU(), nn.Linear(48, 64), nn.Tanh(), nn.Unflatten(1, (1, 8, 8))
    )
    D = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 24), nn.LeakyReLU(0.2), nn.Dropout(0.5), nn.Linear(24, 1), nn.Sigmoid()
    )
    return G, D


def test_plain_sequential_nets_and_a_probability_d():
    cfg = small_cfg(loss="ns", g_accept_weight=1.0)
    reals = torch.stack([reals_of(s) for s in SEEDS])
    lones = [lone_run(s, cfg, plain_sequential, reals[k]) for k, s in enumerate(SEEDS)]
    pack = packed(SEEDS, cfg, plain_sequential)
    assert pack.d_output == "prob"
    pstats = packed_run(pack, reals)
    for k, lone in enumerate(lones):
        assert_member_is_lone(pack, k, lone, pstats)


def test_member_state_is_a_lone_runs_state_and_continues_alone():
    cfg = small_cfg(g_accept_weight=2.0)
    reals = torch.stack([reals_of(s, STEPS + 1) for s in SEEDS])
    pack = packed(SEEDS, cfg, small_mlp)
    packed_run(pack, reals[:, :STEPS])
    k = 1
    state = pack.member_state(k)
    lone = lone_run(SEEDS[k], cfg, small_mlp, reals[k, :STEPS])
    for key, opt in (("opt_g", lone[2]), ("opt_d", lone[3])):  # exactly a lone Adam's state_dict
        mine, theirs = state[key], opt.state_dict()
        assert mine["param_groups"] == theirs["param_groups"]
        assert sorted(mine["state"]) == sorted(theirs["state"]) == list(range(len(theirs["state"])))
        for i, entry in theirs["state"].items():
            assert sorted(mine["state"][i]) == sorted(entry)
            torch.testing.assert_close(mine["state"][i], entry, **WEIGHTS)
    assert torch.equal(state["rng"], torch.get_rng_state()), "the lone run's generator is where the member's is"

    G, D = small_mlp()
    opt_g, opt_d = make_optimizers(G, D, cfg)
    for module, key in ((G, "G"), (D, "D"), (opt_g, "opt_g"), (opt_d, "opt_d")):
        module.load_state_dict(state[key])
    torch.set_rng_state(state["rng"])
    alone = gan_step(G, D, opt_g, opt_d, reals[k, STEPS], cfg, weights=sample_weights(cfg, "logit", EPOCH))
    together = packed_run(pack, reals[:, STEPS:])[0][k]
    assert together == pytest.approx(alone, rel=LOSSES["rtol"], abs=LOSSES["atol"])
    torch.testing.assert_close(dict(pack.member_state(k)["G"]), G.state_dict(), **WEIGHTS)
    torch.testing.assert_close(dict(pack.member_state(k)["D"]), D.state_dict(), **WEIGHTS)


def test_lone_checkpoints_join_a_pack():
    cfg = small_cfg(loss="hinge")
    reals = torch.stack([reals_of(s, STEPS + 2) for s in SEEDS])
    lones, states = [], []
    for k, seed in enumerate(SEEDS):
        G, D, opt_g, opt_d, stats = lone = lone_run(seed, cfg, small_mlp, reals[k, :STEPS])
        lones.append(lone)
        state = {"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
        state["rng"] = {"torch": torch.get_rng_state()}  # as a lone checkpoint stores it (rng_state())
        states.append(copy.deepcopy(state))  # state_dicts share the live tensors
    for k, (G, D, opt_g, opt_d, _) in enumerate(lones):  # the lone runs go on
        torch.set_rng_state(states[k]["rng"]["torch"])
        weights = sample_weights(cfg, "logit", EPOCH)
        lones[k][4][:] = [gan_step(G, D, opt_g, opt_d, real, cfg, weights=weights) for real in reals[k, STEPS:]]
    pack = packed((0, 0, 0), cfg, small_mlp)  # other weights, no Adam state yet
    for k, state in enumerate(states):
        pack.load_member(k, state)
    pstats = packed_run(pack, reals[:, STEPS:])
    for k, lone in enumerate(lones):
        assert_member_is_lone(pack, k, lone, pstats, grads=False)


def test_members_at_different_adam_steps_cannot_be_packed():
    cfg = small_cfg()
    pack = packed(SEEDS[:2], cfg, small_mlp)
    packed_run(pack, torch.stack([reals_of(s, 2) for s in SEEDS[:2]]))
    behind = packed(SEEDS[:1], cfg, small_mlp)
    packed_run(behind, reals_of(SEEDS[0], 1)[None])
    with pytest.raises(InputError, match="Adam step 1, the pack at 2"):
        pack.load_member(0, behind.member_state(0))


def test_dropout_masks_are_f_dropouts_from_each_members_generator():
    net = PackedNet([nn.Sequential(nn.Dropout(0.3)), nn.Sequential(nn.Dropout(0.3))])
    x = torch.randn(2, 64, 130)
    states = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        states.append(torch.get_rng_state())
    gens = [torch.Generator().set_state(s) for s in states]
    out = net(x, gens)
    for k, state in enumerate(states):
        torch.set_rng_state(state)
        assert torch.equal(out[k], F.dropout(x[k], 0.3, training=True))  # bit-identical, the masks and the scaling
        assert torch.equal(gens[k].get_state(), torch.get_rng_state())
    assert torch.equal(net.eval()(x, gens), x)


@pytest.mark.parametrize(
    ("build", "cfg", "message"),
    [
        (lambda: (small_mlp()[0], nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten())), small_cfg(), "got Conv2d"),
        (lambda: models.build("mlp", spectral="on"), Config(), "parametrised"),
        (lambda: models.build("dcgan"), Config(), "not a Sequential"),
        (small_mlp, small_cfg(xai="saliency"), "xai saliency"),
        (small_mlp, small_cfg(diffaugment="color"), "augmentation"),
        (small_mlp, small_cfg(precision="bf16"), "precision bf16"),
    ],
)
def test_unsupported_nets_and_settings_are_refused(build, cfg, message):
    G, D = build()
    with pytest.raises(InputError, match=message):
        Pack([G], [D], [torch.Generator()], cfg)


def test_members_must_be_the_same_net():
    (G1, D1), (G2, _) = small_mlp(), small_mlp()
    D2 = MLPDiscriminator(image_size=8, widths=(8, 8, 8))
    with pytest.raises(InputError, match="member 1 is not the same net"):
        Pack([G1, G2], [D1, D2], [torch.Generator(), torch.Generator()], small_cfg())
