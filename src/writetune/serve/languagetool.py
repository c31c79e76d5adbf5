"""LanguageTool's HTTP API on a writetune server: `POST /v2/check` and `GET /v2/languages`.

Editors and libraries that check grammar through LanguageTool (LibreOffice, LTeX for VS Code, Obsidian and browser
plugins, `language-tool-python`) can be pointed at any server URL; answering in LanguageTool's shape lets them use a
writetune model unchanged. A check runs the same edit service as `/v1/edit` (same sentence splitting, model calls
and ERRANT typing) and turns each edit into a LanguageTool match: its rule comes from the edit's ERRANT type
(`R:VERB:SVA` -> rule `WRITETUNE_R_VERB_SVA` in category GRAMMAR, `R:SPELL` -> a TYPOS rule), and its offsets are
counted as LanguageTool's Java clients count them, in UTF-16 code units. An edit that only inserts text becomes a
match over the word next to the insertion, since editors cannot show a match of length 0.

Requests are form-encoded (`application/x-www-form-urlencoded`, or the query string) with `text` or `data` (JSON
annotated markup: `{"annotation": [{"text": ...}, {"markup": ..., "interpretAs": ...}]}`), `language`,
`enabledRules`/`disabledRules`/`enabledCategories`/`disabledCategories`/`enabledOnly`, `level` and `apiKey`. The task
is the server's `languagetool_task` (grammar unless set); `level=picky` runs `all` (grammar, then clarity) instead.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request

from writetune import __version__
from writetune.serve.edit_service import ALL_TASKS, suggest_edits
from writetune.serve.edits import split_sentences
from writetune.serve.errors import ApiError
from writetune.serve.schemas import EditBody

router = APIRouter()

LANGUAGES = (("English", "en", "en"), ("English (US)", "en", "en-US"), ("English (GB)", "en", "en-GB"),
             ("English (Australian)", "en", "en-AU"), ("English (Canadian)", "en", "en-CA"),
             ("English (New Zealand)", "en", "en-NZ"), ("English (South African)", "en", "en-ZA"))
PICKY_TASK = "all"
CONTEXT_CHARS = 40  # characters of context on each side of a match, as LanguageTool sends

# ERRANT's part-of-speech and error codes, as words for rule descriptions.
_ERRANT_WORDS = {
    "ADJ": "adjective", "ADJ:FORM": "adjective form", "ADV": "adverb", "CONJ": "conjunction",
    "CONTR": "contraction", "DET": "determiner", "MORPH": "word form", "NOUN": "noun",
    "NOUN:INFL": "noun inflection", "NOUN:NUM": "noun number", "NOUN:POSS": "possessive", "ORTH": "capitalisation "
    "or spacing", "OTHER": "wording", "PART": "particle", "PREP": "preposition", "PRON": "pronoun",
    "PUNCT": "punctuation", "SPELL": "spelling", "VERB": "verb", "VERB:FORM": "verb form",
    "VERB:INFL": "verb inflection", "VERB:SVA": "subject-verb agreement", "VERB:TENSE": "verb tense",
    "WO": "word order", "UNK": "unknown",
}
# LanguageTool categories: id -> (name, issueType of its rules).
_CATEGORIES = {
    "GRAMMAR": ("Grammar", "grammar"), "TYPOS": ("Possible Typo", "misspelling"),
    "CASING": ("Capitalization", "typographical"), "PUNCTUATION": ("Punctuation", "typographical"),
    "TYPOGRAPHY": ("Typography", "whitespace"), "STYLE": ("Style", "style"), "MISC": ("Miscellaneous", "uncategorized"),
}
_ERRANT_CATEGORY = {"SPELL": "TYPOS", "ORTH": "CASING", "PUNCT": "PUNCTUATION", "OTHER": "MISC", "UNK": "MISC"}
_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")


def rule_for(edit_type: str, task: str) -> dict:
    """The LanguageTool rule of an edit: from its ERRANT type (`R:VERB:SVA`) when it has one, else from its
    word-level type (insert, delete, replace, whitespace) and the task that made it."""
    if ":" in edit_type:
        operation, _, code = edit_type.partition(":")
        what = _ERRANT_WORDS.get(code, code.lower().replace(":", " "))
        description = {"M": f"Missing {what}", "U": f"Unnecessary {what}"}.get(operation, f"{what} error")
        category = _ERRANT_CATEGORY.get(code, "GRAMMAR")
        rule_id = "WRITETUNE_" + edit_type.replace(":", "_")
    else:
        category = ("TYPOGRAPHY" if edit_type == "whitespace" else "GRAMMAR" if task == "grammaticality"
                    else "STYLE")
        description = f"{task.capitalize()}: {'spacing' if edit_type == 'whitespace' else edit_type}"
        rule_id = f"WRITETUNE_{task.upper()}_{edit_type.upper()}"
    name, issue_type = _CATEGORIES[category]
    return {"id": rule_id, "description": description[0].upper() + description[1:], "issueType": issue_type,
            "category": {"id": category, "name": name}}


def utf16_positions(text: str) -> list[int]:
    """`positions[i]` is where code point `i` of `text` starts in UTF-16 code units (Java string positions);
    `positions[len(text)]` is the UTF-16 length."""
    positions, count = [0], 0
    for char in text:
        count += 2 if ord(char) > 0xFFFF else 1
        positions.append(count)
    return positions


@dataclass(frozen=True)
class CheckedText:
    """The plain text a check edits and, for each of its code points (and its end), the position in the text the
    client sent (which, for annotated markup, is the markup's text and markup parts put together)."""

    plain: str
    origin: list[int]
    sent: str


def checked_text(text: str | None, data: str | None) -> CheckedText:
    """The text of a request's `text` or annotated-markup `data` field; markup is read as its `interpretAs`."""
    if text is not None:
        return CheckedText(text, list(range(len(text) + 1)), text)
    if data is None:
        raise ApiError(400, "missing 'text' or 'data' parameter", code="missing_text")
    try:
        parts = json.loads(data)["annotation"]
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise TypeError("'annotation' is not a list of objects")
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(400, f"'data' is not LanguageTool annotated markup ({err}): send "
                            '{"annotation": [{"text": ...}, {"markup": ...}]}', code="invalid_data") from None
    plain, origin, sent = [], [], []
    at = 0
    for k, part in enumerate(parts):
        if isinstance(part.get("text"), str):
            piece = part["text"]
            origin.extend(range(at, at + len(piece)))
            plain.append(piece)
        elif isinstance(part.get("markup"), str):
            piece = part["markup"]
            read_as = part.get("interpretAs", "")
            if not isinstance(read_as, str):
                raise ApiError(400, f"'data' annotation {k}: interpretAs must be a string", code="invalid_data")
            origin.extend([at] * len(read_as))
            plain.append(read_as)
        else:
            raise ApiError(400, f"'data' annotation {k} has neither a 'text' nor a 'markup' string",
                           code="invalid_data")
        sent.append(piece)
        at += len(piece)
    origin.append(at)
    return CheckedText("".join(plain), origin, "".join(sent))


@dataclass(frozen=True)
class _Span:
    """What one match replaces: `plain[start:end]` by `replacement`; `type` is the edit type its rule comes from."""

    start: int
    end: int
    replacement: str
    type: str


def _widen(text: str, at: int, replacement: str, lo: int, hi: int) -> tuple[int, int, str]:
    """An insertion at `at` as a replacement of the word right after it (else the word right before it), staying
    within [lo, hi) so that it overlaps no other edit; unchanged when there is no such word."""
    after = _WORD.match(text, at + 1 if text[at:at + 1].isspace() else at)
    if after and after.end() <= hi and not text[at:after.start()].strip():
        return at, after.end(), replacement + text[at:after.end()]
    before = None
    for before in _WORD.finditer(text, lo, at):
        pass
    if before is not None and before.end() >= at - 1 and not text[before.end():at].strip():
        return before.start(), at, text[before.start():at] + replacement
    return at, at, replacement


def _match_spans(text: str, edits: list[dict]) -> list[_Span]:
    """The edits (ordered, non-overlapping) as match spans of length above 0 where possible: an insertion that
    touches another edit joins it, any other insertion takes in the word beside it. The spans stay ordered and
    non-overlapping, so applying every match's replacement gives the edited text."""
    spans: list[_Span] = []
    carried = ""  # an insertion waiting to join the edit that starts where it is
    for k, edit in enumerate(edits):
        start, end, replacement = edit["start"], edit["end"], carried + edit["replacement"]
        carried = ""
        if start == end:
            following = edits[k + 1] if k + 1 < len(edits) else None
            if following is not None and following["start"] == start:
                carried = replacement
                continue
            if spans and spans[-1].end == start:
                last = spans.pop()
                spans.append(_Span(last.start, last.end, last.replacement + replacement, last.type))
                continue
            lo = spans[-1].end if spans else 0
            start, end, replacement = _widen(text, start, replacement, lo,
                                             following["start"] if following else len(text))
        spans.append(_Span(start, end, replacement, edit["type"]))
    return spans


def _quote(text: str) -> str:
    return f"“{text}”"


def _match(checked: CheckedText, span: _Span, task: str, sentences: list[tuple[int, int]],
           positions: list[int]) -> dict:
    plain, start, end, replacement = checked.plain, span.start, span.end, span.replacement
    original = plain[start:end]
    rule = rule_for(span.type, task)
    if not replacement.strip():
        message = f"{rule['description']}: remove {_quote(original)}?"
    else:
        message = f"{rule['description']}: did you mean {_quote(replacement)}?"
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(plain), end + CONTEXT_CHARS)
    context = plain[lo:hi].replace("\n", " ")
    prefix = "..." if lo > 0 else ""
    sentence = next((plain[s:e] for s, e in sentences if s <= start < e or s < end <= e), plain[start:end])
    at, to = checked.origin[start], checked.origin[end]
    return {
        "message": message,
        "shortMessage": rule["category"]["name"],
        "replacements": [{"value": replacement}],
        "offset": positions[at],
        "length": positions[to] - positions[at],
        "context": {"text": prefix + context + ("..." if hi < len(plain) else ""),
                    "offset": len(prefix) + len(plain[lo:start].encode("utf-16-le")) // 2,
                    "length": len(original.encode("utf-16-le")) // 2},
        "sentence": sentence,
        "type": {"typeName": "Other"},
        "rule": rule,
        "ignoreForIncompleteSentence": False,
        "contextForSureMatch": 0,
    }


def _listed(value: str | None) -> set[str]:
    return {item.strip() for item in (value or "").split(",") if item.strip()}


def _wanted(match: dict, fields: dict[str, str]) -> bool:
    """Whether a match passes the request's enabled/disabled rule and category lists."""
    rule, category = match["rule"]["id"], match["rule"]["category"]["id"]
    if rule in _listed(fields.get("disabledRules")) or category in _listed(fields.get("disabledCategories")):
        return False
    if fields.get("enabledOnly", "").lower() == "true":
        return rule in _listed(fields.get("enabledRules")) or category in _listed(fields.get("enabledCategories"))
    return True


async def _fields(request: Request) -> dict[str, str]:
    """The request's query parameters and, for a POST, its form-encoded body (which wins)."""
    fields = dict(request.query_params)
    if request.method == "POST":
        kind = request.headers.get("content-type", "application/x-www-form-urlencoded").split(";")[0].strip()
        if kind != "application/x-www-form-urlencoded":
            raise ApiError(415, f"a check is sent form-encoded (application/x-www-form-urlencoded), not {kind}",
                           code="unsupported_media_type")
        try:
            body = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the request body is not UTF-8", code="invalid_form") from None
        fields.update(parse_qsl(body, keep_blank_values=True))
    return fields


def _check_key(request: Request, fields: dict[str, str], key: str | None) -> None:
    if key is None:
        return
    given = fields.get("apiKey") or request.headers.get("x-api-key")
    bearer = request.headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        given = bearer[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), key.encode()):
        raise ApiError(401, "missing or wrong API key: send it as the 'apiKey' form field", code="invalid_api_key",
                       kind="authentication_error")


def _language(code: str | None) -> dict:
    code = (code or "auto").strip()
    if code == "auto":
        code = "en-US"
    for name, _, long in LANGUAGES:
        if code.lower() == long.lower():
            return {"name": name, "code": long}
    listed = ", ".join(long for _, _, long in LANGUAGES)
    raise ApiError(400, f"language '{code}' is not supported: this server checks {listed} (or auto)",
                   code="unsupported_language")


@router.get("/v2/languages")
async def languages():
    return [{"name": name, "code": short, "longCode": long} for name, short, long in LANGUAGES]


@router.api_route("/v2/check", methods=["GET", "POST"])
async def check(request: Request):
    server = request.app.state.server
    fields = await _fields(request)
    _check_key(request, fields, server.settings.api_key)
    language = _language(fields.get("language"))
    level = fields.get("level", "default").strip().lower()
    if level not in ("default", "picky"):
        raise ApiError(400, f"level '{level}' is not one of default, picky", code="invalid_level")
    checked = checked_text(fields.get("text"), fields.get("data"))
    matches = []
    if checked.plain.strip():
        task = PICKY_TASK if level == "picky" else server.settings.languagetool_task
        answer = await suggest_edits(server, EditBody(task=task, text=checked.plain))
        sentences = split_sentences(checked.plain)
        positions = utf16_positions(checked.sent)
        made_by = ALL_TASKS[-1] if answer["task"] == "all" else answer["task"]  # who made the untyped edits
        matches = [_match(checked, span, made_by, sentences, positions)
                   for span in _match_spans(checked.plain, answer["edits"])]
        matches = [m for m in matches if _wanted(m, fields)]
    return {
        "software": {"name": "writetune", "version": __version__, "buildDate": None, "apiVersion": 1,
                     "premium": False, "status": ""},
        "warnings": {"incompleteResults": False},
        "language": {**language, "detectedLanguage": {**language, "confidence": 1.0}},
        "matches": matches,
    }
