"""Editing documents from the shell: Markdown prose segments (code, URLs, front matter, tables pass through), the
`writetune edit` command on strings, standard input and files with --diff (checked against `diff -u`), --json and
--in-place with a backup, all on the tiny random model, whose edits touch every sentence."""

import json
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from writetune.cli import app
from writetune.document_edit import DocumentEditor, unified_diff
from writetune.markdown import prose_segments
from writetune.serve.edits import apply_edits

runner = CliRunner()

FENCE = '```python\n# she go to school\nprint("he buyed apple")\n```\n'
FRONT = "---\ntitle: she go home\ntags: [a, b]\n---\n"
TABLE = "| col | she go |\n|-----|--------|\n| a   | b      |\n"
INDENTED = "    indented code she go\n"
REFERENCE = "[ref]: https://example.com/ref\n"
COMMENT = "<!-- a comment\nshe go -->\n"
DOCUMENT = (
    FRONT + "\n# Getting started with she go\n\n"
    "She go to school every day. Run `pip install she-go` and read https://example.com/she_go?x=1 now.\n"
    'This line wraps the paragraph and he buyed [the docs](https://example.com/docs "Docs") too.\n\n'
    + FENCE + "\n- First item she go.\n  continued item text.\n- [ ] second item\n\n"
    "> Quoted she go home.\n> more quote.\n\n" + TABLE + "\n" + INDENTED + "\n" + REFERENCE + COMMENT
    + "Last paragraph without a newline"
)
PASSED_THROUGH = [FRONT, FENCE, TABLE, INDENTED, REFERENCE, COMMENT, "`pip install she-go`",
                  "https://example.com/she_go?x=1", '](https://example.com/docs "Docs")', "# ", "- [ ] ", "> "]


def test_prose_segments_leave_out_code_front_matter_tables_and_markup():
    segments = prose_segments(DOCUMENT)
    texts = [s.model_text(DOCUMENT) for s in segments]
    assert texts[0] == "Getting started with she go"
    assert texts[1].startswith("She go to school") and texts[1].endswith("too.")
    assert "\n" not in texts[1] and len(texts[1]) == segments[1].end - segments[1].start  # a wrapped line: a space
    assert texts[2] == "First item she go.   continued item text." and texts[3] == "second item"
    assert texts[4] == "Quoted she go home.   more quote." and texts[-1] == "Last paragraph without a newline"
    assert len(segments) == 6
    for block in (FRONT, FENCE, TABLE, INDENTED, REFERENCE, COMMENT):
        a = DOCUMENT.index(block)
        assert all(s.end <= a or s.start >= a + len(block) for s in segments), block
    literal = {DOCUMENT[a:b] for s in segments for a, b in s.literal}
    assert literal == {"`pip install she-go`", "https://example.com/she_go?x=1", '](https://example.com/docs "Docs")'}
    assert prose_segments("One paragraph.\n\nAnd   another one.\n") != []
    assert [s.model_text("Plain text.\nWrapped.") for s in prose_segments("Plain text.\nWrapped.")] == [
        "Plain text. Wrapped."]


def test_document_editor_edits_prose_only_and_reports_progress(tiny_served):
    seen = []
    with DocumentEditor(tiny_served, max_new_tokens=6, errant_types=False, rewrite_check=False) as editor:
        result = editor.edit(DOCUMENT, on_progress=lambda done, total: seen.append((done, total)))
        plain = editor.edit("She go to school. He buyed apple.", markdown=False)
    assert seen[0] == (0, 6) and seen[-1] == (6, 6) and len(seen) == 7
    assert result["output"] != DOCUMENT and apply_edits(DOCUMENT, result["edits"]) == result["output"]
    for piece in PASSED_THROUGH:
        assert result["output"].count(piece) == DOCUMENT.count(piece), piece
    assert result["output"].startswith(FRONT) and result["sentences"] >= 6
    assert plain["object"] == "edit" and apply_edits("She go to school. He buyed apple.", plain["edits"]) == \
        plain["output"]


def test_unified_diff_matches_diff_u(tmp_path):
    if shutil.which("diff") is None:
        pytest.skip("diff is not installed")
    before, after = "a\nb\nc\nno newline", "a\nB\nc\nno newline at the end"
    (tmp_path / "x").write_text(before)
    (tmp_path / "y").write_text(after)
    expected = subprocess.run(["diff", "-u", "--label", "x", "--label", "x", str(tmp_path / "x"), str(tmp_path / "y")],
                              capture_output=True, text=True).stdout
    ours = unified_diff(before, after, "x")
    assert re.sub(r"^(---|\+\+\+) x.*$", r"\1 x", ours, flags=re.M) == expected
    assert unified_diff(before, before, "x") == ""


def test_edit_command_diff_json_and_in_place_on_a_markdown_file(tiny_model_dir, tmp_path):
    path = tmp_path / "README.md"
    path.write_text(DOCUMENT, encoding="utf-8")
    path.chmod(0o644)
    common = ["--model", str(tiny_model_dir), "--max-new-tokens", "6", "--no-rewrite-check"]
    shown = runner.invoke(app, ["edit", "--diff", str(path), *common])
    assert shown.exit_code == 0, shown.output
    assert path.read_text(encoding="utf-8") == DOCUMENT  # --diff changes nothing
    removed = [line[1:] for line in shown.stdout.splitlines() if line.startswith("-") and not line.startswith("---")]
    assert removed and not any(line in FENCE + FRONT + TABLE for line in removed)

    as_json = runner.invoke(app, ["edit", "--json", str(path), *common])
    result = json.loads(as_json.stdout)
    assert result["path"] == str(path) and apply_edits(DOCUMENT, result["edits"]) == result["output"]

    rewritten = runner.invoke(app, ["edit", "--in-place", str(path), *common])
    assert rewritten.exit_code == 0, rewritten.output
    edited = path.read_text(encoding="utf-8")
    assert edited == result["output"] and (tmp_path / "README.md.bak").read_text(encoding="utf-8") == DOCUMENT
    assert path.stat().st_mode & 0o777 == 0o644
    for block in (FRONT, FENCE, TABLE, INDENTED, REFERENCE, COMMENT):
        assert block in edited, block
    if shutil.which("diff"):
        real = subprocess.run(["diff", "-u", str(tmp_path / "README.md.bak"), str(path)], capture_output=True,
                              text=True).stdout
        assert real.splitlines()[2:] == shown.stdout.splitlines()[2:]  # the same hunks as diff -u


def test_edit_command_on_a_string_and_standard_input(tiny_model_dir):
    common = ["--model", str(tiny_model_dir), "--max-new-tokens", "6", "--no-rewrite-check"]
    direct = runner.invoke(app, ["edit", "She go to school.", "--json", *common])
    assert direct.exit_code == 0, direct.output
    answer = json.loads(direct.stdout)
    assert set(answer) == {"object", "model", "task", "output", "edits", "edit_types", "sentences", "stages"}
    assert direct.stdout.count("\n") == 1
    piped = runner.invoke(app, ["edit", "-", *common], input="She go to school.\n")
    assert piped.exit_code == 0 and piped.stdout == answer["output"] + "\n"  # the line break passes through
    shown = runner.invoke(app, ["edit", "Some text.", *common])
    assert shown.exit_code == 0 and shown.stdout.endswith("\n")


@pytest.mark.parametrize("args, message", [
    (["edit", "missing-file.md"], "missing-file.md: no such file"),
    (["edit", "Some text.", "--in-place"], "--in-place rewrites files"),
    (["edit", "Some text.", "--diff", "--json"], "do not go together"),
])
def test_edit_command_refuses_bad_combinations(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
