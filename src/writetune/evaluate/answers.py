"""From items to requests and from answers to prediction records: the request a row sends for an item, the decoding
it uses on a set, whether an answer reached the set's token budget, and the record saved for each answer."""

from __future__ import annotations

from dataclasses import replace

from writetune.data.evalsets import EvalSet
from writetune.data.readers import Example
from writetune.evaluate.policy import TokenizationPolicy
from writetune.evaluate.systems import System
from writetune.generate import DecodingConfig, Generator, Request, token_budget
from writetune.prompt import token_ids

TRUNCATION_SLACK = 2  # re-encoding an answer's text may give a token or two fewer than were generated


def item_request(example: Example, source: str, instruction: str, shots: tuple = ()) -> Request:
    """The request for an item: the set's task instruction over the item's text, or, for an item of a non-writing
    set (`instruction` empty), the item's own instruction over its input (an IFBench prompt is the instruction)."""
    if instruction:
        return Request(instruction, source, shots)
    if example.instruction:
        return Request(example.instruction, source, shots)
    return Request(source, "", shots)


def set_decoding(system: System, evalset: EvalSet) -> DecodingConfig | None:
    """The system's decoding on a set: as configured, or with the set's fixed budget of new tokens for every
    answer (no budget proportional to the input) where the set has one."""
    if system.decoding is None or evalset.max_new_tokens is None:
        return system.decoding
    return replace(system.decoding, max_new_tokens=evalset.max_new_tokens, length_ratio=0.0,
                   length_slack=evalset.max_new_tokens)


def reached_budget(generator: Generator, request: Request, output: str, evalset: EvalSet,
                   decoding: DecodingConfig | None) -> bool | None:
    """Whether an answer of a set with a fixed budget reached it: its text re-encoded with the generator's
    tokenizer is within TRUNCATION_SLACK tokens of the budget. None where it is not measured (no budget, or a
    backend without a tokenizer here)."""
    tokenizer = getattr(generator, "tokenizer", None)
    if evalset.max_new_tokens is None or decoding is None or tokenizer is None:
        return None
    budget = token_budget(len(token_ids(tokenizer, request.input or request.instruction)), decoding)
    return len(token_ids(tokenizer, output)) >= budget - TRUNCATION_SLACK


def answer_record(example: Example, source: str, output: str, policy: TokenizationPolicy,
                  truncated: bool | None = None) -> dict:
    """The saved record of an answer: the item, what the model saw, what it said and how that is scored."""
    record = {"id": example.id, "source": source, "output": output, "references": list(example.references),
              "scored": policy.apply(output, example)}
    if truncated is not None:
        record["truncated"] = truncated
    return record
