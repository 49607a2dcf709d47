"""What a spatial context within its own layer would be worth to the channel-coded layers.

Issue 29 asks what each context of the entropy model is worth. The default model codes each
layer g >= 1 (codes ``bounds[g]..bounds[g+1]-1`` of every position) in one step, given the
earlier layers only (:class:`codec.models.layered.ChannelContextModel`). A checkerboard would
code half of the positions first, as today, then the other half given the first half's codes
of the same layer as well. This probe measures the bits that would save, before anything is
built into the format:

* ``continued``: the default model's channel network, trained on;
* ``checkerboard``: the same weights plus one zero-initialised input (a linear map of the
  mean embedding of the layer's own codes at the first-half positions, and a bias that marks
  the second pass), so that at step 0 it is exactly ``continued``.

Both arms train side by side in one process on the same batches (the channel part of the
entropy stage's loss: token crops of the training photos, tokenized once by the default
autoencoder), with the same optimizer and learning rate. Every ``--eval-every`` steps both
are scored on the held-out BSDS500 test photos (never Kodak): the ideal code length of every
channel-coded code, and the estimated bpp at m = 2, 8, 16, 32 with the default model's base
layer (:meth:`LayeredImageCodec.symbol_costs`, the same for both arms). One JSON line per
evaluation goes to ``OUT/log.jsonl``; the arms' weights to ``OUT/<arm>.safetensors``.

    python bench/channel_context_probe.py --out $CODEC_RUNS/cb_probe --minutes 90 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from codec.engine.loading import get_codec
from codec.models.layered import ChannelContextModel
from codec.train.config import held_out_photos, train_photos
from codec.train.data import list_images, load_rgb
from codec.train.entropy_stage import TokenCrops, tokenize


class CheckerboardChannel(ChannelContextModel):
    """A :class:`ChannelContextModel` whose layer g is coded in two passes: positions with
    (row + column) even first (as the plain model codes them), then the others given also the
    mean embedding of layer g's own codes at the first positions (through ``own``)."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        c = cfg.channel_dim
        self.own = nn.Linear(c, c)
        self.second = nn.Parameter(torch.zeros(c))
        nn.init.zeros_(self.own.weight)
        nn.init.zeros_(self.own.bias)


def group_logits(model: ChannelContextModel, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Logits [B, h*w, size_g, K] of every layer g >= 1 of tokens int64 [B, M, h, w]: the
    plain model's single pass, or a checkerboard's two passes (first-half positions from
    the first)."""
    if not isinstance(model, CheckerboardChannel):
        return model.all_groups(tokens)
    cfg, b = model.cfg, model.bounds
    G = len(cfg.groups)
    B, M, h, w = tokens.shape
    prefix = model.embed(tokens.permute(0, 2, 3, 1) + model.offsets[:M]).cumsum(3)  # [B, h, w, M, c]
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    first = ((rows + cols) % 2 == 0).to(prefix.dtype)[None, :, :, None]  # [1, h, w, 1]
    x0, x1 = [], []
    for g in range(1, G):
        x = prefix[:, :, :, b[g] - 1] / b[g] + model.group_embed.weight[g]
        own = (prefix[:, :, :, b[g + 1] - 1] - prefix[:, :, :, b[g] - 1]) / cfg.groups[g]
        x0.append(x)
        x1.append(x + model.own(own * first) + model.second)
    groups = list(range(1, G))
    one, two = model._logits(torch.cat(x0), groups), model._logits(torch.cat(x1), groups)
    pick = first.reshape(1, h * w, 1, 1).bool()
    return [torch.where(pick, a, z) for a, z in zip(one, two)]


def code_bits(model: ChannelContextModel, tokens: torch.Tensor) -> torch.Tensor:
    """Ideal code length in bits of every channel-coded code, summed over positions: float64
    [M] (rows of the base layer 0) for tokens int64 [1, M, h, w]."""
    b = model.bounds
    bits = torch.zeros(tokens.shape[1], dtype=torch.float64)
    for g, logits in enumerate(group_logits(model, tokens), start=1):
        target = tokens[:, b[g] : b[g + 1]].flatten(2).transpose(1, 2)  # [1, hw, n]
        nll = -logits.float().log_softmax(-1).gather(-1, target[..., None])[..., 0]  # [1, hw, n]
        bits[b[g] : b[g + 1]] = nll.sum((0, 1)).double() / math.log(2)
    return bits


def loss(model: ChannelContextModel, tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over every channel-coded code of the batch (the channel part
    of :meth:`LayeredEntropyModel.loss`)."""
    b, K = model.bounds, model.cfg.K
    total, count = 0.0, 0
    for g, logits in enumerate(group_logits(model, tokens), start=1):
        target = tokens[:, b[g] : b[g + 1]].flatten(2).transpose(1, 2)
        total = total + F.cross_entropy(logits.reshape(-1, K).float(), target.reshape(-1)) * (b[g + 1] - b[g])
        count += b[g + 1] - b[g]
    return total / count


def evaluate(arms: dict, held_out: list, base_bits: float, pixels: int, ms: list[int]) -> dict:
    out = {}
    with torch.no_grad():
        for name, model in arms.items():
            model.eval()
            per = sum(code_bits(model, t[None].long()) for t in held_out)
            model.train()
            out[name] = {f"bpp_m{m}": (base_bits + float(per[:m].sum())) / pixels for m in ms}
            positions = held_out_positions(held_out)
            out[name]["code_bits_per_position"] = [round(float(v) / positions, 4) for v in per]
    return out


def held_out_positions(held_out: list) -> int:
    return sum(t.shape[1] * t.shape[2] for t in held_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="run folder (log.jsonl, the arms' weights)")
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-time budget of the training")
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=8, help="token crops per step (16 x 16 positions)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=100, help="steps of linear learning-rate warm-up")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-images", type=int, default=24, help="the first held-out BSDS500 test photos")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train-images", type=int, default=0, help="0: all training photos")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    codec = get_codec("default")
    ae, em = codec.autoencoder, codec.entropy_model
    arms = {"continued": ChannelContextModel(em.cfg), "checkerboard": CheckerboardChannel(em.cfg)}
    for name, model in arms.items():
        model.load_state_dict(em.channel.state_dict(), strict=name == "continued")
        saved = args.out / f"{name}.safetensors"
        if saved.exists():  # resume
            model.load_state_dict(load_file(saved))
        model.train()
    state_file = args.out / "state.json"
    start = json.loads(state_file.read_text())["step"] if state_file.exists() else 0
    opts = {n: torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=0.01) for n, m in arms.items()}

    files = list_images(train_photos())
    files = files[: args.max_train_images] if args.max_train_images else files
    t0 = time.time()
    data = TokenCrops(tokenize(ae, [load_rgb(f) for f in files], torch.device("cpu"), False), 16)
    held_out_files = list_images(held_out_photos())[: args.eval_images]
    held_out = tokenize(ae, [load_rgb(f) for f in held_out_files], torch.device("cpu"), False)
    pixels = held_out_positions(held_out) * ae.stride**2
    base_bits = sum(codec.symbol_costs(t.long().numpy())[0] for t in held_out)
    print(f"tokenized {len(files)} training and {len(held_out)} held-out photos in {time.time() - t0:.0f} s")
    ms = [2, 8, 16, em.cfg.M]

    def log(step: int, seconds: float, extra: dict) -> None:
        row = {"step": step, "train_seconds": round(seconds, 1)} | extra
        row |= evaluate(arms, held_out, base_bits, pixels, ms)
        with open(args.out / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        brief = {
            k: {a: b for a, b in v.items() if a != "code_bits_per_position"} if isinstance(v, dict) else v
            for k, v in row.items()
        }
        print(json.dumps(brief), flush=True)

    if start == 0:
        log(0, 0.0, {})
    trained, began, step = 0.0, time.time(), start
    ema = {}
    while step < args.steps and time.time() - began < args.minutes * 60:
        tokens = data.batch(args.batch, 16, args.seed, step)
        tick = time.time()
        for name, model in arms.items():
            for group in opts[name].param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                value = loss(model, tokens)
            opts[name].zero_grad(set_to_none=True)
            value.backward()
            opts[name].step()
            bits = value.item() / math.log(2)
            ema[name] = bits if name not in ema else 0.98 * ema[name] + 0.02 * bits
        trained += time.time() - tick
        step += 1
        if step % args.eval_every == 0:
            for name, model in arms.items():
                save_file(model.state_dict(), args.out / f"{name}.safetensors")
            state_file.write_text(json.dumps({"step": step}))
            log(step, trained, {f"train_bits_{n}": round(v, 4) for n, v in ema.items()})


if __name__ == "__main__":
    main()
