"""The prompt renderer: layout, response closing and stripping, format detection and persistence."""

import pytest

from writetune.prompt import (
    PromptFormat,
    alpaca,
    chatml,
    format_for_tokenizer,
    load_prompt_format,
    save_prompt_format,
    stop_token_ids,
    token_ids,
)


def test_chatml_prompt_layout():
    fmt = chatml(system="Be brief.")
    text = fmt.render_prompt("Fix the grammar:", "She go home.")
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nFix the grammar:\n\nShe go home.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_instruction_without_input_has_no_blank_block():
    assert chatml().message("Name three colours.", "") == "Name three colours."
    assert chatml().message("  Fix:  ", "  text ") == "Fix:\n\ntext"


def test_response_is_closed_and_stripped_back():
    fmt = chatml()
    closed = fmt.render_response(" She goes home. ")
    assert closed == "She goes home.<|im_end|>"
    assert fmt.strip_response(closed + "\n<|im_start|>user\nmore") == "She goes home."


def test_alpaca_stops_at_next_instruction():
    fmt = alpaca("</s>")
    assert fmt.strip_response("Answer.\n\n### Instruction:\nagain") == "Answer."
    assert fmt.render_prompt("Do it.").endswith("### Response:\n")


def test_format_detection_from_tokenizer_template():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    assert format_for_tokenizer(tokenizer).name == "chatml"
    tokenizer.chat_template = None
    fmt = format_for_tokenizer(tokenizer)
    assert fmt.name == "alpaca" and fmt.end_of_turn == tokenizer.eos_token


def test_stop_ids_and_encoding_add_no_special_tokens():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    fmt = chatml()
    assert stop_token_ids(tokenizer, fmt) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    ids = token_ids(tokenizer, fmt.render_prompt("Fix:", "x"))
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")  # from the template, not an added BOS
    assert ids.count(tokenizer.bos_token_id) == 3  # system, user, assistant headers


def test_save_and_load_round_trip(tmp_path):
    fmt = alpaca("</s>")
    save_prompt_format(fmt, tmp_path)
    assert load_prompt_format(tmp_path) == fmt
    assert load_prompt_format(tmp_path / "missing") is None


def test_invalid_prompt_format_file_names_the_file(tmp_path):
    (tmp_path / "prompt_format.json").write_text('{"name": "x", "bogus": 1}')
    with pytest.raises(ValueError, match="prompt_format.json"):
        load_prompt_format(tmp_path)
    assert PromptFormat.from_dict(chatml().__dict__ | {"stop_strings": []}) == chatml()
