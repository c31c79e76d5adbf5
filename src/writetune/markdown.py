"""Which parts of a Markdown document are prose, so that editing a document changes its prose and nothing else.

`prose_segments(text)` cuts a document into segments, each a paragraph, heading, list item or quote paragraph that
is edited as one text. Front matter, fenced and indented code blocks, HTML blocks, tables, link reference
definitions and rules are not in any segment. Inside a segment, inline code, URLs, link destinations, inline HTML
and footnote marks are `literal` (the model sees them, its changes to them are dropped), and the line breaks and
line markup of a wrapped paragraph (`> ` of a quote, a list item's indentation) are `layout` (the model sees a space
for each of their characters, and its changes to them are dropped too). Plain text without Markdown is one segment
per paragraph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r" {0,3}#{1,6}(?:[ \t]+|$)")
_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?")
_QUOTE = re.compile(r"(?: {0,3}>[ \t]?)+")
_RULE = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_SETEXT = re.compile(r" {0,3}(?:=+|-+)[ \t]*$")
_TABLE = re.compile(r"[ \t]*\|")
_REFERENCE = re.compile(r" {0,3}\[[^\]]+\]:[ \t]*\S")
_HTML_BLOCK = re.compile(r" {0,3}<(?:[A-Za-z][\w-]*|/[A-Za-z][\w-]*|!--|!|\?)")
_INDENTED = re.compile(r"(?: {4}|\t)")
_LITERAL = re.compile(
    r"(`+)(?:.+?)(?<!`)\1(?!`)"                      # inline code
    r"|<(?:https?|ftp|mailto):[^>\s]*>"              # autolinks
    r"|\]\([^)\s]*(?:[ \t]+\"[^\"]*\")?\)"           # a link's or image's destination, with its title
    r"|</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>"            # inline HTML tags
    r"|(?:https?://|www\.)[^\s<>()\[\]`]*[^\s<>()\[\]`.,;:!?'\"]"  # bare URLs, without trailing punctuation
    r"|\[\^[^\]]+\]",                                 # footnote marks
    re.S,
)


@dataclass(frozen=True)
class Segment:
    """`text[start:end]`, edited as one text; `literal` and `layout` are ranges inside it (document offsets)."""

    start: int
    end: int
    literal: tuple[tuple[int, int], ...] = ()
    layout: tuple[tuple[int, int], ...] = ()

    @property
    def protected(self) -> tuple[tuple[int, int], ...]:
        return tuple(sorted(self.literal + self.layout))

    def model_text(self, text: str) -> str:
        """What the model is given: the segment with each layout character read as a space."""
        chars = list(text[self.start:self.end])
        for a, b in self.layout:
            chars[a - self.start:b - self.start] = " " * (b - a)
        return "".join(chars)


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, without its line break (\\n, \\r\\n or \\r, as Markdown counts lines)."""
    return [(m.start(), m.start() + len(m.group().rstrip("\r\n")))
            for m in re.finditer(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)]


def _front_matter_end(text: str, lines: list[tuple[int, int]]) -> int:
    """How many lines of YAML (---) or TOML (+++) front matter the document starts with."""
    if not lines:
        return 0
    first = text[lines[0][0]:lines[0][1]].rstrip()
    if first not in ("---", "+++"):
        return 0
    closers = ("---", "...") if first == "---" else ("+++",)
    for k, (a, b) in enumerate(lines[1:], start=1):
        if text[a:b].rstrip() in closers:
            return k + 1
    return 0


def prose_segments(text: str) -> list[Segment]:
    """The prose segments of a Markdown document, in order."""
    lines = _lines(text)
    segments: list[Segment] = []
    open_segment: dict | None = None  # the paragraph being collected: start, end, layout, quoted, can_continue
    previous_blank, in_list = True, False

    def close() -> None:
        nonlocal open_segment
        if open_segment is not None:
            segments.append(_with_literals(text, open_segment["start"], open_segment["end"],
                                           tuple(open_segment["layout"])))
            open_segment = None

    k = _front_matter_end(text, lines)
    while k < len(lines):
        a, b = lines[k]
        line = text[a:b]
        fence = _FENCE.match(line)
        if fence:  # a fenced code block, up to its closing fence (or the end of the document)
            close()
            mark = fence.group(1)
            k += 1
            while k < len(lines):
                closing = re.match(r" {0,3}(" + re.escape(mark[0]) + r"{3,})[ \t]*$", text[lines[k][0]:lines[k][1]])
                k += 1
                if closing and len(closing.group(1)) >= len(mark):
                    break
            previous_blank = False
            continue
        if not line.strip():
            close()
            previous_blank, k = True, k + 1
            continue
        if _INDENTED.match(line) and previous_blank and not in_list and open_segment is None:
            k += 1  # an indented code block line
            continue
        if line.lstrip().startswith("<!--"):  # an HTML comment, to its end
            close()
            while k < len(lines) and "-->" not in text[lines[k][0]:lines[k][1]]:
                k += 1
            previous_blank, k = False, k + 1
            continue
        if (_RULE.match(line) or _TABLE.match(line) or _REFERENCE.match(line) or _HTML_BLOCK.match(line)
                or (open_segment is not None and _SETEXT.match(line))):
            close()
            previous_blank, k = False, k + 1
            continue
        quote = _QUOTE.match(line)
        prefix = quote.end() if quote else 0
        content = line[prefix:]
        heading = _HEADING.match(content)
        item = _ITEM.match(content)
        if heading or item:
            close()
            in_list = bool(item) or in_list and not heading
            skip = prefix + (heading or item).end()
            open_segment = {"start": a + skip, "end": b, "layout": [], "quoted": bool(quote),
                            "can_continue": not heading}
        elif (open_segment is not None and open_segment["can_continue"]
              and (bool(quote) == open_segment["quoted"] or not quote)):
            lead = prefix + len(content) - len(content.lstrip())
            last_end = open_segment["end"]
            open_segment["layout"].append((last_end, a + lead))
            open_segment["end"] = b
        else:
            close()
            if previous_blank:
                in_list = False
            lead = prefix + len(content) - len(content.lstrip())
            open_segment = {"start": a + lead, "end": b, "layout": [], "quoted": bool(quote), "can_continue": True}
        trimmed = len(text[open_segment["start"]:open_segment["end"]].rstrip())
        open_segment["end"] = open_segment["start"] + trimmed
        previous_blank, k = False, k + 1
    close()
    return [s for s in segments if _has_prose(text, s)]


def _with_literals(text: str, start: int, end: int, layout: tuple[tuple[int, int], ...]) -> Segment:
    literal = tuple((m.start() + start, m.end() + start) for m in _LITERAL.finditer(text[start:end]))
    return Segment(start, end, literal, layout)


def _has_prose(text: str, segment: Segment) -> bool:
    """Whether anything outside the protected ranges of a segment has a letter in it."""
    at = segment.start
    for a, b in segment.protected:
        if re.search(r"[^\W\d_]", text[at:a]):
            return True
        at = max(at, b)
    return bool(re.search(r"[^\W\d_]", text[at:segment.end]))
