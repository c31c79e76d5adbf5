"""The dry run of a training recipe: what a run would need, worked out before any weights are loaded.

`plan_run` validates the recipe's model, data and accelerate configuration, builds the model on PyTorch's meta
device (shapes only, so a 7B or 70B architecture costs no memory), and returns a `DryRun`: parameter counts, the
DDP/FSDP plan, a per-device memory estimate with the formula of each term, the data plan (tokens per step, steps per
epoch) and the time per epoch at a stated MFU on a named GPU. `DryRun.format()` is what `writetune train --dry-run`
prints; `DryRun.fits` says whether the estimate fits the GPU's memory.

The architecture comes from the model spec without weights: a local directory's config.json, the embedded model's
GGUF header, the local Hugging Face cache for a hub id, or, for a hub id that is not cached, a config shipped in
`writetune/train/architectures/` (hub id with `/` as `--`). The memory formula follows what `loop.py` does (trainable
weights in fp32, frozen LoRA bases in bf16 under bf16 precision, bf16 autocast, AdamW, varlen attention with an
explicit score matrix per example up to `attention.MATH_MAX_LEN` tokens); docs/scaling.md derives it and says how it
was checked against measured peaks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import launch_command_parser
from huggingface_hub import try_to_load_from_cache
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from writetune.data.record import read_records
from writetune.models import ModelSpecError, embedded_gguf_path, load_tokenizer, resolve
from writetune.train.attention import MATH_MAX_LEN
from writetune.train.collate import examples_within_limit, plan_steps, tokenize_records
from writetune.train.recipe import TrainRecipe

ARCHITECTURES_DIR = Path(__file__).parent / "architectures"
# Mean tokens per training example (prompt + response, template included) of configs/mix-paper.yaml built from the
# shared corpora, with the embedded SmolLM2 tokenizer and its ChatML template: 96.95 over 10,560 examples. Used for
# steps per epoch only when the mix is not built yet or its tokenizer is not available offline.
DEFAULT_EXAMPLE_TOKENS = 97
DEFAULT_MFU = 0.40
MEMORY_MARGIN = 0.90  # the estimate must fit in 90% of the device: the rest is the CUDA context, NCCL, fragmentation
GIB = 2**30


class DryRunError(ValueError):
    """A recipe, model or accelerate configuration that a run could not use; the message says which and why."""


@dataclass(frozen=True)
class GpuSpec:
    name: str
    bf16_tflops: float  # dense bf16 tensor-core peak with fp32 accumulation, no sparsity
    memory_gib: float  # as the driver reports it


GPUS: dict[str, GpuSpec] = {
    "a100": GpuSpec("NVIDIA A100 80GB SXM", 312.0, 80.0),
    "h100": GpuSpec("NVIDIA H100 80GB SXM", 989.4, 79.6),
    "h200": GpuSpec("NVIDIA H200 141GB SXM", 989.4, 140.4),
    "l40s": GpuSpec("NVIDIA L40S 48GB", 362.1, 45.0),
    "rtx4090": GpuSpec("NVIDIA GeForce RTX 4090 24GB", 165.2, 24.0),
}


def gpu_spec(name: str) -> GpuSpec:
    key = name.lower().replace(" ", "").replace("-", "")
    if key not in GPUS:
        raise DryRunError(f"unknown GPU '{name}' (known: {', '.join(GPUS)})")
    return GPUS[key]


# ------------------------------------------------------------------------------------------------ architecture
def model_architecture(spec: str):
    """The transformers config of a model spec and where it was read from, without loading any weights."""
    resolved = resolve(spec, convert=False)
    if resolved.kind == "adapter":
        resolved = resolved.base
    if resolved.kind in ("alias", "gguf"):
        if (Path(resolved.path) / "config.json").is_file():
            return AutoConfig.from_pretrained(resolved.path), f"{resolved.path}/config.json"
        gguf = embedded_gguf_path(resolved.spec) if resolved.kind == "alias" else Path(resolved.spec).resolve()
        return AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name), f"GGUF header of {gguf}"
    if resolved.kind == "directory":
        return AutoConfig.from_pretrained(resolved.path), f"{resolved.path}/config.json"

    cached = try_to_load_from_cache(resolved.path, "config.json")
    if isinstance(cached, str):
        return _config_from_json(Path(cached)), f"{cached} (Hugging Face cache)"
    shipped = ARCHITECTURES_DIR / f"{resolved.path.replace('/', '--')}.json"
    if shipped.is_file():
        return _config_from_json(shipped), f"{shipped.relative_to(Path(__file__).parents[2])} (shipped architecture)"
    known = ", ".join(sorted(path.stem.replace("--", "/") for path in ARCHITECTURES_DIR.glob("*.json")))
    raise DryRunError(f"model '{spec}': a hub id whose config.json is neither in the local Hugging Face cache nor "
                      f"shipped in {ARCHITECTURES_DIR} (known: {known}); download its config.json into a directory "
                      "and name that directory as the model")


def _config_from_json(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    return AutoConfig.for_model(data.pop("model_type"), **data)


def build_meta_model(recipe: TrainRecipe, config):
    """The recipe's model (with its LoRA adapter) on the meta device: every parameter has its shape and no storage."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        if recipe.method == "lora":
            try:
                model = get_peft_model(model, recipe.lora.peft_config())
            except ValueError as err:
                raise DryRunError(f"key 'lora.target_modules': {err}".splitlines()[0]) from None
    return model


@dataclass(frozen=True)
class ParamCounts:
    total: int
    trainable: int
    trainable_matmul: int  # trainable weights of Linear layers: the ones bf16 autocast casts to bf16 copies
    largest_layer: int  # parameters of the largest decoder layer (an FSDP unit)
    layer_class: str

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


def count_parameters(model) -> ParamCounts:
    trainable_matmul = sum(module.weight.numel() for module in model.modules()
                           if isinstance(module, torch.nn.Linear) and module.weight.requires_grad)
    layers = _decoder_layers(model)
    return ParamCounts(
        total=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        trainable_matmul=trainable_matmul,
        largest_layer=max(sum(p.numel() for p in layer.parameters()) for layer in layers),
        layer_class=type(layers[0]).__name__,
    )


def _decoder_layers(model) -> list:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return list(inner.model.layers)


# ------------------------------------------------------------------------------------------------ distributed plan
@dataclass(frozen=True)
class DistributedPlan:
    kind: str  # "single", "DDP" or "FSDP"
    processes: int  # all processes of the job, over every machine
    machines: int = 1
    source: str = "no accelerate config: one process"
    fsdp_version: int | None = None
    wrap_class: str | None = None
    sharding: str | None = None  # FULL_SHARD, SHARD_GRAD_OP, ...
    state_dict: str | None = None
    activation_checkpointing: bool = False
    cpu_offload: bool = False

    @property
    def shards(self) -> int:
        """How many ways weights, gradients and optimizer state are split per device."""
        return self.processes if self.kind == "FSDP" and self.sharding != "NO_SHARD" else 1

    def describe(self) -> str:
        if self.kind == "single":
            return f"1 process ({self.source})"
        head = f"{self.kind} over {self.processes} processes on {self.machines} machine(s) ({self.source})"
        if self.kind != "FSDP":
            return head
        return (f"{head}; FSDP{self.fsdp_version}, wrapping each {self.wrap_class}, {self.sharding}, "
                f"{self.state_dict} checkpoints, activation checkpointing "
                f"{'on' if self.activation_checkpointing else 'off'}, CPU offload {'on' if self.cpu_offload else 'off'}")


def _fsdp_launch_keys() -> set[str]:
    """The fsdp_config keys `accelerate launch` understands (its command-line options, which the config fills)."""
    return {action.dest for action in launch_command_parser()._actions if action.dest.startswith("fsdp_")}


def read_accelerate_config(path: str | Path | None, num_processes: int | None = None,
                           model=None) -> DistributedPlan:
    """The distributed plan an accelerate config file describes (`num_processes` overrides the file's, as
    `accelerate launch --num_processes` does). Unknown keys and a wrapped layer class the model lacks are errors."""
    if path is None:
        if num_processes not in (None, 1):
            raise DryRunError(f"--num-processes {num_processes} needs an accelerate config that says how the "
                              "processes share the model (e.g. configs/accelerate/fsdp.yaml or ddp.yaml)")
        return DistributedPlan(kind="single", processes=1)

    path = Path(path)
    if not path.is_file():
        raise DryRunError(f"{path}: accelerate config file not found")
    try:
        config = ClusterConfig.from_yaml_file(str(path))
    except (ValueError, TypeError) as err:
        raise DryRunError(f"{path}: {err}") from None
    processes = num_processes or config.num_processes or 1
    kind = str(getattr(config.distributed_type, "value", config.distributed_type))
    if kind == "NO" or (processes == 1 and kind != "FSDP"):
        return DistributedPlan(kind="single", processes=1, source=str(path))
    if kind not in ("MULTI_GPU", "FSDP", "MULTI_CPU"):
        raise DryRunError(f"{path}: distributed_type {kind} is not one writetune trains with (MULTI_GPU or FSDP)")
    machines = config.num_machines or 1
    if kind != "FSDP":
        return DistributedPlan(kind="DDP", processes=processes, machines=machines, source=str(path))
    fsdp = dict(config.fsdp_config or {})
    unknown = sorted(set(fsdp) - _fsdp_launch_keys())
    if unknown:
        raise DryRunError(f"{path}: fsdp_config has keys accelerate does not know: {', '.join(unknown)} "
                          "(accelerate would ignore them silently)")
    version = int(fsdp.get("fsdp_version", 1))
    policy = fsdp.get("fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP")
    wrap_class = fsdp.get("fsdp_transformer_layer_cls_to_wrap") if policy == "TRANSFORMER_BASED_WRAP" else policy
    if model is not None and policy == "TRANSFORMER_BASED_WRAP":
        classes = {type(module).__name__ for module in model.modules()}
        for name in str(wrap_class or "").split(","):
            if name.strip() and name.strip() not in classes:
                layer = type(_decoder_layers(model)[0]).__name__
                raise DryRunError(f"{path}: fsdp_transformer_layer_cls_to_wrap '{name.strip()}' is not a module "
                                  f"class of the model (its decoder layers are {layer})")
    if version == 2:
        sharding = "FULL_SHARD" if fsdp.get("fsdp_reshard_after_forward", True) else "SHARD_GRAD_OP"
    else:
        sharding = str(fsdp.get("fsdp_sharding_strategy", "FULL_SHARD"))
    return DistributedPlan(kind="FSDP", processes=processes, machines=machines, source=str(path),
                           fsdp_version=version, wrap_class=wrap_class, sharding=sharding,
                           state_dict=fsdp.get("fsdp_state_dict_type", "FULL_STATE_DICT"),
                           activation_checkpointing=bool(fsdp.get("fsdp_activation_checkpointing", False)),
                           cpu_offload=bool(fsdp.get("fsdp_offload_params", False)))


# ------------------------------------------------------------------------------------------------ data plan
@dataclass(frozen=True)
class RowShape:
    """The shape of one packed row, as far as memory is concerned."""

    tokens: int
    targets: int  # positions sent through the LM head
    example_lengths: tuple[int, ...]

    @classmethod
    def of(cls, examples) -> "RowShape":
        """The shape of a row packed from these `collate.TokenizedExample`s."""
        return cls(tokens=sum(len(ex) for ex in examples), targets=sum(ex.n_response for ex in examples),
                   example_lengths=tuple(len(ex) for ex in examples))


@dataclass(frozen=True)
class DataPlan:
    source: str
    examples: int | None
    mean_example_tokens: float
    steps_per_epoch: int | None
    row: RowShape  # the row the memory estimate is for (the plan's heaviest, or the worst case)
    measured: bool = False  # the examples were tokenized and planned, not assumed
    target_share: float = 1.0  # share of tokens that are response tokens (LM head positions)


def worst_case_row(recipe: TrainRecipe) -> RowShape:
    """A row filled to the budget with examples as long as allowed, every position a target."""
    budget, longest = recipe.batch.tokens, recipe.batch.example_limit
    lengths = [longest] * (budget // longest) + ([budget % longest] if budget % longest else [])
    return RowShape(tokens=budget, targets=budget, example_lengths=tuple(lengths))


def plan_data(recipe: TrainRecipe, world: int, activation_bytes: Callable[[RowShape], float], *,
              examples_hint: int | None = None, example_tokens: float | None = None) -> DataPlan:
    """Steps per epoch and the row to size memory for. With the mix built and the model's tokenizer available
    offline, the real plan (`collate.plan_steps`) is computed and the row with the most `activation_bytes` taken;
    otherwise the number of examples comes from the manifest or `examples_hint`, their mean length from
    `example_tokens`, and the row is the worst case."""
    data = Path(recipe.data)
    tokenizer = _offline_tokenizer(recipe.model) if (data / "train.jsonl").is_file() else None
    if tokenizer is not None:
        tok, fmt = tokenizer
        examples = tokenize_records(tok, fmt, read_records(data / "train.jsonl"))
        kept = examples_within_limit(examples, recipe.batch.example_limit, data / "train.jsonl", DryRunError)
        plan = plan_steps([len(ex) for ex in kept], budget=recipe.batch.tokens, seed=recipe.seed, world_size=world,
                          grad_accum=recipe.batch.grad_accum, epochs=1.0)
        rows = [RowShape.of([kept[i] for i in row]) for step in plan.steps for row in step]
        heaviest = max(rows, key=activation_bytes)
        return DataPlan(source=f"{data / 'train.jsonl'} tokenized ({len(kept):,} examples kept, "
                        f"{len(examples) - len(kept)} longer than {recipe.batch.example_limit} tokens left out)",
                        examples=len(kept), mean_example_tokens=sum(len(ex) for ex in kept) / len(kept),
                        steps_per_epoch=len(plan), row=heaviest, measured=True,
                        target_share=sum(ex.n_response for ex in kept) / sum(len(ex) for ex in kept))
    mean = float(example_tokens or DEFAULT_EXAMPLE_TOKENS)
    count, source = examples_hint, "the mix recipe's size" if examples_hint else None
    manifest = data / "manifest.json"
    if manifest.is_file():
        count, source = int(json.loads(manifest.read_text(encoding="utf-8"))["counts"]["train"]), str(manifest)
    if count is None:
        return DataPlan(source=f"{data} is not built yet: no example count", examples=None,
                        mean_example_tokens=mean, steps_per_epoch=None, row=worst_case_row(recipe))
    assumed = "given" if example_tokens else "assumed: the measured mean of configs/mix-paper.yaml"
    fill = recipe.batch.tokens - mean / 2  # greedy packing leaves about half an example unused per row
    steps = max(1, math.ceil(count * mean / (fill * world * recipe.batch.grad_accum)))
    return DataPlan(source=f"{count:,} examples from {source}, {mean:g} tokens each ({assumed})", examples=count,
                    mean_example_tokens=mean, steps_per_epoch=steps, row=worst_case_row(recipe))


def _offline_tokenizer(spec: str):
    """The model's tokenizer and prompt format when they can be read without a network, else None."""
    try:
        return load_tokenizer(spec, offline=True)
    except (ModelSpecError, OSError):
        return None


# ------------------------------------------------------------------------------------------------ memory
@dataclass(frozen=True)
class MemoryTerm:
    name: str
    bytes: float
    formula: str


def activation_terms(recipe: TrainRecipe, config, plan: DistributedPlan, row: RowShape) -> list[MemoryTerm]:
    """Activation memory of one micro-batch row (bytes), term by term. Per token and decoder layer the backward pass
    keeps: the fp32 input and normalised output of both RMSNorms (16h bytes), the bf16 (c-byte) inputs of the q/k/v
    and gate/up projections (cast once per projection when the residual stream is fp32, shared when it is already
    bf16), q, k, v and the attention output (c(2h + 2kv)), and the MLP's gate, SiLU, up and product (4ci); per
    example and layer the attention probabilities in fp32 and bf16 ((4 + c)·heads·len² for slices up to the math
    kernel's limit). The LM head keeps ~12 bytes per vocabulary entry per target (fp32 log-probabilities, their
    gradient and the gradient's bf16 cast)."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads = config.num_attention_heads
    kv = (getattr(config, "num_key_value_heads", None) or heads) * (getattr(config, "head_dim", None) or h // heads)
    vocab = config.vocab_size
    c = 2 if recipe.precision == "bf16" else 4
    residual = 2 if recipe.precision == "bf16" and recipe.method == "lora" else 4
    casts = 1 if residual == c else 3  # q, k, v each cast the normalised fp32 input to bf16 (2 for gate, up)
    per_token = 16 * h + casts * c * h + (casts if casts == 1 else 2) * c * h + c * (2 * h + 2 * kv) + 4 * c * i
    if recipe.method == "lora":
        per_token += c * recipe.lora.rank * len(recipe.lora.target_modules)
    math_sq = sum(length * length for length in row.example_lengths if length <= MATH_MAX_LEN)
    attention = (4 + c) * heads * math_sq
    layer = row.tokens * per_token + attention
    checkpointing = recipe.gradient_checkpointing or plan.activation_checkpointing
    head = 12 * vocab * row.targets + 8 * h * row.tokens
    terms = []
    if checkpointing:
        terms.append(MemoryTerm("activations: saved layer inputs", layers * row.tokens * residual * h,
                                f"layers x tokens x {residual}h  (gradient checkpointing keeps each layer's input)"))
        terms.append(MemoryTerm("activations: one layer recomputed", layer,
                                f"tokens x ({_per_token_formula(casts, c)}) + {4 + c} x heads x sum(len^2)"))
    else:
        terms.append(MemoryTerm("activations: decoder layers", layers * layer,
                                f"layers x (tokens x ({_per_token_formula(casts, c)}) + {4 + c} x heads x "
                                "sum(len^2))"))
    terms.append(MemoryTerm("activations: LM head", head, "12 x vocab x targets + 8h x tokens"))
    return terms


def _per_token_formula(casts: int, c: int) -> str:
    return f"16h + {(casts + (casts if casts == 1 else 2)) * c}h + {c}(2h + 2kv) + {4 * c}i"


def memory_terms(recipe: TrainRecipe, counts: ParamCounts, plan: DistributedPlan, config,
                 row: RowShape) -> list[MemoryTerm]:
    """Per-device bytes of a training step: static state, then the step's transient peak."""
    n = plan.shards
    shard = f" / {n}" if n > 1 else ""
    bf16 = recipe.precision == "bf16"
    terms = []
    if recipe.method == "lora" and bf16:
        terms.append(MemoryTerm("weights", (2 * counts.frozen + 4 * counts.trainable) / n,
                                f"(2 x frozen + 4 x trainable){shard}  (bf16 base, fp32 adapter)"))
    else:
        terms.append(MemoryTerm("weights", 4 * counts.total / n, f"4 x params{shard}  (fp32)"))
    terms.append(MemoryTerm("gradients", 4 * counts.trainable / n, f"4 x trainable{shard}  (fp32)"))
    terms.append(MemoryTerm("optimizer state", 8 * counts.trainable / n,
                            f"8 x trainable{shard}  (AdamW: two fp32 moments)"))
    if plan.kind == "DDP":
        terms.append(MemoryTerm("DDP gradient buckets", 4 * counts.trainable, "4 x trainable  (the reducer's copy)"))
    if n > 1:
        weight_bytes = 2 if recipe.method == "lora" and bf16 else 4
        terms.append(MemoryTerm("FSDP gathered layers", 2 * weight_bytes * counts.largest_layer,
                                f"2 x {weight_bytes} x params of one {counts.layer_class}  (current + prefetched)"))
    if bf16:
        terms.append(MemoryTerm("autocast bf16 weight copies", 2 * counts.trainable_matmul,
                                "2 x trainable Linear weights  (cast once per step, held until the forward ends; "
                                "not sharded)"))
    terms.extend(activation_terms(recipe, config, plan, row))
    return terms


# ------------------------------------------------------------------------------------------------ time
def flops_per_token(recipe: TrainRecipe, counts: ParamCounts, config, mean_example_tokens: float,
                    target_share: float) -> float:
    """Model FLOPs per trained token (the MFU convention: recomputation not counted). Full fine-tuning: 6N + 12·L·h·s
    (forward, input gradients and weight gradients); LoRA: 4N + 8·L·h·s (no weight gradients for the frozen
    base). N counts matmul weights (the LM head scaled by the share of positions that are targets), s is the mean
    example length (attention never crosses examples); causal attention does half the score work, hence 12 -> 6."""
    h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    embedding = vocab * h
    body = counts.total - embedding * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    n = body + embedding * target_share
    if recipe.method == "full":
        return 6 * n + 6 * layers * h * mean_example_tokens
    return 4 * n + 4 * layers * h * mean_example_tokens


# ------------------------------------------------------------------------------------------------ the plan
@dataclass
class DryRun:
    recipe: TrainRecipe
    architecture_source: str
    counts: ParamCounts
    plan: DistributedPlan
    data: DataPlan
    memory: list[MemoryTerm]
    gpu: GpuSpec
    mfu: float
    flops_per_token: float
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> float:
        return sum(term.bytes for term in self.memory)

    @property
    def budget_bytes(self) -> float:
        return MEMORY_MARGIN * self.gpu.memory_gib * GIB

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.budget_bytes

    @property
    def tokens_per_step(self) -> int:
        return self.plan.processes * self.recipe.batch.grad_accum * self.recipe.batch.tokens

    @property
    def epoch_tokens(self) -> float | None:
        return self.data.examples * self.data.mean_example_tokens if self.data.examples else None

    @property
    def epoch_seconds(self) -> float | None:
        if self.epoch_tokens is None:
            return None
        return self.epoch_tokens * self.flops_per_token / (self.plan.processes * self.gpu.bf16_tflops * 1e12
                                                           * self.mfu)

    def misfit_reason(self) -> str:
        return (f"the estimate ({self.total_bytes / GIB:.1f} GiB per device) does not fit a {self.gpu.name} "
                f"({MEMORY_MARGIN:.0%} of {self.gpu.memory_gib:g} GiB = {self.budget_bytes / GIB:.1f} GiB); "
                f"{_suggestion(self)}")

    def format(self) -> str:
        r = self.recipe
        what = f"LoRA r={r.lora.rank} on {', '.join(r.lora.target_modules)}" if r.method == "lora" else "full fine-tune"
        lines = [
            f"model        {r.model}: {self.architecture_source}; built on the meta device (no weights loaded)",
            f"parameters   {self.counts.total:,} total, {self.counts.trainable:,} trainable ({what})",
            f"processes    {self.plan.describe()}",
            f"batch        {self.plan.processes} process(es) x {r.batch.grad_accum} rows x <= {r.batch.tokens} "
            f"tokens = {self.tokens_per_step:,} tokens per step; examples <= {r.batch.example_limit} tokens; "
            f"{r.precision}, gradient checkpointing {'on' if r.gradient_checkpointing else 'off'}",
            f"data         {self.data.source}",
            f"memory per device, for a row of {self.data.row.tokens} tokens ({len(self.data.row.example_lengths)} "
            f"examples, {self.data.row.targets} targets):",
        ]
        for term in self.memory:
            lines.append(f"  {term.name:<36} {term.bytes / GIB:9.2f} GiB   {term.formula}")
        lines.append(f"  {'total':<36} {self.total_bytes / GIB:9.2f} GiB   "
                     f"({'fits' if self.fits else 'does NOT fit'} {MEMORY_MARGIN:.0%} of a {self.gpu.name}, "
                     f"{self.gpu.memory_gib:g} GiB)")
        if self.data.steps_per_epoch is not None:
            seconds = self.epoch_seconds
            duration = f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"
            run_steps = r.max_steps or math.ceil(self.data.steps_per_epoch * r.num_epochs)
            lines.append(f"steps        {self.data.steps_per_epoch:,} per epoch, {run_steps:,} in the run")
            lines.append(f"time         {duration} per epoch on {self.plan.processes} x {self.gpu.name} at "
                         f"{self.mfu:.0%} MFU ({self.gpu.bf16_tflops:g} bf16 TFLOPS peak, "
                         f"{self.flops_per_token / 1e9:.1f} GFLOPs per token)")
        else:
            lines.append("steps        unknown until the mix is built (writetune run builds it; or give "
                         "--examples N)")
        lines.extend(f"note         {note}" for note in self.notes)
        return "\n".join(lines)


def _suggestion(run: DryRun) -> str:
    if run.plan.kind != "FSDP" and run.recipe.method == "full":
        return "full fine-tuning of this model needs its weights, gradients and optimizer state sharded: " \
               "--accelerate-config configs/accelerate/fsdp.yaml --num-processes N"
    if not run.recipe.gradient_checkpointing:
        return "try gradient_checkpointing: true or a smaller batch.tokens"
    return "try a smaller batch.tokens, more processes, or a GPU with more memory"


def plan_run(recipe: TrainRecipe, *, gpu: str = "h100", mfu: float = DEFAULT_MFU,
             accelerate_config: str | Path | None = None, num_processes: int | None = None,
             examples: int | None = None, example_tokens: float | None = None) -> DryRun:
    """Everything `--dry-run` reports about a recipe; raises DryRunError (or the recipe's own errors) when a key, a
    path or the accelerate config could not be used."""
    if not 0 < mfu <= 1:
        raise DryRunError(f"--mfu {mfu}: expected a fraction in (0, 1]")
    device = gpu_spec(gpu)
    config, source = model_architecture(recipe.model)
    model = build_meta_model(recipe, config)
    counts = count_parameters(model)
    plan = read_accelerate_config(accelerate_config, num_processes, model)
    notes = []
    data = Path(recipe.data)
    if not (data / "train.jsonl").is_file():
        notes.append(f"data: {data}/train.jsonl does not exist yet; `writetune train` needs it "
                     "(`writetune run` and `writetune data build` write it)")
    elif recipe.eval.at_start or recipe.eval.every or recipe.eval.at_end:
        if not (data / "dev.jsonl").is_file():
            raise DryRunError(f"{data / 'dev.jsonl'}: the recipe evaluates during training but the mix has no dev "
                              "file")
    if plan.kind == "FSDP" and recipe.eval.generate_per_task:
        notes.append("in-training generation is skipped under FSDP; the dev loss still runs")

    def row_bytes(row: RowShape) -> float:
        return sum(term.bytes for term in activation_terms(recipe, config, plan, row))

    data_plan = plan_data(recipe, plan.processes, row_bytes, examples_hint=examples, example_tokens=example_tokens)
    terms = memory_terms(recipe, counts, plan, config, data_plan.row)
    return DryRun(recipe=recipe, architecture_source=source, counts=counts, plan=plan, data=data_plan,
                  memory=terms, gpu=device, mfu=mfu,
                  flops_per_token=flops_per_token(recipe, counts, config, data_plan.mean_example_tokens,
                                                  data_plan.target_share), notes=notes)
