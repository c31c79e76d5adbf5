"""The `writetune` command line: parses arguments, calls one library function per command, prints the result.

Library code raises; this is the only place that prints and chooses exit codes (2 for bad input or a bad spec).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import platform
import re
import sys
import time
import typing
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from writetune import __version__
from writetune.generate.api import DecodingConfig
from writetune.models import DEFAULT_ASSISTANT, cache_dir, resolve

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Tune LLaMA-family models into writing assistants.")
console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model spec: alias (assistant-135m: the shipped "
                                          "writing assistant; smollm2-135m: its base), directory, .gguf file or hub "
                                          "id.")]


@contextmanager
def user_errors():
    """Turn the library's input errors (ValueError and missing files) into one red line and exit code 2."""
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _is_ready(resolved) -> bool:
    """Whether loading `resolved` needs no conversion first (a GGUF alias or file is converted on first load)."""
    return resolved.kind in ("directory", "adapter", "hub") or os.path.isfile(os.path.join(resolved.path,
                                                                                          "config.json"))


@app.command()
def info(
    model: ModelOption = DEFAULT_ASSISTANT,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
):
    """Print versions, the compute device, the cache location and where a model spec resolves to."""
    # torch stays off the CLI's start-up path
    import accelerate
    import peft
    import torch
    import transformers

    with user_errors():
        resolved = resolve(model, convert=False)
    if torch.cuda.is_available():
        device = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    facts = {
        "writetune": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        **{module.__name__: module.__version__ for module in (torch, transformers, peft, accelerate)},
        "device": device,
        "cache": str(cache_dir()),
        "data_dir": os.environ.get("WRITETUNE_DATA"),
        "model": {"spec": model, "kind": resolved.kind, "path": resolved.path,
                  "ready": _is_ready(resolved.base or resolved)},
    }
    if resolved.base is not None:
        card = os.path.join(resolved.path, "README.md")
        facts["model"].update(base={"spec": resolved.base.spec, "kind": resolved.base.kind,
                                    "path": resolved.base.path},
                              card=card if os.path.isfile(card) else None)
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in facts.items():
        if key == "model":
            note = "" if value["ready"] else " (not converted yet: the first load converts it)"
            value = f"{model} -> {resolved.kind}: {resolved.path}"
            if resolved.base is not None:
                value += f"\n  on {resolved.base.spec} -> {resolved.base.kind}: {resolved.base.path}"
                if facts["model"]["card"]:
                    value += f"\n  model card: {facts['model']['card']}"
            value += note
        table.add_row(key, str(value) if value is not None else "(WRITETUNE_DATA not set)")
    console.print(table)


def _edit_inputs(items: list[str]) -> list[tuple[str | None, str]]:
    """(source, text) for each input: `-` is standard input (source `-`), an existing file is read (source: its
    path), anything else is the text itself (source None); a word that looks like a file name (`notes.md`,
    `docs/x`) but names no file is an error."""
    inputs = []
    for item in items:
        if item == "-":
            inputs.append(("-", sys.stdin.read()))
        elif os.path.isfile(item):
            with open(item, encoding="utf-8", newline="") as fh:
                inputs.append((item, fh.read()))
        elif not re.search(r"\s", item) and ("/" in item or re.search(r"\.[A-Za-z]\w{0,4}$", item)):
            raise FileNotFoundError(f"{item}: no such file (to edit it as text, give a sentence)")
        else:
            inputs.append((None, item))
    return inputs


@app.command()
def edit(
    texts: Annotated[list[str], typer.Argument(help="Text to edit, '-' for standard input, or files.",
                                               show_default=False)],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name or alias (grammar, simplify, ...) or all.")]
    = "grammar",
    model: ModelOption = DEFAULT_ASSISTANT,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff (as diff -u) instead of the text.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print /v1/edit's JSON (one object a line per input).")]
    = False,
    in_place: Annotated[bool, typer.Option("--in-place", "-i", help="Rewrite the files (atomically), keeping a "
                                           "backup.")] = False,
    backup_suffix: Annotated[str, typer.Option(help="Backup name for --in-place: the file's name + this.")] = ".bak",
    markdown: Annotated[bool, typer.Option(help="Edit only the prose of Markdown: code, URLs, front matter and "
                                           "tables pass through.")] = True,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest answer per sentence, in tokens.")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="Sentences decoded together.")] = 8,
    rewrite_check: Annotated[bool, typer.Option(help="Keep a sentence as it is where the answer is not a rewrite "
                                                "of it (a preamble, an explanation).")] = True,
):
    """Edit text, standard input or files with a model; print the text, a diff, or JSON, or rewrite the files."""
    # loaded when the command runs, off the CLI's start-up path
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # loaded when the command runs, off the CLI's start-up path
    from writetune.document_edit import DocumentEditor, unified_diff, write_in_place
    from writetune.serve.served_model import ServedModel
    from writetune.tasks import get_task

    with user_errors():
        if sum((diff, as_json, in_place)) > 1:
            raise ValueError("--diff, --json and --in-place do not go together; choose one")
        chosen = "all" if task.strip().lower() == "all" else get_task(task).name
        inputs = _edit_inputs(texts)
        if in_place and any(path in (None, "-") for path, _ in inputs):
            raise ValueError("--in-place rewrites files; give file names, not text or '-'")
        for path, text in inputs:
            if not text.strip():
                raise ValueError(f"{path or 'the text to edit'} is empty")
        served = ServedModel.load(model, dtype=dtype, device="auto")
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=err_console, transient=True)
        with DocumentEditor(served, task=chosen, max_new_tokens=max_new_tokens, max_batch_size=batch_size,
                            concurrency=batch_size, rewrite_check=rewrite_check) as editor, progress:
            for path, text in inputs:
                bar = progress.add_task(f"editing {path or 'text'}", total=None)
                result = editor.edit(text, markdown=markdown,
                                     on_progress=lambda done, total, bar=bar: progress.update(bar, completed=done,
                                                                                              total=total))
                progress.remove_task(bar)
                if in_place:
                    if result["output"] == text:
                        err_console.print(f"{path}: unchanged", highlight=False)
                        continue
                    backup = write_in_place(path, result["output"], backup_suffix)
                    err_console.print(f"{path}: {len(result['edits'])} edits (backup in {backup})", highlight=False)
                elif diff:
                    sys.stdout.write(unified_diff(text, result["output"], path or "-",
                                                  os.path.getmtime(path) if path not in (None, "-") else None))
                elif as_json:
                    print(json.dumps({**result, **({"path": path} if path not in (None, "-") else {})},
                                     ensure_ascii=False))
                else:  # a file or standard input as it was, line breaks included; text given as an argument + \n
                    sys.stdout.write(result["output"] if path else result["output"] + "\n")
                    sys.stdout.flush()


@app.command()
def score(
    metric: Annotated[str, typer.Option("--metric", help="sari|gleu|m2|errant|em|bleu|self_bleu|ibleu|copy_rate")],
    hyp: Annotated[str, typer.Option("--hyp", help="System outputs, one segment per line.")],
    source: Annotated[str | None, typer.Option("--source", help="Source segments (m2/errant: the M2 S lines).")] = None,
    ref: Annotated[list[str] | None, typer.Option("--ref", help="A reference file; repeat for several.")] = None,
    m2: Annotated[str | None, typer.Option("--m2", help="Gold M2 file (m2, errant).")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for a 95% CI.")] = 0,
    seed: Annotated[int | None, typer.Option("--seed", help="Bootstrap seed (default 12345).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Score system outputs with a writing metric (no model needed); see docs/metrics.md."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.metrics import score_files

    with user_errors():
        result = score_files(metric, hyp=hyp, source=source, refs=ref or [], m2=m2, bootstrap=bootstrap, seed=seed)
    if as_json:
        print(result.to_json())
    else:
        console.print(result.format(), highlight=False, markup=False, soft_wrap=True)


data_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Build instruction-tuning data mixes.")
app.add_typer(data_app, name="data")


@data_app.command("build")
def data_build(
    recipe: Annotated[str, typer.Argument(help="Recipe YAML, e.g. configs/mix-paper.yaml.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (written whole or not at all).")],
    data_dir: Annotated[
        str | None, typer.Option("--data-dir", help="Corpora folder; else $WRITETUNE_DATA, else the recipe's data_dir.")
    ] = None,
    drop_contaminated: Annotated[
        bool, typer.Option("--drop-contaminated", help="Drop training records found in an eval set instead of refusing.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output directory.")] = False,
):
    """Build train.jsonl, dev.jsonl and manifest.json from a recipe; see docs/data.md."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.data.build import build_mix, describe_overlap

    start = time.perf_counter()
    with user_errors(), console.status("building the mix") as status:
        result = build_mix(
            recipe, out, data_dir=data_dir, drop_contaminated=drop_contaminated or None, overwrite=force,
            log=lambda message: status.update(message),
        )  # fmt: skip
    manifest = result.manifest
    table = Table(title=f"{manifest['recipe']} -> {result.out_dir}")
    for column in ("task", "train", "dev", "unchanged in train"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for task, count in manifest["counts"]["train_by_task"].items():
        share = manifest["unchanged"][task]["train_share"]
        table.add_row(task, str(count), str(manifest["counts"]["dev_by_task"].get(task, 0)), f"{share:.1%}")
    table.add_row("total", str(result.train), str(result.dev), "")
    console.print(table)
    if manifest["contamination"]["dropped"]:
        console.print(describe_overlap(manifest["contamination"]["by_source"]), highlight=False)
    checked = manifest["contamination"]["eval_sets"]
    present = sum(report["status"] == "present" for report in checked.values())
    prints = sum(report["status"] == "present" for report in manifest["contamination"]["fingerprints"].values())
    held = sum(source.get("held_out", 0) for source in manifest["sources"].values())
    console.print(
        f"contamination ({manifest['contamination']['mode']}): {manifest['contamination']['matches']} records matched "
        f"{present} present of {len(checked)} checked eval sets and {prints} fingerprint files; {held} records held out for "
        f"{', '.join(manifest['holdout']['suites'])}; {time.perf_counter() - start:.1f} s",
        highlight=False,
    )


@app.command()
def serve(
    model: ModelOption = DEFAULT_ASSISTANT,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    api_key: Annotated[str | None, typer.Option(
        envvar="WRITETUNE_API_KEY", help="Require this key on /v1/*. Set it in WRITETUNE_API_KEY instead: a key on "
        "the command line is visible to every user of the machine (ps).")] = None,
    allowed_hosts: Annotated[str, typer.Option(
        help="Comma-separated host names the server answers for besides IP addresses and localhost ('*': any).")] = "",
    model_name: Annotated[str | None, typer.Option(help="Model id reported by /v1/models.")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16.")] = "float32",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: one per core).")] = None,
    max_input_chars: Annotated[int, typer.Option(min=1)] = 8000,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 512,
    max_batch_size: Annotated[int, typer.Option(min=1, help="1 serves requests one by one.")] = 8,
    max_prompts: Annotated[int, typer.Option(min=1, help="Prompts per /v1/completions request.")] = 16,
    max_sentences: Annotated[int, typer.Option(min=1, help="Sentences per /v1/edit request.")] = 64,
    max_queue: Annotated[int, typer.Option(min=1, help="Generation sequences waiting for the model.")] = 256,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds before a request gets 504.")] = 120.0,
    header_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds for a request's headers: else 408.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds for a request's body: else 408.")] = 20.0,
    max_connections: Annotated[int, typer.Option(min=1, help="Open connections: one more gets 503.")] = 256,
    languagetool_task: Annotated[str, typer.Option(help="Task a LanguageTool check (/v2/check) runs, or all.")]
    = "grammaticality",
    rewrite_check: Annotated[bool, typer.Option(help="Offer an answer as edits only where it is a rewrite of its "
                                                "sentence (no preamble or explanation).")] = True,
):
    """Serve a model over HTTP: OpenAI-compatible API, /v1/edit, LanguageTool's /v2/check and a web page at /."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.serve import ServeSettings, load_served_model, run_server

    with user_errors():
        settings = ServeSettings(model=model, host=host, port=port, api_key=api_key, model_name=model_name,
                                 allowed_hosts=tuple(h.strip() for h in allowed_hosts.split(",") if h.strip()),
                                 dtype=dtype, device=device, threads=threads, max_input_chars=max_input_chars,
                                 max_new_tokens=max_new_tokens, max_batch_size=max_batch_size,
                                 max_prompts=max_prompts,
                                 max_sentences=max_sentences, max_queue=max_queue, request_timeout_s=timeout,
                                 header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                                 max_connections=max_connections, languagetool_task=languagetool_task,
                                 rewrite_check=rewrite_check)
        if api_key is not None and os.environ.get("WRITETUNE_API_KEY") != api_key:
            err_console.print("warning: --api-key is visible to every user of this machine (ps); set "
                              "WRITETUNE_API_KEY instead", highlight=False)
        served = load_served_model(settings)
    err_console.print(f"serving {served.model_id} at http://{host}:{port}/ (API under /v1)", highlight=False)
    run_server(settings, served)


@dataclass(frozen=True)
class DryRunOptions:
    """The dry-run options of `writetune train` and `writetune run` (`writetune.train.dryrun.plan_run`'s
    arguments)."""

    gpu: Annotated[str, typer.Option("--gpu", help="Dry run: a100, h100, h200, l40s or rtx4090.")] = "h100"
    mfu: Annotated[float, typer.Option("--mfu", help="Dry run: model FLOPs utilisation for the time estimate.")] = 0.4
    accelerate_config: Annotated[str | None, typer.Option(
        "--accelerate-config", help="Dry run: the accelerate config the job will be launched with.")] = None
    num_processes: Annotated[int | None, typer.Option(
        "--num-processes", min=1, help="Dry run: processes of the job (accelerate launch --num_processes).")] = None
    examples: Annotated[int | None, typer.Option(
        "--examples", min=1, help="Dry run: training examples, when the mix is not built yet.")] = None
    example_tokens: Annotated[float | None, typer.Option(
        "--example-tokens", min=1, help="Dry run: mean tokens per example, when the mix cannot be tokenized here.")] \
        = None


DryRunFlag = Annotated[bool, typer.Option("--dry-run", help="Validate, build the model on the meta device and print "
                                          "the plan (parameters, FSDP/DDP, memory, steps, time); no training. Exit 1 "
                                          "when it does not fit --gpu.")]


def with_dry_run_options(command):
    """Give a command `--dry-run` and the `DryRunOptions`, defined once for every command that plans a run: the
    command's `dry_run` parameter receives a `DryRunOptions` when --dry-run is given, else None."""
    hints = typing.get_type_hints(DryRunOptions, include_extras=True)
    options = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name], default=f.default)
               for f in fields(DryRunOptions)]
    flag = inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, annotation=DryRunFlag, default=False)
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "dry_run"]

    @functools.wraps(command)
    def run_command(**kwargs):
        chosen = DryRunOptions(**{f.name: kwargs.pop(f.name) for f in fields(DryRunOptions)})
        wanted = kwargs.pop("dry_run")
        return command(**kwargs, dry_run=chosen if wanted else None)

    run_command.__signature__ = inspect.Signature([*own, flag, *options])
    return run_command


def print_dry_run(plan) -> None:
    """Print a dry run's plan; exit 1 with the reason when it does not fit the GPU."""
    console.print(plan.format(), highlight=False, markup=False, soft_wrap=True)
    if not plan.fits:
        err_console.print(f"[red]error:[/red] {plan.misfit_reason()}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


@app.command()
@with_dry_run_options
def train(
    recipe: Annotated[str, typer.Argument(help="Training recipe YAML, e.g. configs/train-lora-quick.yaml.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's latest checkpoint.")] = False,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe key, e.g. --set optimizer.lr=1e-4.")
    ] = None,
    dry_run: DryRunOptions | None = None,
):
    """Instruction-tune a model on a mix (LoRA or full); run under `accelerate launch` for several processes."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.train.loop import train as run_training
    from writetune.train.recipe import load_train_recipe

    if dry_run is not None:
        # loaded when the command runs, off the CLI's start-up path
        from writetune.train.dryrun import plan_run

        with user_errors():
            plan = plan_run(load_train_recipe(recipe, overrides or []), **asdict(dry_run))
        print_dry_run(plan)
        return
    with user_errors():
        result = run_training(load_train_recipe(recipe, overrides or []), resume=resume,
                              log=lambda message: err_console.print(message, highlight=False, markup=False))
    if int(os.environ.get("RANK", "0")) == 0:
        console.print(f"{result.steps} steps in {result.wall_s:.0f} s ({result.tokens_per_s:,.0f} tokens/s); "
                      f"model in {result.run_dir / 'model'}", highlight=False)


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Run directory, adapter or model directory.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (merged, adapter) or .gguf file (gguf).")],
    to: Annotated[str, typer.Option("--format", help="merged (safetensors), adapter (the LoRA adapter alone) or "
                                    "gguf.")] = "merged",
    dtype: Annotated[str | None, typer.Option(help="merged: float32|bfloat16|float16 (default float32); adapter: "
                                              "the same (default bfloat16); gguf: f32|f16|bf16 (default f16).")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output.")] = False,
):
    """Merge a LoRA adapter into its base and save it (safetensors + tokenizer + prompt format), save the adapter
    alone in a smaller dtype, or write GGUF and an Ollama Modelfile beside it."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.train.export import export_adapter, export_gguf, export_merged

    with user_errors():
        if to == "merged":
            path = export_merged(source, out, dtype=dtype or "float32", overwrite=force)
        elif to == "adapter":
            path = export_adapter(source, out, dtype=dtype or "bfloat16", overwrite=force)
        elif to == "gguf":
            path = export_gguf(source, out, dtype=dtype or "f16", overwrite=force)
        else:
            raise ValueError(f"unknown export format '{to}' (expected merged, adapter or gguf)")
    console.print(f"wrote {path}", highlight=False)
    if to == "gguf":
        console.print(f"wrote {path.with_name('Modelfile')} (for Ollama: ollama create NAME -f "
                      f"{path.with_name('Modelfile')})", highlight=False)


def _print_evaluation(results: dict | None, out: str, outputs: str) -> None:
    """The results table of a run or a grid, and where its report, plots and `outputs` lie. Nothing in a process
    other than the main one under accelerate launch, which has no results."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.pipeline import EVAL_DIR
    from writetune.report import markdown_table

    if results is None:
        return
    console.print(markdown_table(results, ci=True), highlight=False, markup=False, soft_wrap=True)
    eval_dir = os.path.join(out, EVAL_DIR)
    console.print(f"report: {eval_dir}/report.md  plots: {eval_dir}/plots/  {outputs}", highlight=False)


@app.command()
@with_dry_run_options
def run(
    recipe: Annotated[str, typer.Argument(help="Run recipe YAML, e.g. configs/quickstart.yaml.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (also the tuned model's spec).")],
    data_dir: Annotated[str | None, typer.Option(help="Corpora directory (else $WRITETUNE_DATA, else the recipe).")]
    = None,
    dry_run: DryRunOptions | None = None,
):
    """Build the mix, train, and evaluate base, copy and tuned rows from one recipe; re-running continues."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.pipeline import dry_run_pipeline, run_pipeline

    if dry_run is not None:
        with user_errors():
            plan = dry_run_pipeline(recipe, out, data_dir=data_dir, **asdict(dry_run))
        print_dry_run(plan)
        return
    with user_errors():
        result = run_pipeline(recipe, out, data_dir=data_dir,
                              log=lambda message: console.print(message, highlight=False, markup=False))
    for line in result.format_stages():
        console.print(line, highlight=False)
    _print_evaluation(result.results, out, f"model: {out}")


@app.command()
def experiment(
    grid: Annotated[str, typer.Argument(help="Grid YAML, e.g. configs/grids/mix-ablation.yaml.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (data/, runs/VARIANT/, eval/).")],
    data_dir: Annotated[str | None, typer.Option(help="Corpora directory (else $WRITETUNE_DATA, else the run "
                                                 "recipe's).")] = None,
    share: Annotated[str | None, typer.Option(help="Keep trainings and answers in this directory, keyed by what "
                                              "they depend on, and reuse any there: grids naming the same "
                                              "directory train each model and generate each answer once.")] = None,
):
    """Run a grid of variants that share their mixes and one evaluation; re-running continues."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.experiment import run_experiment

    with user_errors():
        result = run_experiment(grid, out, data_dir=data_dir, share=share,
                                log=lambda message: console.print(message, highlight=False, markup=False))
    for line in result.format_stages():
        console.print(line, highlight=False)
    _print_evaluation(result.results, out, f"runs: {out}/runs/")


@app.command()
def report(
    directories: Annotated[list[str], typer.Argument(help="Evaluation, run or grid directories (results.json or "
                                                     "eval/results.json), the first one's base row first.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where results.md and plots/ go.")],
):
    """Gather several runs' and grids' evaluations into one results page with intervals, significance against the
    base row, minimum detectable differences and costs."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.gather import write_results_page

    with user_errors():
        page = write_results_page(directories, out)
    console.print(f"wrote {page} and {os.path.join(out, 'plots')}/", highlight=False)


@app.command(name="eval")
def eval_command(
    model: Annotated[list[str], typer.Option("--model", "-m", help="A row: model spec, 'copy', 'few-shot:SPEC' or "
                                             "'openai:MODEL@URL'. Repeat for more rows.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output directory (results.json, report.md, ...).")],
    suite: Annotated[str, typer.Option(help="writing (test splits), writing-dev (dev carvings) or general (IFBench, "
                                       "held-out Alpaca); several comma-separated.")] = "writing-dev",
    data_dir: Annotated[str | None, typer.Option(help="Data directory laid out as the releases; else "
                                                 "$WRITETUNE_DATA.")] = None,
    decoding: Annotated[str, typer.Option(help="Comma-separated, one row each: greedy, beam4, sample.")] = "greedy",
    baseline: Annotated[str | None, typer.Option(help="Row that significance is tested against (default: the "
                                                 "first).")] = None,
    strict: Annotated[bool, typer.Option(help="Fail when a set's file is missing instead of skipping it.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N items per set.")] = None,
    bootstrap: Annotated[int, typer.Option(min=0, help="Bootstrap resamples (CIs and significance).")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences decoded together.")] = 64,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    backend: Annotated[str, typer.Option(help="auto (transformers), vllm, llamacpp or openai.")] = "auto",
    shots: Annotated[int, typer.Option(min=1, help="Examples in a few-shot:SPEC prompt.")] = 3,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Only this set (repeatable).")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    length_ratio: Annotated[float, typer.Option(min=0.01, help="An answer's budget: ratio x its input's tokens + "
                                                "--length-slack, at most --max-new-tokens.")] = DecodingConfig.length_ratio,
    length_slack: Annotated[int, typer.Option(min=0)] = DecodingConfig.length_slack,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch CPU threads (default: torch's choice).")] = None,
):
    """Evaluate systems on a suite: results.json, predictions/, report.md, results.csv and plots/ in --out."""
    # loaded when the command runs, off the CLI's start-up path
    from writetune.evaluate import EvalConfig, run_evaluation
    from writetune.report import markdown_table

    with user_errors():
        directory = data_dir or os.environ.get("WRITETUNE_DATA")
        if not directory:
            raise ValueError("no data directory: give --data-dir or set WRITETUNE_DATA")
        config = EvalConfig(models=model, data_dir=directory, out=out, suite=suite, decodings=decoding.split(","),
                            baseline=baseline, strict=strict, limit=limit, bootstrap=bootstrap, batch_size=batch_size,
                            dtype=dtype, backend=backend, shots=shots, sets=sets, max_new_tokens=max_new_tokens,
                            length_ratio=length_ratio, length_slack=length_slack, threads=threads)
        document = run_evaluation(config, log=lambda line: err_console.print(line, highlight=False, markup=False))
    console.print(markdown_table(document), highlight=False, markup=False, soft_wrap=True)
    for item in document["skipped"]:
        console.print(f"skipped {item['set']}: {item['reason']}", highlight=False, markup=False)
    console.print(f"wrote {out}/results.json, report.md, results.csv, plots/ and predictions/", highlight=False)


def main():
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' per-tensor loading bars are noise here
    app()


if __name__ == "__main__":
    main()
