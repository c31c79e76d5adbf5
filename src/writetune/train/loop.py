"""The training recipe: multi-task instruction tuning of a LLaMA-family causal LM on a `writetune data build` mix.

Features, each in one named place below:
- LoRA (PEFT) or full fine-tuning; frozen base weights held in bf16 under bf16 precision, trainable weights in
  fp32 with bf16 autocast (CPU and GPU); optional gradient checkpointing.
- Loss only on response tokens, masked by construction (`collate.py`); EOS closes every response.
- Padding-free packing: each micro-batch is one row of examples with per-example positions and varlen attention
  (`attention.py`); the LM head runs only on positions that predict a response token.
- Batching by tokens with gradient accumulation; the loss is the sum of token losses over the optimizer step divided
  by the step's response tokens (across micro-batches and processes), so it does not depend on how the step is split.
- Checkpoints every N steps, atomic, last K kept, with optimizer, scheduler, RNG and data-order state; `resume`
  continues a killed run on the same loss curve (`checkpoint.py`).
- In-training evaluation: dev loss, and per task a generated dev subset scored with the task metric and copy rate
  (`indev.py`), at step 0 and every N steps.
- Logs: progress bar with tokens/s and ETA, metrics.jsonl, TensorBoard, optional W&B (`logs.py`).
- Multi-process with `accelerate launch` (DDP; FSDP through accelerate's sharded checkpointing).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType
from peft import get_peft_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from writetune.data.record import DEV_FILE, TRAIN_FILE, Record, read_records
from writetune.models import LoadedModel, load_model
from writetune.prompt import save_prompt_format
from writetune.train import attention
from writetune.train import checkpoint as ckpt
from writetune.train.collate import (
    PackedBatch,
    StepPlan,
    TokenizedExample,
    collate,
    examples_within_limit,
    pack,
    plan_steps,
    tokenize_records,
)
from writetune.train.indev import run_generation_eval, select_subsets
from writetune.train.logs import Progress, RunLogger
from writetune.train.recipe import TrainRecipe, dump_recipe, recipe_from_dict

RECIPE_COPY = "recipe.yaml"
RESULT_FILE = "train_result.json"


class RunDirError(ValueError):
    """The output directory cannot be used as asked (it holds another run, or the recipe changed on resume)."""


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    resumed_from: int | None
    train_losses: list[float]
    final_dev_loss: float | None
    wall_s: float
    tokens_per_s: float


def token_loss_sum(model, batch: PackedBatch, autocast):
    """Sum of cross-entropy over the batch's response tokens (the LM head sees only those positions), each token
    weighted by its edit weight when the batch has them."""
    with autocast():
        logits = model(**batch.model_kwargs()).logits
    if batch.weights is None:
        return torch.nn.functional.cross_entropy(logits[0].float(), batch.targets, reduction="sum")
    losses = torch.nn.functional.cross_entropy(logits[0].float(), batch.targets, reduction="none")
    return (losses * batch.weights).sum()


def lr_lambda(schedule, total_steps: int):
    """Multiplier of the base learning rate after `step` optimizer updates (warm-up, then decay)."""
    if schedule.warmup_steps is not None:
        warmup = schedule.warmup_steps
    else:
        warmup = int(round((schedule.warmup_ratio if schedule.warmup_ratio is not None else 0.03) * total_steps))
    floor = schedule.min_lr_ratio

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule.name == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if schedule.name == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: the accelerator, its device, the number of processes and this one's rank, whether
    it is the main process, whether the model is sharded (FSDP), and the autocast context of the recipe's
    precision."""

    acc: object
    device: object
    world: int
    rank: int
    main: bool
    fsdp: bool
    autocast: Callable[[], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class TrainingData:
    """The tokenized training examples that fit a row (`dropped`: how many did not), the data order of the run, and
    the dev records (empty when the mix has none)."""

    examples: list[TokenizedExample]
    dropped: int
    plan: StepPlan
    dev_records: list[Record]


@dataclass(frozen=True)
class DevEvaluation:
    """What in-training evaluation runs on: the dev-loss examples and the per-task generation subsets."""

    loss_examples: list[TokenizedExample]
    subsets: list


@dataclass(frozen=True)
class StartPoint:
    """Where the run starts: after `step` optimizer steps, `tokens` trained tokens and `wall_s` seconds of training
    up to that checkpoint (all 0 for a new run); `resumed_from` is the checkpoint's step, or None."""

    step: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    resumed_from: int | None = None


class Trainer:
    """One run: `setup()` builds every part, each `setup_*` method from explicit arguments to the part it returns;
    then `fit()`."""

    def __init__(self, recipe: TrainRecipe, *, resume: bool = False, log=None, loaded=None):
        """`loaded`: a `LoadedModel` (fp32) to train instead of loading `recipe.model`, e.g. a randomly
        initialised model of a given shape."""
        self.recipe = recipe
        self.preloaded = loaded
        self.resume = resume
        self.run_dir = Path(recipe.output_dir)
        self.say = log or (lambda message: None)

    # ---------------------------------------------------------------------------------------------- setup
    def setup(self) -> "Trainer":
        self.runtime = self.setup_runtime()
        if not self.runtime.main:
            self.say = lambda message: None
        resume_from = self.setup_run_dir(self.runtime)
        self.loaded, model = self.setup_model(self.preloaded, self.runtime.device)
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.total_params = sum(p.numel() for p in model.parameters())
        self.data = self.setup_data(self.loaded, self.runtime.world)
        optimizer = self.setup_optimizer(model)
        self.scheduler = self.setup_scheduler(optimizer, len(self.data.plan))
        self.model, self.optimizer = self.setup_distributed(model, optimizer, self.runtime)
        self.start = self.load_checkpoint(resume_from, self.data.plan)
        self.tokens_seen = self.start.tokens
        self.logger, self.progress = self.setup_logging(self.start, len(self.data.plan), self.runtime.main)
        self.dev = self.setup_eval(self.data.dev_records, self.loaded)
        return self

    def setup_runtime(self) -> Runtime:
        """The accelerator and what it says about this process; seeds torch and sets its threads."""
        acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
        device = acc.device
        bf16 = self.recipe.precision == "bf16"
        if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("precision: bf16, but this GPU does not support bfloat16; use precision: fp32")
        if self.recipe.threads:
            torch.set_num_threads(self.recipe.threads)
        torch.manual_seed(self.recipe.seed)
        return Runtime(acc=acc, device=device, world=acc.num_processes, rank=acc.process_index,
                       main=acc.is_main_process, fsdp=acc.distributed_type == DistributedType.FSDP,
                       autocast=lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16))

    def setup_run_dir(self, runtime: Runtime) -> Path | None:
        """Claim the output directory (refusing one that holds another run, or a resume whose recipe changed) and
        keep a copy of the recipe in it; returns the checkpoint to resume from, or None."""
        copy = self.run_dir / RECIPE_COPY
        if runtime.main:
            ckpt.remove_stale(self.run_dir)
        existing = ckpt.latest_checkpoint(self.run_dir)
        if copy.is_file() and not self.resume and (existing or (self.run_dir / "model").exists()):
            raise RunDirError(f"{self.run_dir} already holds a run; pass --resume to continue it, or choose another "
                              "output_dir")
        if self.resume and copy.is_file() and existing is not None:
            before = recipe_from_dict(yaml.safe_load(copy.read_text()), str(copy)).training_view()
            now = self.recipe.training_view()
            changed = sorted(key for key in now if now[key] != before[key])
            if changed:
                raise RunDirError(f"{self.run_dir}: cannot resume, the recipe changed since the run started "
                                  f"(keys: {', '.join(changed)}); a resumed run must train the same thing")
        resume_from = existing if self.resume else None
        if runtime.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if resume_from is None:
                copy.write_text(dump_recipe(self.recipe), encoding="utf-8")
        runtime.acc.wait_for_everyone()
        return resume_from

    def setup_model(self, preloaded, device) -> tuple:
        """The model to train on `device` (`preloaded`, else the recipe's model loaded in fp32): with a LoRA adapter
        or fully trainable, gradient checkpointing and the attention the recipe asks for. Returns (the
        `LoadedModel` it came from, the model)."""
        r = self.recipe
        loaded = preloaded or load_model(r.model, dtype="float32")
        model = loaded.model
        if r.method == "lora":
            if r.precision == "bf16":
                model.to(torch.bfloat16)  # frozen: no master copy needed; autocast computes in bf16 anyway
            model = get_peft_model(model, r.lora.peft_config())
            for param in model.parameters():
                if param.requires_grad:
                    param.data = param.data.float()
            if r.precision == "bf16":
                for module in model.modules():  # PEFT would upcast every adapter input to fp32 only for autocast
                    if isinstance(module, BaseTunerLayer):  # to cast it back to bf16: two wasted passes per layer
                        module.cast_input_dtype_enabled = False
            model.peft_config["default"].base_model_name_or_path = _portable_spec(r.model)
        if r.gradient_checkpointing:
            inner = model.get_base_model() if hasattr(model, "get_base_model") else model
            enable = getattr(inner, "activation_checkpointing_enable", None)
            if enable is not None:
                enable({"use_reentrant": False})
            else:  # transformers < 5.2x
                inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if r.attention == "varlen":
            attention.use_varlen(model)
        else:
            attention.use_sdpa(model)
        model.to(device)
        model.train()
        return loaded, model

    def setup_data(self, loaded, world: int) -> TrainingData:
        """The mix tokenized with `loaded`'s tokenizer and prompt format, and the data order for `world`
        processes."""
        r = self.recipe
        data = Path(r.data)
        records = read_records(data / TRAIN_FILE)
        examples = tokenize_records(loaded.tokenizer, loaded.prompt_format, records, edit_weight=r.edit_weight)
        kept = examples_within_limit(examples, r.batch.example_limit, data / TRAIN_FILE)
        plan = plan_steps([len(ex) for ex in kept], budget=r.batch.tokens, seed=r.seed, world_size=world,
                          grad_accum=r.batch.grad_accum, epochs=r.num_epochs, max_steps=r.max_steps)
        dev_records = []
        needs_dev = r.eval.at_start or r.eval.every > 0 or r.eval.at_end
        if (data / DEV_FILE).is_file():
            dev_records = read_records(data / DEV_FILE)
        elif needs_dev:
            raise FileNotFoundError(f"{data / DEV_FILE}: the recipe evaluates during training (eval.every, "
                                    "eval.at_start, eval.at_end) but the mix has no dev file")
        return TrainingData(examples=kept, dropped=len(examples) - len(kept), plan=plan, dev_records=dev_records)

    def setup_optimizer(self, model):
        """AdamW over the trainable parameters, weight decay on matrices only."""
        o = self.recipe.optimizer
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, betas=tuple(o.betas), eps=o.eps)

    def setup_scheduler(self, optimizer, total_steps: int):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.recipe.schedule, total_steps))

    @staticmethod
    def setup_distributed(model, optimizer, runtime: Runtime) -> tuple:
        """The model and optimizer wrapped for several processes (DDP) or sharding (FSDP); as given for one."""
        if runtime.world > 1 or runtime.fsdp:
            return runtime.acc.prepare(model, optimizer)
        return model, optimizer

    def load_checkpoint(self, path: Path | None, plan: StepPlan) -> StartPoint:
        """Restore weights, optimizer, scheduler and RNG state from `path` (which must have been written with the
        same data order); a new run starts at step 0."""
        if path is None:
            return StartPoint()
        state = ckpt.read_state(path)
        if state["plan"] != plan.fingerprint():
            raise RunDirError(f"{path}: the data order differs from the checkpoint's (different data, number of "
                              "processes or batch shape); resume with the same setup")
        if self.runtime.fsdp:
            self.runtime.acc.load_state(str(path / "accelerate"))
        else:
            self._load_weights(path / "model")
            self.optimizer.load_state_dict(ckpt.load_state_file(path / "optimizer.pt"))
        self.scheduler.load_state_dict(ckpt.load_state_file(path / "scheduler.pt"))
        ckpt.load_rng(path, self.runtime.rank)
        step = int(state["step"])
        return StartPoint(step=step, tokens=int(state.get("tokens", 0)), wall_s=float(state.get("wall_s", 0.0)),
                          resumed_from=step)

    def _load_weights(self, directory: Path) -> None:
        model = self.runtime.acc.unwrap_model(self.model)
        if self.recipe.method == "lora":
            set_peft_model_state_dict(model, load_file(str(directory / "adapter_model.safetensors")))
        else:
            state = {}
            for f in sorted(directory.glob("*.safetensors")):
                state.update(load_file(str(f)))
            missing, unexpected = model.load_state_dict(state, strict=False)
            tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
            if unexpected or set(missing) - tied:
                raise RunDirError(f"{directory}: weights do not match the model (missing {sorted(missing)[:3]}, "
                                  f"unexpected {sorted(unexpected)[:3]})")

    def setup_logging(self, start: StartPoint, total_steps: int, main: bool) -> tuple:
        """The run's logger (metrics.jsonl, TensorBoard, W&B) and progress bar; both silent off the main process."""
        lg = self.recipe.log
        logger = RunLogger(self.run_dir, enabled=main, tensorboard=lg.tensorboard, wandb=lg.wandb,
                           wandb_project=lg.wandb_project, resume_step=start.resumed_from,
                           config=self.recipe.model_dump(mode="json"))
        progress = Progress(total_steps, start.step, enabled=main and lg.progress, say=self.say if main else None)
        return logger, progress

    def setup_eval(self, dev_records: list[Record], loaded) -> DevEvaluation:
        """The dev-loss examples (`eval.loss_examples` dev records, drawn by seed) and the generation subsets."""
        e = self.recipe.eval
        if not dev_records:
            return DevEvaluation(loss_examples=[], subsets=[])
        order = np.random.default_rng([self.recipe.seed, 99]).permutation(len(dev_records)).tolist()
        chosen = [dev_records[i] for i in order[: e.loss_examples or len(order)]]
        dev = tokenize_records(loaded.tokenizer, loaded.prompt_format, chosen)
        loss_examples = [ex for ex in dev if len(ex) <= self.recipe.batch.tokens]
        if self.runtime.fsdp and e.generate_per_task:
            self.say("note: in-training generation is skipped under FSDP (sharded weights); the dev loss still runs")
            return DevEvaluation(loss_examples=loss_examples, subsets=[])
        return DevEvaluation(loss_examples=loss_examples,
                             subsets=select_subsets(dev_records, e.generate_per_task, self.recipe.seed, e.tasks,
                                                    e.metrics))

    # ---------------------------------------------------------------------------------------------- training
    @property
    def total_steps(self) -> int:
        return len(self.data.plan)

    def step_targets(self, step_index: int) -> int:
        return sum(self.data.examples[i].n_response for row in self.data.plan.steps[step_index] for i in row)

    def accumulate(self, step_index: int) -> tuple[float, int]:
        """Forward and backward over this process's rows of a step, leaving the step's gradients in `.grad`.
        Returns (the step's loss over all processes, real tokens in the step over all processes)."""
        rows = self.data.plan.rows_for(step_index, self.runtime.rank)
        total_targets = self.step_targets(step_index)
        scale = self.runtime.world / total_targets  # processes average gradients; undo that to get a global token mean
        local_sum = torch.zeros((), device=self.runtime.device)
        for g, row in enumerate(rows):
            batch = collate([self.data.examples[i] for i in row]).to(self.runtime.device)
            last = g == len(rows) - 1
            alone = last or self.runtime.world == 1
            sync = contextlib.nullcontext() if alone else self.runtime.acc.no_sync(self.model)
            with sync:
                loss_sum = token_loss_sum(self.model, batch, self.runtime.autocast)
                self.runtime.acc.backward(loss_sum * scale)
            local_sum += loss_sum.detach()
        loss = self.runtime.acc.reduce(local_sum, "sum").item() / total_targets
        tokens = sum(len(self.data.examples[i]) for row in self.data.plan.steps[step_index] for i in row)
        return loss, tokens

    def update(self) -> float:
        """Clip, step the optimizer and the schedule, clear the gradients; returns the gradient norm."""
        max_norm = self.recipe.optimizer.max_grad_norm
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = self.runtime.acc.clip_grad_norm_(params, max_norm if max_norm is not None else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def train_step(self, step_index: int) -> tuple[float, float, int]:
        """One optimizer step; returns (loss, grad norm, real tokens processed by all processes)."""
        loss, tokens = self.accumulate(step_index)
        return loss, self.update(), tokens

    def dev_loss(self) -> float | None:
        if not self.dev.loss_examples:
            return None
        rows = pack(range(len(self.dev.loss_examples)), [len(ex) for ex in self.dev.loss_examples],
                    self.recipe.batch.tokens)
        total = torch.zeros(2, device=self.runtime.device, dtype=torch.float64)
        self.model.eval()
        with torch.no_grad():
            for row in rows[self.runtime.rank::self.runtime.world]:
                batch = collate([self.dev.loss_examples[i] for i in row]).to(self.runtime.device)
                total[0] += token_loss_sum(self.model, batch, self.runtime.autocast).double()
                total[1] += batch.n_targets
        self.model.train()
        total = self.runtime.acc.reduce(total, "sum")
        return (total[0] / total[1]).item()

    def evaluate(self, step: int) -> dict:
        """Dev loss on all processes, then generation + metrics on the main process."""
        started = time.perf_counter()
        record = {"kind": "eval", "step": step, "dev_loss": self.dev_loss()}
        if self.runtime.main and self.dev.subsets:
            model = self.runtime.acc.unwrap_model(self.model)
            model.eval()
            loaded = LoadedModel(model=model, tokenizer=self.loaded.tokenizer, prompt_format=self.loaded.prompt_format,
                                 resolved=self.loaded.resolved)
            e = self.recipe.eval
            with torch.no_grad(), self.runtime.autocast():
                record["tasks"] = run_generation_eval(loaded, self.dev.subsets, max_new_tokens=e.max_new_tokens,
                                                      batch_size=e.batch_size)
            model.train()
        self.runtime.acc.wait_for_everyone()
        record["eval_s"] = round(time.perf_counter() - started, 2)
        if self.runtime.main:
            self.logger.log(record)
            self.progress.write(describe_eval(record))
        return record

    def save_checkpoint(self, step: int) -> None:
        state = {"step": step, "epoch": self.data.plan.epoch_of_step[step - 1], "tokens": self.tokens_seen,
                 "wall_s": self.start.wall_s + (time.perf_counter() - self.started),
                 "plan": self.data.plan.fingerprint(), "world_size": self.runtime.world,
                 "total_steps": self.total_steps}
        if self.runtime.fsdp:
            def write_model(d):
                self.runtime.acc.save_state(str(d / "accelerate"))

            def write_optim(d):
                torch.save(self.scheduler.state_dict(), d / "scheduler.pt")
        else:
            def write_model(d):
                self.save_model(d / "model")

            def write_optim(d):
                torch.save(self.optimizer.state_dict(), d / "optimizer.pt")
                torch.save(self.scheduler.state_dict(), d / "scheduler.pt")
        writer = ckpt.CheckpointWriter(self.run_dir, self.recipe.checkpoint.keep_last, self.runtime.acc)
        writer.save(step, state, write_model, write_optim, sharded=self.runtime.fsdp)

    def save_model(self, directory: Path) -> None:
        """The trainable weights as a loadable model: an adapter (base = the recipe's spec) or full weights, with
        the tokenizer and prompt_format.json."""
        model = self.runtime.acc.unwrap_model(self.model)
        state = self.runtime.acc.get_state_dict(self.model) if self.runtime.fsdp else None
        if self.runtime.main:
            directory.mkdir(parents=True, exist_ok=True)
            attention.use_sdpa(model)  # the saved config must not name an implementation only writetune registers
            try:
                # An adapter never trains the embeddings, so peft need not look the base up (on the hub, for an
                # alias) to decide whether to save them.
                adapter = {"save_embedding_layers": False} if self.recipe.method == "lora" else {}
                model.save_pretrained(directory, state_dict=state, safe_serialization=True, **adapter)
            finally:
                if self.recipe.attention == "varlen":
                    attention.use_varlen(model)
            self.loaded.tokenizer.save_pretrained(directory)
            save_prompt_format(self.loaded.prompt_format, directory)

    def fit(self) -> TrainResult:
        r = self.recipe
        e = r.eval
        self.say(self.describe())
        started = self.started = time.perf_counter()
        losses: list[float] = []
        last_eval = None
        if self.start.step == 0 and e.at_start:
            last_eval = self.evaluate(0)
        run_tokens = 0
        train_time = 0.0
        for index in range(self.start.step, self.total_steps):
            step = index + 1
            t0 = time.perf_counter()
            loss, grad_norm, tokens = self.train_step(index)
            dt = time.perf_counter() - t0
            train_time += dt
            run_tokens += tokens
            self.tokens_seen += tokens
            losses.append(loss)
            lr = self.scheduler.get_last_lr()[0]
            if self.runtime.main and (step % r.log.every == 0 or step == self.total_steps):
                epoch = round(self.data.plan.epoch_of_step[index], 4)
                self.logger.log({"kind": "train", "step": step, "epoch": epoch, "loss": loss, "lr": lr,
                                 "grad_norm": grad_norm, "tokens": tokens, "targets": self.step_targets(index),
                                 "tokens_per_s": round(tokens / dt, 1),
                                 "tokens_seen": self.tokens_seen, "elapsed_s": round(time.perf_counter() - started, 2)})
            self.progress.update(loss, run_tokens / train_time, lr)
            if e.every and step % e.every == 0:
                last_eval = self.evaluate(step)
            elif step == self.total_steps and e.at_end:
                last_eval = self.evaluate(step)
            if r.checkpoint.every and step % r.checkpoint.every == 0 and step != self.total_steps:
                self.save_checkpoint(step)
        self.progress.close()
        self.save_checkpoint(self.total_steps)
        self.save_model(self.run_dir / "model")
        this_run = time.perf_counter() - started
        wall = self.start.wall_s + this_run  # a resumed run counts the steps before its checkpoint too
        result = TrainResult(run_dir=self.run_dir, steps=self.total_steps, resumed_from=self.start.resumed_from,
                             train_losses=losses, final_dev_loss=(last_eval or {}).get("dev_loss"), wall_s=wall,
                             tokens_per_s=run_tokens / train_time if train_time else 0.0)
        if self.runtime.main:
            (self.run_dir / RESULT_FILE).write_text(json.dumps({
                "steps": result.steps, "resumed_from": result.resumed_from, "wall_s": round(wall, 2),
                "wall_s_this_run": round(this_run, 2),
                "train_tokens_per_s": round(result.tokens_per_s, 1), "final_dev_loss": result.final_dev_loss,
                "dropped_long_examples": self.data.dropped, "method": self.recipe.method,
                "trainable_params": self.trainable, "total_params": self.total_params,
                "hardware": self.hardware()}, indent=2) + "\n")
        self.logger.close()
        self.runtime.acc.wait_for_everyone()
        return result

    def hardware(self) -> str:
        """What trained: the number of processes and the device (the GPU's name, or the CPU's core count)."""
        if self.runtime.device.type == "cuda":
            what = torch.cuda.get_device_name(self.runtime.device)
        else:
            what = f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
        return f"{self.runtime.world} x {what}"

    def describe(self) -> str:
        r = self.recipe
        world = self.runtime.world
        what = f"LoRA r={r.lora.rank}" if r.method == "lora" else "full fine-tune"
        return (f"{what} of {r.model}: {self.trainable:,} of {self.total_params:,} parameters trained; "
                f"{len(self.data.examples):,} examples ({self.data.dropped} longer than {r.batch.example_limit} tokens "
                f"left out), {self.total_steps} steps of {world} x {r.batch.grad_accum} rows x <= {r.batch.tokens} "
                f"tokens; {r.precision}, {world} process(es) on {self.runtime.device}"
                + (f"; resuming after step {self.start.step}" if self.start.resumed_from else ""))


def describe_eval(record: dict) -> str:
    parts = [f"step {record['step']}"]
    if record.get("dev_loss") is not None:
        parts.append(f"dev_loss {record['dev_loss']:.4f}")
    for task, result in (record.get("tasks") or {}).items():
        parts.append(f"{task} {result['metric']} {result['score']:.1f} copy {result['copy_rate']:.0f}%")
    return " | ".join(parts)


def _portable_spec(spec: str) -> str:
    """An adapter's base: aliases and hub ids as written, local paths made absolute."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def train(recipe: TrainRecipe, *, resume: bool = False, log=None) -> TrainResult:
    """Run (or resume) the training a recipe describes; returns a summary."""
    return Trainer(recipe, resume=resume, log=log).setup().fit()
