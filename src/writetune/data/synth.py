"""Synthetic grammar-correction pairs: a seeded grammatical-error injector that corrupts clean sentences.

Where real learner data is thin (no W&I, FCE, Lang-8 or NUCLE here), clean sentences from other corpora become
(corrupted, clean) training pairs. Seven error types are injected at word level: article, preposition, agreement,
tense, spelling, word order and punctuation. The number of errors in a sentence is drawn as one Bernoulli trial per
word with probability `rate` (so `rate` is the expected number of errors per word), optionally raised to
`min_errors`. An edit that would give back an earlier state of the sentence (a comma inserted where one was just
removed) is undone and another type is tried, so a reported error is always a change. Every sentence gets its own
random stream derived from the seed and the sentence's key, so the output
for a sentence does not depend on which other sentences are corrupted or in which order.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

ERROR_TYPES = ("article", "preposition", "agreement", "tense", "spelling", "word_order", "punctuation")

_ARTICLES = ("a", "an", "the")
_PREPOSITIONS = (
    "in", "on", "at", "for", "to", "of", "with", "by", "from", "about", "into", "over", "under", "between",
    "through", "during", "after", "before", "since", "towards", "among",
)  # fmt: skip
_AGREEMENT = {
    "is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has", "does": "do",
    "do": "does", "doesn't": "don't", "don't": "doesn't", "this": "these", "these": "this", "that": "those",
    "those": "that", "isn't": "aren't", "aren't": "isn't", "wasn't": "weren't", "weren't": "wasn't",
    "much": "many", "many": "much", "fewer": "less", "less": "fewer",
}  # fmt: skip
_TENSE = {
    "is": "was", "are": "were", "was": "is", "were": "are", "has": "had", "have": "had", "had": "has",
    "will": "would", "would": "will", "can": "could", "could": "can", "do": "did", "does": "did", "did": "does",
    "go": "went", "went": "goes", "make": "made", "made": "makes", "take": "took", "took": "takes", "get": "got",
    "got": "gets", "see": "saw", "saw": "sees", "become": "became", "became": "becomes", "give": "gave",
    "gave": "gives", "come": "came", "came": "comes", "find": "found", "found": "finds", "know": "knew",
    "knew": "knows", "begin": "began", "began": "begins", "write": "wrote", "wrote": "writes",
}  # fmt: skip
_SINGULAR_DETERMINERS = {"a", "an", "this", "that", "each", "every", "another", "one"}
_PUNCT = {",", ".", ";", ":", "!", "?"}
_NOT_PLURAL_S = re.compile(r"(?:ss|us|is|ous|ics|'s)$")

_TOKEN_RE = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


@dataclass
class _Token:
    text: str
    space_before: bool

    @property
    def is_word(self) -> bool:
        return self.text[:1].isalnum()


def _tokens(sentence: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN_RE.finditer(sentence):
        start = match.start()
        tokens.append(_Token(match.group(0), start > 0 and sentence[start - 1].isspace()))
    return tokens


def _join(tokens: Sequence[_Token]) -> str:
    out = []
    for i, token in enumerate(tokens):
        if i and token.space_before:
            out.append(" ")
        out.append(token.text)
    return "".join(out)


def _match_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


@dataclass(frozen=True)
class Injection:
    """A corrupted sentence and the type of each error applied to it, in order."""

    text: str
    errors: tuple[str, ...]


class ErrorInjector:
    """Corrupts clean sentences with grammatical errors.

    `rate`: the probability that a word carries an error (the expected errors per word). `types`: the error types
    to use (default all of `ERROR_TYPES`), each chosen with equal chance among those that apply to the sentence.
    `min_errors`: at least this many errors per sentence (raises the effective rate a little; 0 keeps it exact).
    """

    def __init__(
        self, rate: float = 0.1, *, seed: int = 0, types: Iterable[str] = ERROR_TYPES, min_errors: int = 0
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        types = tuple(types)
        unknown = [t for t in types if t not in ERROR_TYPES]
        if unknown or not types:
            raise ValueError(f"unknown error types {unknown} (known: {', '.join(ERROR_TYPES)})")
        if min_errors < 0:
            raise ValueError("min_errors must be >= 0")
        self.rate = rate
        self.seed = seed
        self.types = types
        self.min_errors = min_errors
        self._apply: dict[str, Callable[[list[_Token], random.Random], bool]] = {
            "article": self._article,
            "preposition": self._preposition,
            "agreement": self._agreement,
            "tense": self._tense,
            "spelling": self._spelling,
            "word_order": self._word_order,
            "punctuation": self._punctuation,
        }

    def corrupt(self, sentence: str, *, key: str | None = None) -> Injection:
        """Corrupt one sentence. `key` (default: the sentence) seeds its random stream together with `seed`."""
        rng = random.Random(f"{self.seed}\x00{sentence if key is None else key}")
        tokens = _tokens(sentence)
        n_words = sum(token.is_word for token in tokens)
        wanted = sum(rng.random() < self.rate for _ in range(n_words))
        wanted = max(wanted, self.min_errors) if n_words else 0
        applied: list[str] = []
        seen = {_join(tokens)}
        for _ in range(wanted):
            for error_type in rng.sample(self.types, len(self.types)):
                before = [_Token(t.text, t.space_before) for t in tokens]
                if self._apply[error_type](tokens, rng):
                    text = _join(tokens)
                    if text not in seen:  # an edit that undoes an earlier one (or changes nothing) does not count
                        seen.add(text)
                        applied.append(error_type)
                        break
                    tokens[:] = before
        if not applied:
            return Injection(sentence, ())
        return Injection(_join(tokens), tuple(applied))

    # each operation changes `tokens` in place and returns whether it found somewhere to apply

    @staticmethod
    def _positions(tokens: list[_Token], test: Callable[[str], bool]) -> list[int]:
        return [i for i, token in enumerate(tokens) if test(token.text)]

    def _article(self, tokens: list[_Token], rng: random.Random) -> bool:
        found = self._positions(tokens, lambda t: t.lower() in _ARTICLES)
        if found and rng.random() < 0.7:
            i = rng.choice(found)
            old = tokens[i].text
            if rng.random() < 0.5 and len(tokens) > 1:  # drop the article
                following = tokens[i + 1] if i + 1 < len(tokens) else None
                del tokens[i]
                if following is not None and i == 0:
                    following.text = _match_case(following.text, old)
                    following.space_before = False
            else:  # swap it for another one
                choices = [a for a in _ARTICLES if a != old.lower()]
                tokens[i].text = _match_case(rng.choice(choices), old)
            return True
        words = [i for i, token in enumerate(tokens) if token.is_word and token.text.islower() and i > 0]
        if not words:
            return False
        i = rng.choice(words)
        tokens.insert(i, _Token(rng.choice(("a", "the")), True))
        tokens[i + 1].space_before = True
        return True

    def _preposition(self, tokens: list[_Token], rng: random.Random) -> bool:
        found = self._positions(tokens, lambda t: t.lower() in _PREPOSITIONS)
        if not found:
            return False
        i = rng.choice(found)
        old = tokens[i].text
        if rng.random() < 0.2 and i > 0:
            del tokens[i]
        else:
            tokens[i].text = _match_case(rng.choice([p for p in _PREPOSITIONS if p != old.lower()]), old)
        return True

    def _agreement(self, tokens: list[_Token], rng: random.Random) -> bool:
        mapped = self._positions(tokens, lambda t: t.lower() in _AGREEMENT)
        plural = self._positions(
            tokens, lambda t: len(t) > 3 and t.isalpha() and t.islower() and t.endswith("s") and not _NOT_PLURAL_S.search(t)
        )
        # a noun after a singular determiner: "a village" -> "a villages"
        after_singular = [
            i + 1
            for i in range(len(tokens) - 1)
            if tokens[i].text.lower() in _SINGULAR_DETERMINERS
            and tokens[i + 1].text.isalpha()
            and tokens[i + 1].text.islower()
            and not tokens[i + 1].text.endswith("s")
        ]
        if not mapped and not plural and not after_singular:
            return False
        i = rng.choice(mapped + plural + after_singular)
        old = tokens[i].text
        if old.lower() in _AGREEMENT:
            tokens[i].text = _match_case(_AGREEMENT[old.lower()], old)
        elif i in after_singular:
            tokens[i].text = old + "s"
        else:
            tokens[i].text = old[:-1]
        return True

    def _tense(self, tokens: list[_Token], rng: random.Random) -> bool:
        mapped = self._positions(tokens, lambda t: t.lower() in _TENSE)
        past = self._positions(tokens, lambda t: len(t) > 5 and t.isalpha() and t.islower() and t.endswith("ed"))
        if not mapped and not past:
            return False
        i = rng.choice(mapped + past)
        old = tokens[i].text
        if old.lower() in _TENSE:
            tokens[i].text = _match_case(_TENSE[old.lower()], old)
        else:
            tokens[i].text = old[:-2] if rng.random() < 0.5 else old[:-1] + "s"  # walked -> walk / walkes
        return True

    def _spelling(self, tokens: list[_Token], rng: random.Random) -> bool:
        found = self._positions(tokens, lambda t: len(t) >= 4 and t.isalpha())
        if not found:
            return False
        i = rng.choice(found)
        word = tokens[i].text
        for _ in range(10):
            j = rng.randrange(1, len(word) - 1)
            op = rng.randrange(4)
            if op == 0:
                new = word[:j] + word[j + 1] + word[j] + word[j + 2 :]  # swap two letters
            elif op == 1:
                new = word[:j] + word[j + 1 :]  # drop a letter
            elif op == 2:
                new = word[:j] + word[j] + word[j:]  # double a letter
            else:
                new = word[:j] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[j + 1 :]
            if new != word:
                tokens[i].text = new
                return True
        return False

    def _word_order(self, tokens: list[_Token], rng: random.Random) -> bool:
        pairs = [
            i
            for i in range(len(tokens) - 1)
            if tokens[i].is_word and tokens[i + 1].is_word and tokens[i].text.lower() != tokens[i + 1].text.lower()
        ]
        if not pairs:
            return False
        i = rng.choice(pairs)
        first, second = tokens[i], tokens[i + 1]
        a, b = first.text, second.text
        if i == 0 and a[:1].isupper() and not a.isupper() and b.islower():
            a, b = a[:1].lower() + a[1:], b[:1].upper() + b[1:]
        first.text, second.text = b, a
        return True

    def _punctuation(self, tokens: list[_Token], rng: random.Random) -> bool:
        found = self._positions(tokens, lambda t: t in _PUNCT)
        if found and rng.random() < 0.6:
            i = rng.choice(found)
            if rng.random() < 0.6:
                del tokens[i]
            else:
                tokens[i].text = rng.choice(sorted(_PUNCT - {tokens[i].text}))
            return True
        words = [i for i in range(len(tokens) - 1) if tokens[i].is_word and tokens[i + 1].is_word]
        if not words:
            return False
        i = rng.choice(words)
        tokens.insert(i + 1, _Token(",", False))
        return True
