"""Rego forms that upstream (OPA) accepts and rego-cpp lacks, rewritten at compile time.

`rewrite` is applied to every module `rego.build` compiles (routes, input-files,
templates). Each rewrite keeps the meaning and the line numbers, so error locations
still point at the user's line. What is not rewritten fails `postee validate` with the
line and the advice (rules.py `_HINTS`).
"""

from __future__ import annotations

import re

__all__ = ["JSONFORMAT", "rewrite", "with_jsonformat"]

#: `jsonformat(x)`, a built-in Postee registers and rego-cpp lacks, as a Rego function that
#: `with_jsonformat` appends to a module calling it: Postee's Go `json.MarshalIndent(x, "",
#: " ")`: keys sorted, one-space indent, and `<`, `>`, `&` escaped as Go's encoder does
#: (OPA escapes them already, so the function gives the same text under both engines).
JSONFORMAT = (
    "__postee_jsonformat(x) := strings.replace_n("
    '{"<": `\\u003c`, ">": `\\u003e`, "&": `\\u0026`}, '
    'json.marshal_with_options(x, {"pretty": true, "indent": " "}))'
)
_JSONFORMAT = re.compile(r"(?<![\w.])jsonformat\s*\(")
_BRACKET_REF = re.compile(r'((?:[A-Za-z_]\w*)(?:\.[A-Za-z_]\w*|\["[^"\\\n]*"\])*)\[_\]')
_BODY_OPENER = re.compile(
    r"^\s*(?:\}\s*else\b.*|[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:\s+contains\s+\S+)?"
    r"(?:\s*(?::=|=)\s*\S+)?(?:\s+if)?)\s*\{\s*$"
)
_ONE_LINE = re.compile(r"^(\s*[A-Za-z_][\w.\[\]\" ]*?(?:\s+if\s*\{|\s*\{|\s+if)\s)(.*)$")


def rewrite(text: str) -> str:
    """Forms of upstream Rego that rego-cpp lacks, rewritten line by line (line numbers
    are kept, so error locations still point at the user's line):

    - `jsonformat(x)` (a Postee built-in) calls the module's own copy (`with_jsonformat`);
    - `sprintf("a %s b %d", [x, y])` with two or more arguments becomes
      `concat("", ["a ", sprintf("%s", [x]), " b ", sprintf("%d", [y])])`: rego-cpp's
      sprintf, given several arguments, prints computed strings with their quotes;
    - `sort(name)` becomes `[__psN | __psN := sort(name)[_]]`, the same array:
      rego-cpp's `array.concat` is undefined when given `sort` of a set directly;
    - in a comprehension, `some k, v in x` (x a reference), which rego-cpp cannot parse
      there ("Invalid collection"), becomes `v := x[k]` (k and v must not be bound
      outside the comprehension, as with `some`);
    - in a rule body, a `[_]` reference passed to a function, `contains(x, names[_])`,
      which rego-cpp refuses ("Invalid bracket argument"), is bound first:
      `__pb1 := names[_]; contains(x, __pb1)`. The same meaning: some element makes the
      call true. Not rewritten (and so reported by `postee validate` with this advice):
      such a reference under `not`, in a comprehension or in a rule head.
    """
    text = _wrap_sort(_split_sprintf(with_jsonformat(text)))
    text = "\n".join(_comprehension_some(line) for line in text.split("\n"))
    if "[_]" not in text:
        return text
    lines, blocks, counter = text.split("\n"), list[bool](), [0]
    for number, line in enumerate(lines):
        in_body = bool(blocks) and blocks[-1]
        one_line = _ONE_LINE.match(line) if not line.rstrip().endswith("{") else None
        if in_body or one_line:
            if one_line and not in_body:
                head, rest = one_line.group(1), one_line.group(2)
                hoisted = _hoist(rest, counter)
                if hoisted != rest and not head.rstrip().endswith("{"):
                    hoisted = "{ " + hoisted + " }"  # `if a; b` needs braces
                lines[number] = head + hoisted
            else:
                start = len(line) - len(line.lstrip())
                lines[number] = line[:start] + _hoist(line[start:], counter)
        if line.rstrip().endswith("{"):
            blocks.append(bool(_BODY_OPENER.match(line)))
        blocks = blocks[: max(0, len(blocks) - _closers(line))]
    return "\n".join(lines)


_SPRINTF = re.compile(r'(?<![\w.])sprintf\s*\(\s*"((?:[^"\\\n]|\\.)*)"\s*,\s*\[')
_VERB = re.compile(r"%%|%[-+# 0]*\d*(?:\.\d+)?[a-zA-Z]")


def _split_sprintf(text: str) -> str:
    out, last = [], 0
    for match in _SPRINTF.finditer(text):
        if match.start() < last:
            continue
        args, end = _array_items(text, match.end())
        close = re.compile(r"\s*\)").match(text, end) if end >= 0 else None
        verbs = [v for v in _VERB.finditer(match.group(1)) if v.group(0) != "%%"]
        if close is None or len(args) < 2 or len(verbs) != len(args):
            continue
        pieces, at = [], 0
        for verb, arg in zip(verbs, args, strict=True):
            if verb.start() > at:
                pieces.append(f'"{match.group(1)[at : verb.start()]}"')
            pieces.append(f'sprintf("{verb.group(0)}", [{arg}])')
            at = verb.end()
        if at < len(match.group(1)):
            pieces.append(f'"{match.group(1)[at:]}"')
        literal = [p.replace("%%", "%") if not p.startswith("sprintf") else p for p in pieces]
        joined = ", ".join(literal)
        lost = text.count("\n", match.start(), close.end()) - joined.count("\n")
        # Keep line numbers: the lost newlines go inside the brackets, where they are blanks.
        out.append(text[last : match.start()] + f'concat("", [{joined}{chr(10) * lost}])')
        last = close.end()
    return "".join(out) + text[last:]


_SOME_KV = re.compile(
    r"\bsome\s+([A-Za-z_]\w*)\s*,\s*([A-Za-z_]\w*)\s+in\s+"
    r'([A-Za-z_][\w.]*(?:\[(?:"[^"\n]*"|\w+)\])*)'
)


def _comprehension_some(line: str) -> str:
    bar = line.find("|")
    if bar < 0:
        return line
    return line[:bar] + _SOME_KV.sub(r"\2 := \3[\1]", line[bar:])


_SORT = re.compile(r"(?<![\w.])sort\(\s*([A-Za-z_][\w.]*)\s*\)")


def _wrap_sort(text: str) -> str:
    """`sort(name)` of a rule or variable (a set, typically) as a comprehension."""
    counter = iter(range(1, 1 << 30))

    def wrap(match: re.Match[str]) -> str:
        name = f"__ps{next(counter)}"
        return f"[{name} | {name} := {match.group(0)}[_]]"

    return _SORT.sub(wrap, text)


def _array_items(text: str, start: int) -> tuple[list[str], int]:
    """The top-level items of the array literal opened just before `start`, and the
    index after its `]` (-1 when it does not close)."""
    items, depth, quoted, begin, index = [], 0, False, start, start
    while index < len(text):
        char = text[index]
        if quoted:
            if char == "\\":
                index += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "([{":
            depth += 1
        elif char in ")}" or (char == "]" and depth > 0):
            depth -= 1
        elif char == "]":
            items.append(text[begin:index])
            return [i.strip() for i in items if i.strip()], index + 1
        elif char == "," and depth == 0:
            items.append(text[begin:index])
            begin = index + 1
        index += 1
    return [], -1


def with_jsonformat(text: str) -> str:
    """The module with `jsonformat(...)` calls pointed at JSONFORMAT, appended once."""
    renamed = _JSONFORMAT.sub("__postee_jsonformat(", text)
    return renamed if renamed == text else f"{renamed}\n{JSONFORMAT}\n"


def _closers(line: str) -> int:
    """Blocks a line closes beyond those it opens (a trailing `{` counted as pushed)."""
    opened = line.count("{") - (1 if line.rstrip().endswith("{") else 0)
    return max(0, line.count("}") - opened)


def _hoist(expression: str, counter: list[int]) -> str:
    stripped = expression.lstrip()
    if "|" in expression or stripped.startswith(("not ", "#", "default ", "some ", "every ")):
        return expression
    bound, out, last = [], [], 0
    for match in _BRACKET_REF.finditer(expression):
        if not _inside_call_only(expression[: match.start()]):
            continue
        counter[0] += 1
        name = f"__pb{counter[0]}"
        bound.append(f"{name} := {match.group(0)}; ")
        out.append(expression[last : match.start()] + name)
        last = match.end()
    if not bound:
        return expression
    return "".join(bound) + "".join(out) + expression[last:]


def _inside_call_only(prefix: str) -> bool:
    """Whether the position after `prefix` is inside parentheses and no literal."""
    stack: list[str] = []
    quoted = False
    previous = ""
    for char in prefix:
        if quoted:
            quoted = not (char == '"' and previous != "\\")
        elif char == '"':
            quoted = True
        elif char in "([{":
            stack.append(char)
        elif char in ")]}" and stack:
            stack.pop()
        previous = char
    return bool(stack) and all(opener == "(" for opener in stack)
