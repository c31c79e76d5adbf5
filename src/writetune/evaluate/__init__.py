"""The suite runner: every system on every evaluation set of a suite, scored with each set's metrics.

For each system x set it loads the examples (`writetune.data.evalsets`; `sets`), generates answers (resumable:
predictions are written atomically per set and reused by item id when the system's settings are unchanged; `store`,
`answers`), puts the answers into the form the set's references have (the tokenisation policy: PTB re-tokenisation
for PTB-tokenized sets, raw text for raw sets, lower case where the references are lower-cased; `policy`), scores
them with every metric of the set (bootstrap confidence intervals) and tests each system against a baseline row
(paired bootstrap; `scoring`). The result is one JSON document (`results.json`, typed in `writetune.results`) from
which `writetune.report` draws tables and plots (`runner`).

Items of a non-writing task (the `general` suite) carry their own instruction and are answered within the set's fixed
token budget; each answer records whether it reached that budget (re-encoded with the model's tokenizer), which the
`empty_or_truncated` metric counts. `suite` may name several suites, comma-separated (`writing-dev,general`).

Systems are model specs (`writetune.generate.make_generator`), plus two baseline forms that need no training:
`copy` (the output is the source) and `few-shot:SPEC` (SPEC prompted with k solved examples from the training side
of the same task, never from evaluation items; `shots`). Options: `config`; rows: `systems`.
"""

from writetune.evaluate.config import EvalConfig, EvalConfigError
from writetune.evaluate.policy import TokenizationPolicy, tokenization_policy
from writetune.evaluate.runner import Evaluation, run_evaluation
from writetune.evaluate.scoring import metric_inputs, score_set
from writetune.evaluate.shots import few_shot_examples
from writetune.evaluate.systems import System, parse_systems, split_row_name
from writetune.results import RESULTS_FILE, load_results

__all__ = [
    "RESULTS_FILE", "EvalConfig", "EvalConfigError", "Evaluation", "System", "TokenizationPolicy",
    "few_shot_examples", "load_results", "metric_inputs", "parse_systems", "run_evaluation", "score_set",
    "split_row_name", "tokenization_policy",
]
