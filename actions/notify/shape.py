"""What a template's result looks like, and how a notifier turns it into its own format.

Templates give one text. Postee's ship several per output (`postee.vuls.slack` gives
Slack blocks, `postee.vuls.html` HTML, `postee.trivyoperator.jira` Jira wiki text); ours
give Markdown-ish text. `detect` tells the shape:

    blocks  a JSON list of Slack blocks (or a message with `blocks`; also upstream's
            comma-separated blocks without brackets)
    card    a JSON Adaptive Card (`"type": "AdaptiveCard"`)
    json    any other JSON (raw-message templates, CycloneDX SBOMs)
    html    text with HTML tags
    jira    Jira wiki markup (`h2. `, `{code}`, `||head||`)
    text    anything else: plain text or Markdown

and the converters bring any shape to what an output takes, so a mismatched template
still delivers something readable; `postee validate` warns about the mismatch.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from typing import Any

__all__ = [
    "ALL",
    "chunks",
    "detect",
    "html_to_text",
    "md_to_html",
    "md_to_jira",
    "md_to_mrkdwn",
    "parse_blocks",
    "parse_json",
    "to_text",
]

ALL = frozenset({"blocks", "card", "json", "html", "jira", "text"})

_HTML_TAG = re.compile(
    r"</?(html|body|head|p|div|span|table|thead|tbody|tr|td|th|h[1-6]|br|b|i|u|em|strong|"
    r"ul|ol|li|pre|code|a|img|hr|font|style)\b[^>]*>",
    re.IGNORECASE,
)
_JIRA = re.compile(r"^h[1-6]\. |\{code(:[^}]*)?\}|\{noformat\}|^\|\|.*\|\|\s*$", re.MULTILINE)
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_blocks(text: str) -> list[dict[str, Any]] | None:
    """Slack blocks given as a list, as a message object, or as upstream's templates give
    them: objects separated by commas, maybe with a trailing one, without brackets."""
    stripped = text.strip()
    value = parse_json(stripped)
    if value is None and stripped.startswith("{"):
        value = parse_json("[" + stripped.rstrip(",") + "]")
    if isinstance(value, dict) and isinstance(value.get("blocks"), list):
        value = value["blocks"]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in value)
    ):
        return value
    return None


def detect(text: str) -> str:
    if parse_blocks(text) is not None:
        return "blocks"
    value = parse_json(text)
    if isinstance(value, dict) and value.get("type") == "AdaptiveCard":
        return "card"
    if value is not None and not isinstance(value, str | int | float):
        return "json"
    if _HTML_TAG.search(text):
        return "html"
    if _JIRA.search(text):
        return "jira"
    return "text"


class _TextOf(HTMLParser):
    """HTML to Markdown-ish text: bold, italics, headings, list items, table rows and
    links survive; scripts and styles do not."""

    BREAKS = frozenset({"p", "div", "tr", "table", "ul", "ol", "pre", "h1", "h2", "h3", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in ("b", "strong"):
            self.parts.append("**")
        elif tag in ("i", "em"):
            self.parts.append("_")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | ")
        elif tag in ("h1", "h2", "h3", "h4"):
            self.parts.append("\n\n**")
        elif tag == "a":
            self._href = dict(attrs).get("href")
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("b", "strong"):
            self.parts.append("**")
        elif tag in ("i", "em"):
            self.parts.append("_")
        elif tag in ("h1", "h2", "h3", "h4"):
            self.parts.append("**\n")
        elif tag == "a" and self._href:
            self.parts.append(f" ({self._href})")
            self._href = None
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(markup: str) -> str:
    parser = _TextOf()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\*\*\s*\*\*", "", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _block_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts: list[str] = []
    for block in blocks:
        for part in [block.get("text"), *(block.get("fields") or [])]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
    return texts


def to_text(text: str) -> str:
    """Any shape as readable Markdown-ish text."""
    kind = detect(text)
    if kind == "blocks":
        return "\n\n".join(_block_texts(parse_blocks(text) or []))
    if kind == "card":
        body = (parse_json(text) or {}).get("body") or []
        texts = [str(b["text"]) for b in body if isinstance(b, dict) and b.get("text")]
        return "\n\n".join(texts)
    if kind == "json":
        return "```\n" + json.dumps(parse_json(text), indent=2, ensure_ascii=False) + "\n```"
    if kind == "html":
        return html_to_text(text)
    return text


def _escape_slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_to_mrkdwn(text: str) -> str:
    """Markdown-ish text as Slack mrkdwn: `*bold*`, `<url|text>` links, escaped & < >."""
    lines = []
    for line in _escape_slack(text).splitlines():
        heading = _HEADING.match(line)
        lines.append(f"*{heading.group(2)}*" if heading else line)
    out = _BOLD.sub(r"*\1*", "\n".join(lines))
    return _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", out)


def md_to_jira(text: str) -> str:
    """Markdown-ish text as Jira wiki markup."""
    lines, in_code = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            lines.append("{noformat}")
            in_code = not in_code
            continue
        if in_code:
            lines.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            line = f"h{len(heading.group(1))}. {heading.group(2)}"
        elif line.startswith("- "):
            line = "* " + line[2:]
        lines.append(_LINK.sub(r"[\1|\2]", _BOLD.sub(r"*\1*", line)))
    return "\n".join(lines)


def md_to_html(text: str, title: str | None = None) -> str:
    """Markdown-ish text as a small HTML document (escaped: event text is untrusted)."""
    out: list[str] = []
    in_list = in_code = False
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(raw))
            continue
        line = html.escape(raw)
        line = _BOLD.sub(r"<b>\1</b>", line)
        line = _LINK.sub(r'<a href="\2">\1</a>', line)
        if raw.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{line[2:]}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        heading = _HEADING.match(raw)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{html.escape(heading.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{line}</p>")
    if in_list:
        out.append("</ul>")
    if in_code:
        out.append("</pre>")
    head = f"<title>{html.escape(title)}</title>" if title else ""
    body = "\n".join(out)
    return f'<html><head><meta charset="utf-8">{head}</head><body>{body}</body></html>'


def chunks(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at line ends where possible."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            pieces.append(current)
            current = ""
        current += line
    if current.strip():
        pieces.append(current)
    return [p.rstrip("\n") for p in pieces if p.strip()]
