"""The task registry: built-in tasks, phrasings, alias lookup, and registering tasks from YAML files."""

from __future__ import annotations

import pytest

from writetune import tasks
from writetune.data.evalsets import suite
from writetune.tasks import TaskFileError, UnknownTaskError, all_tasks, get_task, register_task_file

WRITING = ("grammaticality", "fluency", "clarity", "coherence", "simplification", "neutralization", "paraphrase")


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the registry, so tests that register tasks leave the real one as it was."""
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    monkeypatch.setattr(tasks, "_ALIASES", dict(tasks._ALIASES))


def test_builtin_tasks_are_the_seven_writing_tasks_plus_generic():
    names = [task.name for task in all_tasks()]
    assert names[: len(WRITING) + 1] == [*WRITING, "generic"]
    assert [t.name for t in tasks.writing_tasks()][: len(WRITING)] == list(WRITING)
    assert not get_task("generic").writing


@pytest.mark.parametrize("name", [*WRITING, "generic"])
def test_each_task_has_at_least_eight_distinct_phrasings(name):
    task = get_task(name)
    phrasings = task.instructions
    assert len(phrasings) >= 8
    assert len({p.strip().lower() for p in phrasings}) == len(phrasings), "phrasings repeat"
    assert all(p == p.strip() and p for p in phrasings)
    assert task.instruction == phrasings[0]


@pytest.mark.parametrize("name", WRITING)
def test_writing_tasks_name_metrics_and_eval_sets(name):
    task = get_task(name)
    assert task.metrics and any(evalset.task == name for evalset in suite("writing"))


@pytest.mark.parametrize(
    "alias, name",
    [("grammar", "grammaticality"), ("GEC", "grammaticality"), ("simplify", "simplification"),
     (" Debias ", "neutralization"), ("rephrase", "paraphrase"), ("alpaca", "generic"), ("Fluency", "fluency")],
)  # fmt: skip
def test_alias_and_case_insensitive_lookup(alias, name):
    assert get_task(alias).name == name


def test_unknown_task_error_lists_the_known_tasks():
    with pytest.raises(UnknownTaskError) as err:
        get_task("summarization")
    assert isinstance(err.value, ValueError)
    assert "summarization" in str(err.value) and "grammaticality" in str(err.value)


def test_register_task_file(tmp_path, registry):
    path = tmp_path / "formality.yaml"
    path.write_text(
        "name: formality\n"
        "description: Make text formal.\n"
        "aliases: [Formal]\n"
        "metrics: [sari]\n"
        "instructions:\n  - '  Make this text formal:  '\n  - 'Rewrite this in a formal register:'\n",
        encoding="utf-8",
    )
    task = register_task_file(path)
    assert get_task("formal") is task
    assert task.instructions == ("Make this text formal:", "Rewrite this in a formal register:")
    assert task.metrics == ("sari",) and task.writing
    with pytest.raises(TaskFileError, match="already registered"):
        register_task_file(path)
    assert register_task_file(path, replace=True).name == "formality"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ndescription: d\n", "key 'instructions'"),
        ("name: x\ndescription: d\ninstructions: [a]\ncolour: red\n", "key 'colour'"),
        ("name: X y\ndescription: d\ninstructions: [a]\n", "key 'name'"),
        ("name: x\ndescription: d\ninstructions: ['  ']\n", "key 'instructions'"),
        ("name: x\ndescription: d\ninstructions: []\n", "key 'instructions'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("name: x\ndescription: [unclosed\n", "not valid YAML"),
        ("name: grammar_two\ndescription: d\ninstructions: [a]\naliases: [gec]\n", "already used by task 'grammaticality'"),
    ],
)
def test_bad_task_files_name_the_file_and_the_key(tmp_path, registry, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskFileError) as err:
        register_task_file(path)
    assert str(err.value).startswith(str(path))
    assert expected in str(err.value)


def test_yaml_syntax_error_reports_the_line(tmp_path, registry):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndescription: d\ninstructions:\n  - a\n  b: [\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match=rf"^{path}:\d+: not valid YAML"):
        register_task_file(path)


def test_missing_task_file(tmp_path, registry):
    with pytest.raises(TaskFileError, match="absent.yaml: task file not found"):
        register_task_file(tmp_path / "absent.yaml")
