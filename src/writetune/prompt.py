"""The one renderer from (instruction, input[, response]) to model text, shared by training, evaluation and serving.

A `PromptFormat` is plain data (strings), saved beside every trained model as `prompt_format.json`, so the text a
model was tuned on is exactly the text it is served with. Training gets the prompt and the response as separate
strings, which is what lets it mask the loss by construction instead of searching for a template marker.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from writetune.atomic import write_text_atomic

PROMPT_FORMAT_FILE = "prompt_format.json"
DEFAULT_SYSTEM = "You are a helpful writing assistant."


@dataclass(frozen=True)
class PromptFormat:
    """How a conversation turn is laid out for one model family.

    `system_template` and `user_template` are `str.format` templates with the fields `{system}` and `{message}`;
    `user_template` ends where the model's answer begins. `end_of_turn` is appended to every training response and is
    where generation stops.
    """

    name: str
    user_template: str
    end_of_turn: str
    system_template: str = ""
    system: str = ""
    stop_strings: tuple[str, ...] = field(default_factory=tuple)

    def message(self, instruction: str, input_text: str = "") -> str:
        """The user's message: the instruction, then the text it applies to (if any) after a blank line."""
        instruction = instruction.strip()
        input_text = input_text.strip()
        return f"{instruction}\n\n{input_text}" if input_text else instruction

    def render_prompt(self, instruction: str, input_text: str = "") -> str:
        """Everything the model sees before its answer."""
        head = self.system_template.format(system=self.system) if self.system and self.system_template else ""
        return head + self.user_template.format(message=self.message(instruction, input_text))

    def render_response(self, response: str) -> str:
        """The answer as the model is trained to produce it, closed by the end-of-turn marker."""
        return response.strip() + self.end_of_turn

    def strip_response(self, generated: str) -> str:
        """Cut generated text at the first end-of-turn or stop string and trim whitespace."""
        cut = len(generated)
        for marker in (self.end_of_turn, *self.stop_strings):
            if marker:
                pos = generated.find(marker)
                if pos != -1:
                    cut = min(cut, pos)
        return generated[:cut].strip()

    def to_json(self) -> str:
        data = asdict(self)
        data["stop_strings"] = list(self.stop_strings)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "PromptFormat":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown prompt format keys: {sorted(unknown)}")
        data = dict(data)
        data["stop_strings"] = tuple(data.get("stop_strings", ()))
        return cls(**data)


def chatml(system: str = DEFAULT_SYSTEM) -> PromptFormat:
    """ChatML, the format of SmolLM2, Qwen and many others."""
    return PromptFormat(
        name="chatml",
        system=system,
        system_template="<|im_start|>system\n{system}<|im_end|>\n",
        user_template="<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n",
        end_of_turn="<|im_end|>",
    )


def llama3(system: str = DEFAULT_SYSTEM) -> PromptFormat:
    """The Llama 3 instruct header format."""
    return PromptFormat(
        name="llama3",
        system=system,
        system_template="<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>",
        user_template="<|start_header_id|>user<|end_header_id|>\n\n{message}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        end_of_turn="<|eot_id|>",
    )


def alpaca(end_of_turn: str) -> PromptFormat:
    """The Alpaca layout for base models without a chat template; the turn ends with the model's EOS token."""
    return PromptFormat(
        name="alpaca",
        user_template="Below is an instruction that describes a task. Write a response that completes the request.\n\n"
        "### Instruction:\n{message}\n\n### Response:\n",
        end_of_turn=end_of_turn,
        stop_strings=("### Instruction:",),
    )


def format_for_tokenizer(tokenizer) -> PromptFormat:
    """Pick the format that matches a tokenizer's chat template (ChatML, Llama 3), else Alpaca with its EOS token."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(str(v) for v in template.values())
    if "<|im_start|>" in template:
        return chatml()
    if "<|start_header_id|>" in template:
        return llama3()
    eos = tokenizer.eos_token
    if not eos:
        raise ValueError("the tokenizer has neither a known chat template nor an EOS token to end a turn with")
    return alpaca(eos)


def save_prompt_format(fmt: PromptFormat, directory: str | os.PathLike) -> Path:
    """Write `prompt_format.json` into a model directory (atomically)."""
    return write_text_atomic(Path(directory) / PROMPT_FORMAT_FILE, fmt.to_json())


def load_prompt_format(directory: str | os.PathLike) -> PromptFormat | None:
    """Read `prompt_format.json` from a model directory, or None when it has none."""
    path = Path(directory) / PROMPT_FORMAT_FILE
    if not path.is_file():
        return None
    try:
        return PromptFormat.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a valid prompt format: {err}") from err


def token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of rendered text. The template already carries every special token, so the tokenizer adds none:
    training and generation both encode through here and see the same ids."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer, fmt: PromptFormat) -> list[int]:
    """Token ids that end a turn: the format's end-of-turn marker (when it is one token) and the EOS token."""
    ids = []
    marker = token_ids(tokenizer, fmt.end_of_turn) if fmt.end_of_turn else []
    if len(marker) == 1:
        ids.append(marker[0])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
