"""The training loop every stage shares, and the run set-up around it: one process on a CPU or
a GPU, or many processes under torchrun (DDP: NCCL on GPUs, gloo on CPUs), set up here once.

A stage (``autoencoder_stage``, ``entropy_stage``, ``realism_stage``, ``baseline_stage``)
builds a :class:`Run` (its model, optimizer, one training step and its evaluation) and hands
it to :func:`fit`: steps, spike guard, clipping, learning-rate schedule, logs, evaluations,
checkpoints every few minutes and a wall-time budget that every rank agrees on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..format import schema
from ..util.hardware import autocast
from .checkpoint import load_checkpoint, save_checkpoint, warm_start
from .config import RunConfig


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if device == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def autocast_for(cfg: RunConfig, device: torch.device):
    return autocast(cfg.amp, device)


def plot_log(log_path: Path, out_png: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    rows = [json.loads(line) for line in log_path.read_text().splitlines()]
    tr = [r for r in rows if "loss" in r]
    key = "psnr" if any("psnr" in r for r in rows) else "estimated_bpp"  # autoencoder / entropy stage
    ev = [r for r in rows if key in r]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].semilogy([r["step"] for r in tr], [r["loss"] for r in tr])
    ax[0].set(xlabel="step", ylabel="training loss")
    ax[1].plot([r["step"] for r in ev], [r[key] for r in ev], "o-")
    ax[1].set(xlabel="step", ylabel=f"eval {key}")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


@dataclasses.dataclass
class TrainResult:
    model: torch.nn.Module  # the trained model (this rank's copy; identical on every rank)
    metrics: dict  # the last evaluation on eval_data ({} if none ran)


@dataclasses.dataclass
class Run:
    """What the shared loop needs from a training stage."""

    cfg: RunConfig
    model: torch.nn.Module  # saved in checkpoints
    opt: torch.optim.Optimizer
    step: Callable[[int], tuple[torch.Tensor, dict]]  # step -> (loss, numbers to log)
    evaluate: Callable[[int], dict | None]  # after `done` steps -> metrics, or None (not yet)
    state: dict  # extra JSON stored with every checkpoint (model config, ...)
    rank: int
    world: int
    device: torch.device
    start: int = 0
    loss_ema: float | None = None  # the spike guard's running loss, from the checkpoint
    clipped: list[torch.nn.Parameter] | None = None  # parameters whose gradient norm is clipped (None: all)
    average_grads: bool = False  # several processes, no DDP wrapper: fit averages the gradients


def wrap_ddp(module: torch.nn.Module, world: int, **kwargs) -> torch.nn.Module:
    """``module`` under DistributedDataParallel when several processes train, else itself."""
    if world == 1:
        return module
    return torch.nn.parallel.DistributedDataParallel(module, **kwargs)


def average_gradients(model: torch.nn.Module, world: int) -> None:
    """All-reduce (mean) of every gradient: for stages whose step cannot run under DDP (the
    realism stage switches the discriminator's gradients off and on within one step)."""
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def start_run(cfg: RunConfig) -> tuple[int, int, torch.device]:
    rank, world, device = setup_distributed(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # subnormals made CPU steps 5x slower (DESIGN.md)
    torch.manual_seed(cfg.seed)
    return rank, world, device


def resume_if_asked(
    cfg: RunConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, rank: int, device: torch.device
) -> tuple[int, float | None]:
    ckpt_dir = Path(cfg.out) / "checkpoint"
    if cfg.resume and (ckpt_dir / schema.CHECKPOINT_STATE).exists():
        state = load_checkpoint(ckpt_dir, model, opt, device)
        step = state[schema.STATE_STEP]
        for group in opt.param_groups:  # the learning rate is this run's (lower it to fine-tune)
            group["lr"] = cfg.lr * group.get("lr_scale", 1.0)
        if rank == 0:
            print(f"resumed {ckpt_dir} at step {step} (lr {cfg.lr})")
        return step, state.get(schema.STATE_LOSS_EMA)  # the spike guard's memory (see fit)
    if cfg.init:
        prefix = schema.STAGE_PREFIX.get(cfg.stage, "")
        copied, skipped = warm_start(model, cfg.init, prefix)
        if rank == 0:
            print(
                f"warm start from {cfg.init}: {len(copied)} tensors copied, {len(skipped)} fresh"
                + (f" ({', '.join(sorted({k.rsplit('.', 1)[0] for k in skipped}))})" if skipped else "")
            )
    return 0, None


def fit(run: Run) -> dict:
    """The loop every stage shares: steps, clipping, logs, evaluations, checkpoints every
    few minutes, a wall-time budget that all ranks agree on; returns the last metrics."""
    cfg = run.cfg
    loop = _Loop(run)
    t_start = last_ckpt = time.time()
    with _stop_requests() as interrupted:  # SIGTERM / Ctrl-C: finish the step, checkpoint, stop
        steps = range(run.start, cfg.steps)
        bar = tqdm(steps, initial=run.start, total=cfg.steps, disable=run.rank != 0, smoothing=0.05)
        for step in bar:
            value, numbers = loop.step(step)
            loop.report(value, numbers, bar, t_start)
            out_of_time = bool(interrupted) or (
                bool(cfg.max_minutes) and time.time() - t_start > 60 * cfg.max_minutes
            )
            out_of_time = _as_rank_0_says(run, out_of_time)  # every rank must agree to stop
            if time.time() - last_ckpt > 60 * cfg.ckpt_every_minutes or out_of_time:
                loop.save()
                last_ckpt = time.time()
            if out_of_time:
                break
    return loop.finish(evaluate=not interrupted)


class _Loop:
    """The state of one :func:`fit`: steps done, the spike guard, the last and the best
    evaluation; rank 0 writes the log (OUT/log.jsonl) and the checkpoints."""

    def __init__(self, run: Run) -> None:
        self.run, self.cfg = run, run.cfg
        self.out = Path(run.cfg.out)
        self.log_path = self.out / "log.jsonl"
        if run.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.best_psnr = _best_psnr(self.out, run.cfg)
        self.metrics: dict | None = None
        self.done = run.start
        # Spike guard: a step whose loss is not finite or above spike_factor x the running mean
        # of accepted losses is skipped (no update); after 20 skips in a row the level is reset.
        self.loss_ema: float | None = run.loss_ema
        self.skipped_in_row = 0
        self.average = _moving_average(run, self.out / "checkpoint") if run.cfg.average_weights else None

    def log(self, row: dict) -> None:
        with self.log_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def save(self, folder: Path | None = None) -> None:
        """Rank 0 checkpoints the run after ``done`` steps (to OUT/checkpoint unless ``folder``)."""
        if self.run.rank == 0:
            state = {
                schema.STATE_STEP: self.done,
                schema.STATE_CONFIG: self.cfg.to_dict(),
                schema.STATE_METRICS: self.metrics,
                schema.STATE_LOSS_EMA: self.loss_ema,
                **self.run.state,
            }
            average = None if self.average is None else self.average.module
            save_checkpoint(folder or self.out / "checkpoint", self.run.model, self.run.opt, state, average)

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside the block the model holds the weights' moving average (if the run keeps one)."""
        if self.average is None:
            yield
            return
        own = {k: v.detach().clone() for k, v in self.run.model.state_dict().items()}
        self.run.model.load_state_dict(self.average.module.state_dict())
        try:
            yield
        finally:
            self.run.model.load_state_dict(own)

    def step(self, step: int) -> tuple[float, dict]:
        """Training step ``step``, or its skip by the spike guard: (loss, numbers to log)."""
        run, cfg = self.run, self.cfg
        torch.manual_seed(cfg.seed * 7919 + step)  # any randomness in a step: resumable
        loss, numbers = run.step(step)
        value = loss.item()
        spike = not math.isfinite(value) or (
            cfg.spike_factor > 0 and self.loss_ema is not None and value > cfg.spike_factor * self.loss_ema
        )
        if spike and self.skipped_in_row < 20:
            self.skipped_in_row += 1
            if run.rank == 0:
                self.log({"step": step + 1, "skipped_spike": value, "loss_ema": self.loss_ema})
        else:
            self.skipped_in_row = 0
            ema = self.loss_ema
            self.loss_ema = value if ema is None or spike else 0.98 * ema + 0.02 * value
            _update(run, loss, step)
            if self.average is not None:
                self.average.update_parameters(run.model)
        self.done = step + 1
        return value, numbers

    def report(self, value: float, numbers: dict, bar: tqdm, t_start: float) -> None:
        """Rank 0, every ``log_every`` steps: a log row; every ``eval_every``: an evaluation
        (the best one so far, by PSNR, is also checkpointed to OUT/best)."""
        cfg, done = self.cfg, self.done
        if self.run.rank == 0 and done % cfg.log_every == 0:
            row = {"step": done, "loss": value, **numbers, "time_s": round(time.time() - t_start, 1)}
            row["threads"] = torch.get_num_threads() if self.run.device.type == "cpu" else 0
            self.log(row)
            bar.set_postfix({k: f"{v:.3g}" for k, v in numbers.items() if isinstance(v, float)})
        if self.run.rank == 0 and done % cfg.eval_every == 0:
            with self.averaged():
                m = self.run.evaluate(done)
            if m is not None:
                self.metrics = {"step": done, **m}
                self.log(self.metrics)
                tqdm.write(f"step {done}: " + ", ".join(f"{k} {v}" for k, v in m.items()))
                if m.get("psnr") is not None and (self.best_psnr is None or m["psnr"] > self.best_psnr):
                    self.best_psnr = m["psnr"]
                    self.save(self.out / "best")
                if cfg.plot:
                    plot_log(self.log_path, self.out / "curves.png")

    def finish(self, evaluate: bool) -> dict:
        """After the last step: an evaluation of it (if ``evaluate`` and none ran at that step),
        the last checkpoint and plot; returns the last metrics."""
        run, done = self.run, self.done
        if run.rank == 0 and (self.metrics or {}).get("step") != done and evaluate:
            with self.averaged():
                m = run.evaluate(done)
            if m is not None:
                self.metrics = {"step": done, **m}
                self.log(self.metrics)
        self.save()
        if self.average is not None:  # the trained model is the average, as in the checkpoint
            run.model.load_state_dict(self.average.module.state_dict())
        if run.rank == 0 and self.cfg.plot:
            plot_log(self.log_path, self.out / "curves.png")
        if run.world > 1:
            dist.barrier()
        return self.metrics or {}


def _best_psnr(out: Path, cfg: RunConfig) -> float | None:
    """The PSNR of the run's best evaluation so far (OUT/best), if measured on ``eval_data``.

    The best evaluation (PSNR on the held-out eval_data) is kept in OUT/best: a run that
    diverges (bf16 Adam did, twice) resumes from there instead of from its damaged last state.
    A best state measured on other evaluation images does not count."""
    best_file = out / "best" / schema.CHECKPOINT_STATE
    best_state = json.loads(best_file.read_text()) if best_file.exists() else {}
    same_eval = (best_state.get(schema.STATE_CONFIG) or {}).get("eval_data") == cfg.eval_data
    return (best_state.get(schema.STATE_METRICS) or {}).get("psnr") if same_eval else None


def _moving_average(run: Run, checkpoint: Path) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``run.model``'s parameters (decay ``average_weights`` per
    step; buffers such as the codebooks, themselves moving averages, follow the model), taken
    up from ``checkpoint`` when the run resumes one that kept it."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    average = AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(run.cfg.average_weights))
    if run.start and (checkpoint / schema.CHECKPOINT_TRAINING).exists():
        from safetensors.torch import load_file

        average.module.load_state_dict(
            load_file(str(checkpoint / schema.CHECKPOINT_MODEL), device=str(run.device))
        )
        average.n_averaged.fill_(1)  # go on averaging, instead of starting from the model
    return average


def _update(run: Run, loss: torch.Tensor, step: int) -> None:
    """One optimizer step on ``loss``: gradients (averaged over processes when the stage asks
    it), the learning rate of ``step``, clipping."""
    cfg = run.cfg
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.world > 1 and run.average_grads:
        average_gradients(run.model, run.world)
    if cfg.lr_schedule != "constant":
        for group in run.opt.param_groups:
            group["lr"] = cfg.lr_at(step) * group.get("lr_scale", 1.0)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.clipped or run.model.parameters(), cfg.grad_clip)
    run.opt.step()


def _as_rank_0_says(run: Run, flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a single process: ``flag``)."""
    if run.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=run.device)
    dist.broadcast(t, 0)
    return bool(t.item())


@contextlib.contextmanager
def _stop_requests() -> Iterator[list]:
    """A list that SIGTERM and SIGINT append to inside the block, instead of stopping the
    process (in the main thread, the only one that receives signals); the previous handlers
    are back after it."""
    requests: list = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda *_: requests.append(True))
    try:
        yield requests
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
