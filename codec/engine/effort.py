"""Encoder effort: spend encode time for better token grids; decoder and files unchanged.

The encoder network's tokens (effort 0) are not the best grid for its own decoder: the
encoder was trained to be good on average, and a hard quantizer hides what each image needs.
Effort ``E >= 1`` refines the continuous latent of one image by gradient steps on the pixel
error of the *quantized* decode, through the frozen decoder (straight-through quantization:
the forward pass uses the nearest codewords exactly, the gradient flows to the latent), and
keeps the token grid with the lowest error seen, so a higher effort is never worse in
distortion than effort 0 on the image it was measured on. With a nested model the error is
that of the rate point the file will have (its per-position sub-vector counts), so the
refinement works for the sub-vectors that are coded.

Rate is not in the objective: the refined grids cost a few percent more bits (measured in
results/effort.md), which the rate controllers (``bpp=``, ``size=``) absorb by re-planning.

Efforts follow cjxl's 0..9 scale; :data:`EFFORT_STEPS` gives the gradient steps of each.

Nested (layered) models code with rate-distortion optimised codes instead
(:func:`rd_optimize`): at effort ``E >= 1`` each code is chosen among the nearest codewords of
its group's residual and the most probable one by squared latent error (after the group's next
coded stage) plus lambda times its bits under the entropy model, lambda being the image's own
slope of error against bits at its rate point; latent errors are weighted per channel by the decoder's pixel
sensitivity (:func:`latent_weights`, stored in the bundle). The entropy model's layer g is
conditioned only on the layers before it, and the base layer's stages only on earlier
stages, so every choice is costed with the exact probabilities the file will use; what it
does to the costs of later codes is left out of that greedy pass (effort 1). Efforts ``E >= 2``
then choose every code again given all the others, counting also the bits it costs the codes
of the layers after it, which its entropy model conditions on them (:data:`RD_SEARCH`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..entropy.token_coding import LayeredTokenCoder
from ..models.pqvae import PQVAE, pad_to_multiple
from ..models.quantizer import ProductQuantizer, codeword_distances
from ..util.hardware import autocast

EFFORT_MAX_PIXELS = 1024 * 1024
"""The largest image effort > 0 refines (it runs the autoencoder on the whole image, with
gradients): larger ones are refused with CodecError (the CLI says to use effort 0, which
codes them in tiles)."""

EFFORT_STEPS = (0, 2, 3, 4, 6, 8, 10, 12, 16, 20)
"""Gradient steps on the latent for effort 0..9 (each one decoder forward + backward)."""


def learning_rate(steps: int) -> float:
    """Adam's step size on the latent for a run of ``steps``: larger for short runs, smaller
    for long ones (chosen on held-out BSDS500 test photos, not on Kodak: 0.01-0.02 was best
    for 3-6 steps, 0.005 for 20)."""
    return min(0.02, 0.03 / steps**0.5)


def effort_steps(effort: int) -> int:
    """Gradient steps of an effort level (ValueError outside 0..9)."""
    if not isinstance(effort, int) or not 0 <= effort < len(EFFORT_STEPS):
        raise ValueError(f"effort must be an integer in 0..{len(EFFORT_STEPS) - 1}, got {effort!r}")
    return EFFORT_STEPS[effort]


def refine_tokens(
    autoencoder: PQVAE,
    images: torch.Tensor,
    steps: int,
    counts: torch.Tensor | np.ndarray | None = None,
    amp: str = "auto",
    lr: float | None = None,
) -> torch.Tensor:
    """Token indices int64 ``[B, M, h, w]`` for images ``[B, 3, H, W]`` in [0, 1] whose
    quantized decode has the lowest mean squared error found in ``steps`` gradient steps
    from the encoder's latent (``steps = 0``: exactly ``autoencoder.encode``). ``counts``
    (nested models; int ``[B]`` or ``[B, h, w]``): the sub-vectors the file will code at
    each position; the others take the learned fill, as the decoder will see them.
    ``lr``: Adam's step size (default :func:`learning_rate`).
    The images of a batch are refined together but chosen per image."""
    ae = autoencoder
    q = ae.quantizer
    H, W = images.shape[-2:]
    with torch.no_grad():
        z0 = ae.encoder(pad_to_multiple(images, ae.stride)).float()
    B = z0.shape[0]

    best = q.indices(z0)
    if steps <= 0:
        return best
    if counts is not None:
        counts = torch.as_tensor(counts, device=z0.device)
    best_err = torch.full((B,), float("inf"), device=z0.device)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr or learning_rate(steps))
    frozen = [p for p in ae.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(steps + 1):  # the last pass only measures the last update
            tokens = q.indices(z.detach())
            codes, has_code = q.dequantize(tokens, counts)
            z_q = ae.fill_absent(z + (codes - z).detach(), has_code)  # straight-through
            with autocast(amp, z.device):
                x_hat = ae.decoder(z_q)[..., :H, :W]
            err = F.mse_loss(x_hat.float().clamp(0, 1), images, reduction="none").mean((1, 2, 3))
            better = err.detach() < best_err
            best_err = torch.where(better, err.detach(), best_err)
            best = torch.where(better[:, None, None, None], tokens, best)
            if step == steps:
                break
            opt.zero_grad(set_to_none=True)
            err.sum().backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return best


def latent_weights(
    autoencoder: PQVAE, images: list[torch.Tensor], codes: int = 8, probes: int = 4, seed: int = 0
) -> np.ndarray:
    """float64 [D], mean 1: how much a squared error in each latent channel costs in squared
    pixel error through the decoder, on average over ``images`` (each [3, H, W] in [0, 1])
    decoded from their first ``codes`` codes: the diagonal of J^T J (J the decoder's Jacobian
    at the quantized latent) by Hutchinson's estimate, E_v[(J^T v)^2] over ``probes`` Gaussian
    v per image. The model's decoder is far from uniform here (its nonlinear branch reads the
    latent divided by each channel's spread), so the plain latent error misjudges codes."""
    ae = autoencoder
    q = ae.quantizer
    gen = torch.Generator().manual_seed(seed)
    device = q.codebooks.device
    total, n = torch.zeros(q.dim, dtype=torch.float64), 0
    frozen = [p for p in ae.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for x in images:
            with torch.no_grad():
                z = ae.encoder(pad_to_multiple(x[None].float().to(device), ae.stride)).float()
                counts = torch.full((1,), min(codes, q.M))
                z_q, has_code = q.dequantize(q.indices(z), counts)
                z_q = ae.fill_absent(z_q, has_code)
            for _ in range(probes):
                z_q.requires_grad_(True)
                y = ae.decoder(z_q).float()
                v = torch.randn(y.shape, generator=gen).to(device)  # the same probes on any device
                (grad,) = torch.autograd.grad(y, z_q, v)
                total += grad[0].double().square().mean((1, 2)).cpu()
                n += 1
    finally:
        for p in frozen:
            p.requires_grad_(True)
    w = (total / max(n, 1)).numpy()
    return w / w.mean()


RD_CANDIDATES = 4
"""Codewords, nearest first, among which :func:`rd_optimize` chooses each code (chosen on
held-out BSDS500 test photos: 4 and 8 within 0.2%, 16 worse)."""

RD_LIKELY = 1
"""Codewords, most probable first under the entropy model, added to the nearest candidates of
each coded code: where little is left to code, a cheap codeword beats a near one (chosen on
held-out BSDS500 test photos: 0 / 1 / 2 / 4 of them gave -7.2 / -8.4 / -8.3 / -8.1% against
effort 0)."""

RD_LAMBDA = 1.0
"""Lambda of :func:`rd_optimize` in units of the image's slope (chosen on held-out BSDS500 test
photos, not on Kodak: 1 was best at 2-8 codes, 2-4 at 16)."""


@torch.no_grad()
def rd_optimize(
    quantizer: ProductQuantizer,
    coder: LayeredTokenCoder,
    z: torch.Tensor,
    codes: int,
    factor: float = RD_LAMBDA,
    candidates: int = RD_CANDIDATES,
    nearest: np.ndarray | None = None,
    costs: np.ndarray | None = None,
    weights: np.ndarray | torch.Tensor | None = None,
    likely: int | None = None,
    passes: int = 0,
    foresight: int = 0,
    measured: int = 3,
) -> np.ndarray:
    """Token indices int64 ``[M, h, w]`` of one latent ``z`` ``[D, h, w]`` whose first
    ``codes`` codes per position are chosen, in the order the file codes them, among the
    ``candidates`` nearest codewords and the ``likely`` most probable ones, to minimise squared
    latent error + lambda * bits, the error being what the group's next coded stage would leave
    with its nearest codeword (a one-stage lookahead: a residual stage can undo part of the
    error of the stage before it);
    the codes after them are the nearest codewords of what is left (so any rate point of the
    grid decodes). lambda = ``factor`` x the image's slope: the latent error that the codes
    around ``codes`` remove per bit they cost, with nearest codewords (effort 0).
    ``nearest`` (``quantizer.indices`` of ``z``, [M, h, w]) and ``costs``
    (``coder.symbol_costs(nearest)[1]``, bits [M, h*w]): pass them where already known.
    ``weights`` [D]: the squared error of latent channel c counts ``weights[c]`` times (the
    model's :func:`latent_weights`; None: all once). ``likely``: the most probable codewords
    added to the candidates (default :data:`RD_LIKELY`). ``passes``: rounds of
    :func:`_rechoose` after that greedy pass, each code chosen again given all the others and
    the bits it costs the codes of the ``foresight`` layers after its own (measured for its
    ``measured`` best candidates)."""
    q = quantizer
    M, K = q.M, q.K
    if nearest is None:
        nearest = q.indices(z[None])[0].cpu().numpy()
    z, cb = z.float(), q.codebooks.float()
    if weights is not None:  # weighted error = plain error in a latent scaled by sqrt(weights)
        root = torch.as_tensor(weights, dtype=torch.float32).sqrt()
        z = z * root[:, None, None]
        cb = cb * root.reshape(q.G, q.d)[torch.as_tensor(q.code_groups)][:, None, :]
    split = q._split(z[None])  # [G, N, d]
    left = split.clone()  # what each group still lacks
    tokens = np.array(nearest, dtype=np.int64)  # a copy: the choices are written into it
    if costs is None:
        costs = coder.symbol_costs(tokens)[1]
    lam = factor * _slope(q, cb, left.clone(), tokens, costs, coder.groups[0], codes)
    flat = tokens.reshape(M, -1)
    groups = q.code_groups
    n_likely = RD_LIKELY if likely is None else likely
    next_stage = [next((k for k in range(j + 1, M) if groups[k] == groups[j]), M) for j in range(M)]

    def choose(j: int, at: np.ndarray, logits: np.ndarray | None) -> None:
        g, where = groups[j], torch.from_numpy(at)
        x = left[g, where]
        d2 = codeword_distances(x[None], cb[j][None])[0]  # [n, K], less |x|^2: as the quantizer
        if logits is None:  # not coded at this rate point: the nearest
            pick = d2.argmin(1)
        else:
            cand = d2.topk(min(candidates, K), largest=False).indices
            bits = -torch.log_softmax(torch.from_numpy(logits).float(), -1) / math.log(2)
            if n_likely:
                cand = torch.cat([cand, bits.topk(n_likely, largest=False).indices], 1)
            k = next_stage[j]
            if k < codes:  # the error left after the group's next coded stage (its nearest)
                y = x[:, None, :] - cb[j][cand]  # [n, C, d]
                left_k = codeword_distances(y, cb[k].expand(len(y), K, -1)).min(-1).values
                err = (y * y).sum(-1) + left_k
            else:
                err = d2.gather(1, cand)
            cost = err + lam * bits.gather(1, cand)
            pick = cand.gather(1, cost.argmin(1, keepdim=True))[:, 0]
        left[g, where] = x - cb[j][pick]
        flat[j, at] = pick.numpy()

    g0 = coder.groups[0]
    for at, logits in coder.choose_stages(tokens[:g0]):  # a view: choices land in tokens
        for j in range(g0):
            choose(j, at, logits[:, j])
    w = tokens.shape[2]
    for g in range(1, len(coder.groups)):
        lo, hi = coder.bounds[g], coder.bounds[g + 1]
        if lo >= codes:
            for j in range(lo, hi):
                choose(j, np.arange(flat.shape[1]), None)
            continue
        for rows, logits in coder.group_logit_bands(tokens, g):  # from layers < g only
            at = np.arange(rows.start * w, rows.stop * w)
            for j in range(lo, hi):
                choose(j, at, logits[:, j - lo] if j < codes else None)
    if passes and codes > g0:
        for _ in range(passes):
            _rechoose(q, coder, split, cb, tokens, codes, lam, candidates, n_likely, foresight, measured)
        left = split.clone()
        for j in range(M):  # the codes after the point: again the nearest of what is left
            g = groups[j]
            if j >= codes:
                flat[j] = codeword_distances(left[g][None], cb[j][None])[0].argmin(1).numpy()
            left[g] -= cb[j][torch.from_numpy(flat[j])]
    return tokens


RD_SEARCH = (
    (0, 0, 0),
    (0, 0, 0),
    (1, 1, 3),
    (1, 2, 3),
    (1, 2, 3),
    (1, 2, 5),
    (1, 2, 5),
    (2, 8, 5),
    (2, 8, 5),
    (2, 8, 5),
)
"""(``passes``, ``foresight``, ``measured``) of :func:`rd_optimize` for nested models at effort
0..9 (effort 0 codes the nearest codewords; effort 1 is the greedy pass alone): more passes
that choose every code again, looking further ahead, for more of the candidates. Chosen on
held-out BSDS500 test photos (results/effort.md, last section)."""


def rd_search(effort: int) -> dict[str, int]:
    """The keywords ``passes``, ``foresight`` and ``measured`` of :func:`rd_optimize` at an
    effort (ValueError outside 0..9): :data:`RD_SEARCH`."""
    effort_steps(effort)
    return dict(zip(("passes", "foresight", "measured"), RD_SEARCH[effort], strict=True))


def _rechoose(
    q: ProductQuantizer,
    coder: LayeredTokenCoder,
    split: torch.Tensor,
    cb: torch.Tensor,
    tokens: np.ndarray,
    codes: int,
    lam: float,
    candidates: int,
    likely: int,
    foresight: int,
    measured: int,
) -> None:
    """One pass of iterated conditional modes over the coded codes of grid ``tokens``
    [M, h, w] (changed in place) after the base layer, layer by layer in file order: each code
    chosen again, given every other code, among its current codeword, the ``candidates``
    nearest of what the group lacks without it and the ``likely`` most probable, by the exact
    squared latent error its group is left with + lambda x (its bits + the bits of the codes
    of the next ``foresight`` coded layers, which it conditions). Those are measured for the
    ``measured`` best candidates by their own error and bits, each with that candidate at every
    position at once (one entropy-model pass per layer), so a position's figure includes its
    neighbours' changes: an estimate.
    The base layer is left as it is: between its candidates the error differs tens of times
    more than lambda x the bits.
    ``split`` [G, N, d] and ``cb`` [M, K, d]: the latent and codebooks in the error's space."""
    M, w = q.M, tokens.shape[2]
    groups = q.code_groups
    flat = tokens.reshape(M, -1)
    left = split.clone()  # [G, N, d]: what the coded codes leave
    for j in range(codes):
        left[groups[j]] -= cb[j][torch.from_numpy(flat[j])]
    layers = [g for g in range(1, len(coder.groups)) if coder.bounds[g] < codes]
    for g in layers:
        lo, hi = coder.bounds[g], min(coder.bounds[g + 1], codes)
        later = [k for k in layers if g < k <= g + foresight]
        for run in _runs_of_distinct_groups(groups[lo:hi], lo):
            # Codes of distinct groups do not change each other's errors, and a layer's
            # probabilities do not depend on its own codes: the run's candidates and their own
            # costs come band by band (memory of one band), then each code is chosen in turn.
            found: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {j: [] for j in run}
            for rows, logits in coder.group_logit_bands(tokens, g):
                at = slice(rows.start * w, rows.stop * w)
                for j in run:
                    now = torch.from_numpy(flat[j, at].copy())
                    x = left[groups[j], at] + cb[j][now]  # what the group lacks without code j
                    d2 = codeword_distances(x[None], cb[j][None])[0]  # [n, K], less |x|^2
                    bits = -torch.log_softmax(torch.from_numpy(logits[:, j - lo]).float(), -1) / math.log(2)
                    cand = [now[:, None], d2.topk(min(candidates, q.K), largest=False).indices]
                    if likely:
                        cand.append(bits.topk(likely, largest=False).indices)
                    cand = torch.cat(cand, 1)
                    found[j].append((cand, d2.gather(1, cand) + lam * bits.gather(1, cand)))
            for j in run:
                cand = torch.cat([c for c, _ in found[j]])
                cost = torch.cat([e for _, e in found[j]])
                if later:
                    best = cost.argsort(1)[:, :measured]
                    cand, cost = cand.gather(1, best), cost.gather(1, best)
                    now = flat[j].copy()
                    for r in range(cand.shape[1]):
                        flat[j] = cand[:, r].numpy()
                        spent = sum(coder.layer_costs(tokens, k, codes).sum(0) for k in later)
                        cost[:, r] += lam * torch.from_numpy(spent).float()
                    flat[j] = now
                pick = cand.gather(1, cost.argmin(1, keepdim=True))[:, 0]
                c = groups[j]
                left[c] += cb[j][torch.from_numpy(flat[j])] - cb[j][pick]
                flat[j] = pick.numpy()


def _runs_of_distinct_groups(code_groups: list[int], first: int) -> list[list[int]]:
    """Codes ``first, first + 1, ...`` (of groups ``code_groups``) cut into consecutive runs in
    which no group appears twice."""
    runs: list[list[int]] = [[]]
    for j, g in enumerate(code_groups, first):
        if any(code_groups[k - first] == g for k in runs[-1]):
            runs.append([])
        runs[-1].append(j)
    return runs


def _slope(
    q: ProductQuantizer,
    cb: torch.Tensor,
    left: torch.Tensor,
    tokens: np.ndarray,
    costs: np.ndarray,
    g0: int,
    codes: int,
) -> float:
    """Squared latent error removed per bit by the nearest codes ``codes - 1 .. codes + 1``
    (0-based; those past the model's last code left out) of grid ``tokens`` [M, h, w], whose
    codes after the base layer's ``g0`` cost ``costs`` bits [M, h*w]; ``cb``: the codebooks
    and ``left`` the split latent, both in the (weighted) space the error is measured in."""
    M = q.M
    lo, hi = max(g0, codes - 1), min(M, codes + 2)
    if lo >= hi:
        lo = hi - 1
    flat = torch.from_numpy(tokens.reshape(M, -1))
    gain = 0.0
    for j in range(hi):
        g = q.code_groups[j]
        x = left[g]
        v = cb[j][flat[j]]
        if j >= lo:
            gain += float(x.square().sum() - (x - v).square().sum())
        left[g] = x - v
    bits = float(costs[lo:hi].sum())
    return max(gain, 0.0) / bits if bits > 0 else 0.0
