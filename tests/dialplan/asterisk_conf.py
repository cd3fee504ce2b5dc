"""Read Asterisk ``.conf`` files and run a dialplan extension, for the tests of ``dialplan/``.

pyst2 0.5.1's ``asterisk.config`` was tried first and does not fit: it cuts every line at its first
``;`` (so an escaped ``\\;`` breaks the line), knows no ``;-- --;`` block comments and rejects
``#include``. This reader follows Asterisk's ``main/config.c`` for what these files use.

The evaluator follows ``main/pbx_variables.c`` (``${VAR}``, ``${VAR:offset:length}``, ``${FUNC()}``,
``$[ ]``), ``main/ast_expr2.y`` (the ``$[ ]`` operators, ``:`` with POSIX extended regular
expressions anchored at the start) and the few applications the ivrpay dialplan uses. An
application it does not know is an error, so the dialplan cannot drift beyond what is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfError(ValueError):
    """The file is not valid Asterisk configuration (as far as this reader knows it)."""


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


@dataclass
class Category:
    name: str
    options: str
    line: int
    entries: list[Entry] = field(default_factory=list)

    def values(self, key: str) -> list[str]:
        return [e.value for e in self.entries if e.key == key]

    def get(self, key: str) -> str | None:
        found = self.values(key)
        return found[-1] if found else None


@dataclass
class ConfFile:
    categories: list[Category]
    directives: list[tuple[str, str, int]]

    def category(self, name: str) -> Category:
        for cat in self.categories:
            if cat.name == name:
                return cat
        raise KeyError(name)

    def names(self) -> list[str]:
        return [c.name for c in self.categories]


def _strip_comments(line: str, depth: int) -> tuple[str, int]:
    """One line without its comments; ``depth`` is the ``;--`` nesting carried between lines.

    As in config.c: ``\\;`` is a literal ``;``; ``;--`` (not ``;---``) opens a block comment and
    ``--;`` closes it; any other ``;`` outside a block ends the line's content.
    """
    kept: list[str] = []
    start: int | None = 0 if depth == 0 else None
    i = 0
    s = line
    while True:
        j = s.find(";", i)
        if j < 0:
            break
        if j > 0 and s[j - 1] == "\\":
            s = s[: j - 1] + s[j:]  # drop the backslash, keep the ";"
            i = j
            continue
        if s[j + 1 : j + 3] == "--" and s[j + 3 : j + 4] != "-":
            if depth == 0 and start is not None:
                kept.append(s[start:j])
            depth += 1
            start = None
            i = j + 3
            continue
        if depth > 0 and j >= i + 2 and s[j - 2 : j] == "--":
            depth -= 1
            i = j + 1
            if depth == 0:
                start = i
            continue
        if depth == 0:
            if start is not None:
                kept.append(s[start:j])
            return "".join(kept).strip(), depth
        i = j + 1
    if depth == 0 and start is not None:
        kept.append(s[start:])
    return "".join(kept).strip(), depth


_CATEGORY = re.compile(r"^\[([^\]]+)\](?:\((.*)\))?$")


def parse_conf(text: str) -> ConfFile:
    categories: list[Category] = []
    directives: list[tuple[str, str, int]] = []
    depth = 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line, depth = _strip_comments(raw, depth)
        if not line:
            continue
        if line.startswith("#"):
            word, _, arg = line[1:].partition(" ")
            if word not in ("include", "tryinclude", "exec"):
                raise ConfError(f"line {lineno}: unknown directive #{word}")
            directives.append((word, arg.strip().strip('"<>'), lineno))
            continue
        m = _CATEGORY.match(line)
        if m:
            categories.append(Category(m.group(1).strip(), m.group(2) or "", lineno))
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise ConfError(f"line {lineno}: not 'name = value': {line!r}")
        if not categories:
            raise ConfError(f"line {lineno}: an entry before any [category]")
        if value.startswith(">"):
            value = value[1:]
        categories[-1].entries.append(Entry(key.strip(), value.strip(), lineno))
    if depth:
        raise ConfError("a ';--' block comment is never closed")
    return ConfFile(categories, directives)


def load_conf(path: Path) -> ConfFile:
    return parse_conf(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# The dialplan


@dataclass(frozen=True)
class Step:
    priority: int
    label: str | None
    app: str
    data: str
    line: int


_PRIORITY = re.compile(r"^(\d+|n)(?:\((\w+)\))?$")
_APP = re.compile(r"^(\w+)(?:\((.*)\))?$", re.S)


def parse_app(text: str) -> tuple[str, str]:
    """``App(data)`` → (App, data): data runs from the first ``(`` to the last ``)``."""
    m = _APP.match(text.strip())
    if not m:
        raise ConfError(f"not an application call: {text!r}")
    return m.group(1), m.group(2) or ""


@dataclass
class Dialplan:
    contexts: dict[str, dict[str, list[Step]]]
    includes: dict[str, list[str]]

    def steps(self, context: str, exten: str) -> list[Step]:
        return self.contexts[context][exten]

    def all_steps(self) -> list[tuple[str, str, Step]]:
        return [
            (ctx, ext, step)
            for ctx, extens in self.contexts.items()
            for ext, steps in extens.items()
            for step in steps
        ]

    def find(self, context: str, number: str) -> str:
        """The extension (pattern) of ``context`` that ``number`` dials: exact names first."""
        extens = self.contexts[context]
        if number in extens:
            return number
        for name in extens:
            if name.startswith("_") and pattern_matches(name, number):
                return name
        raise LookupError(f"no extension {number} in [{context}]")


def load_dialplan(conf: ConfFile) -> Dialplan:
    contexts: dict[str, dict[str, list[Step]]] = {}
    includes: dict[str, list[str]] = {}
    for cat in conf.categories:
        if cat.name in ("general", "globals"):
            continue
        extens = contexts.setdefault(cat.name, {})
        current: str | None = None
        for entry in cat.entries:
            if entry.key == "include":
                includes.setdefault(cat.name, []).append(entry.value)
                continue
            if entry.key == "exten":
                name, pri, rest = _split3(entry)
                current = name.strip()
            elif entry.key == "same":
                if current is None:
                    raise ConfError(f"line {entry.line}: 'same' before any 'exten'")
                pri, _, rest = entry.value.partition(",")
            else:
                raise ConfError(f"line {entry.line}: unexpected {entry.key!r} in a context")
            steps = extens.setdefault(current, [])
            m = _PRIORITY.match(pri.strip())
            if not m:
                raise ConfError(f"line {entry.line}: bad priority {pri!r}")
            if m.group(1) == "n":
                if not steps:
                    raise ConfError(f"line {entry.line}: 'n' with no priority before it")
                number = steps[-1].priority + 1
            else:
                number = int(m.group(1))
            if steps and number <= steps[-1].priority:
                raise ConfError(f"line {entry.line}: priority {number} out of order")
            app, data = parse_app(rest)
            steps.append(Step(number, m.group(2), app, data, entry.line))
    return Dialplan(contexts, includes)


def _split3(entry: Entry) -> tuple[str, str, str]:
    parts = entry.value.split(",", 2)
    if len(parts) != 3:
        raise ConfError(f"line {entry.line}: 'exten => name,priority,App(...)' expected")
    return parts[0], parts[1], parts[2]


def pattern_matches(pattern: str, number: str) -> bool:
    """Asterisk extension patterns: ``_`` then X (0-9), Z (1-9), N (2-9), [..], ``.`` and ``!``."""
    out = []
    i = 1
    while i < len(pattern):
        c = pattern[i]
        if c in "Xx":
            out.append("[0-9]")
        elif c in "Zz":
            out.append("[1-9]")
        elif c in "Nn":
            out.append("[2-9]")
        elif c == ".":
            out.append(".+")
        elif c == "!":
            out.append(".*")
        elif c == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end] + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.fullmatch("".join(out), number) is not None


# --------------------------------------------------------------------------------------------
# Arguments, substitution, expressions


def split_args(data: str, *, standard: bool = True, limit: int = 0) -> list[str]:
    """Split application/function arguments at ``,`` outside quotes and brackets.

    ``standard`` is AST_STANDARD_APP_ARGS (quotes and backslashes removed); otherwise RAW.
    ``limit`` > 0 caps the number of arguments, the last one keeping the rest, like Asterisk.
    """
    args: list[str] = []
    cur: list[str] = []
    depth = 0
    quoted = False
    i = 0
    while i < len(data):
        c = data[i]
        if c == "\\" and standard and i + 1 < len(data):
            cur.append(data[i + 1])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
            if not standard:
                cur.append(c)
        elif quoted:
            cur.append(c)
        elif c in "([":
            depth += 1
            cur.append(c)
        elif c in ")]":
            depth = max(0, depth - 1)
            cur.append(c)
        elif c == "," and depth == 0 and (limit == 0 or len(args) < limit - 1):
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    args.append("".join(cur))
    return args


def substring(value: str, offset: int, length: int | None) -> str:
    """``${VAR:offset:length}``: a negative offset counts from the end; a negative length leaves
    that many characters off the end."""
    n = len(value)
    start = max(0, n + offset) if offset < 0 else min(offset, n)
    if length is None:
        return value[start:]
    if length < 0:
        end = n + length
        return value[start:end] if end > start else ""
    return value[start : start + length]


def condition(value: str) -> bool:
    """pbx_checkcondition: empty is false, a number is its truth, any other text is true."""
    value = value.strip()
    if not value:
        return False
    try:
        return float(value) != 0
    except ValueError:
        return True


def filter_chars(allowed: str, string: str) -> str:
    """FILTER(): the allowed set may hold ranges ``a-z``; a ``\\`` escapes the next character."""
    chars: set[str] = set()
    i = 0

    def one(k: int) -> tuple[str, int]:
        if allowed[k] == "\\" and k + 1 < len(allowed):
            return allowed[k + 1], 2
        return allowed[k], 1

    while i < len(allowed):
        c1, used = one(i)
        i += used
        if i < len(allowed) and allowed[i] == "-":
            if i + 1 < len(allowed):
                c2, used = one(i + 1)
            else:
                c2, used = c1, 0
            i += 1 + used
            chars.update(chr(x) for x in range(ord(c1), ord(c2) + 1))
        else:
            chars.add(c1)
    return "".join(c for c in string if c in chars)


_TOKEN = re.compile(r'\s*("[^"]*"|!=|=~|<=|>=|[=:&|<>()!]|[^\s"=:!&|<>()]+)')
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v


class _Expr:
    """``$[ ]`` for the operators this dialplan needs: | & = != < > <= >= : =~ ! ( )."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise ConfError(f"cannot read expression {text!r}")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.i = 0

    def value(self) -> str:
        result = self._or()
        if self.i != len(self.tokens):
            raise ConfError(f"unexpected {self.tokens[self.i]!r} in expression")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _or(self) -> str:
        left = self._and()
        while self._peek() == "|":
            self.i += 1
            right = self._and()
            left = left if condition(_unquote(left)) else right
        return left

    def _and(self) -> str:
        left = self._compare()
        while self._peek() == "&":
            self.i += 1
            right = self._compare()
            left = left if condition(_unquote(left)) and condition(_unquote(right)) else "0"
        return left

    def _compare(self) -> str:
        left = self._match()
        while self._peek() in ("=", "!=", "<", ">", "<=", ">="):
            op = self.tokens[self.i]
            self.i += 1
            right = self._match()
            a, b = _unquote(left), _unquote(right)
            if _NUMBER.match(a) and _NUMBER.match(b):
                x: float | str = float(a)
                y: float | str = float(b)
            else:
                x, y = a, b
            result = {
                "=": x == y,
                "!=": x != y,
                "<": x < y,  # type: ignore[operator]
                ">": x > y,  # type: ignore[operator]
                "<=": x <= y,  # type: ignore[operator]
                ">=": x >= y,  # type: ignore[operator]
            }[op]
            left = "1" if result else "0"
        return left

    def _match(self) -> str:
        left = self._unary()
        while self._peek() in (":", "=~"):
            op = self.tokens[self.i]
            self.i += 1
            right = self._unary()
            left = regex_match(_unquote(left), _unquote(right), anchored=op == ":")
        return left

    def _unary(self) -> str:
        tok = self._peek()
        if tok is None:
            raise ConfError("expression ends too early")
        self.i += 1
        if tok == "!":
            return "0" if condition(_unquote(self._unary())) else "1"
        if tok == "(":
            inner = self._or()
            if self._peek() != ")":
                raise ConfError("missing ) in expression")
            self.i += 1
            return inner
        return tok


def regex_match(string: str, pattern: str, *, anchored: bool) -> str:
    """ast_expr2's ``:`` (match must start at 0) and ``=~``: the first group's text when the
    pattern has groups, else the length matched; no match gives "" or 0."""
    rx = re.compile(pattern)
    m = rx.search(string)
    if m is None or (anchored and m.start() != 0):
        return "" if rx.groups else "0"
    if rx.groups:
        return m.group(1) or ""
    return str(m.end() - m.start())


# --------------------------------------------------------------------------------------------
# Running an extension


class _CallerGone(Exception):
    pass


@dataclass
class _Frame:
    back: tuple[str, str, int]
    saved: dict[str, str | None] = field(default_factory=dict)


AgiHandler = Callable[["Channel", list[str]], str]


class Channel:
    """One caller's channel running the dialplan.

    ``agi(channel, args)`` plays the FastAGI server: it may set variables and returns the
    AGISTATUS the application leaves (HANGUP: the caller hung up meanwhile). ``dial_results``
    maps a dial string to the DIALSTATUS its Dial gets (NOANSWER when absent).
    """

    def __init__(
        self,
        dialplan: Dialplan,
        *,
        variables: Mapping[str, str] | None = None,
        globals_: Mapping[str, str] | None = None,
        agi: AgiHandler | None = None,
        dial_results: Mapping[str, str] | None = None,
        bridge_results: Mapping[str, str] | None = None,
        spy_ends: str = "hangup",
        max_steps: int = 500,
    ) -> None:
        self.dialplan = dialplan
        self.vars: dict[str, str] = dict(variables or {})
        self.globals: dict[str, str] = dict(globals_ or {})
        self.agi = agi or (lambda channel, args: "SUCCESS")
        self.dial_results = dict(dial_results or {})
        # Bridge(channel): BRIDGERESULT per channel (NONEXISTENT when absent: it hung up).
        self.bridge_results = dict(bridge_results or {})
        # How a ChanSpy ends: "hangup" (the spied channel ended: E), "bridged" (another channel
        # bridged this one, which leaves the dialplan here), "gone" (this channel hung up).
        self.spy_ends = spy_ends
        self.bridges: list[str] = []
        self.spied: list[list[str]] = []
        self.max_steps = max_steps
        self.trace: list[tuple[str, str, str]] = []  # (context, application, substituted data)
        self.agi_calls: list[list[str]] = []
        self.dials: list[list[str]] = []
        self.frames: list[_Frame] = []
        self.hung_up = False
        self.context = ""
        self.exten = ""
        self.pattern = ""
        self.index = 0

    # variables ------------------------------------------------------------------------------
    def get(self, name: str) -> str:
        if name in self.vars:
            return self.vars[name]
        if name in ("EXTEN", "CONTEXT"):
            return self.exten if name == "EXTEN" else self.context
        return self.globals.get(name, "")

    def set(self, name: str, value: str) -> None:
        m = re.fullmatch(r"(\w+)\((.*)\)", name)
        if m and m.group(1) == "LOCAL":
            var = m.group(2)
            if not self.frames:
                raise ConfError("LOCAL() outside a Gosub")
            self.frames[-1].saved.setdefault(var, self.vars.get(var))
            self.vars[var] = value
        elif m and m.group(1) in ("CHANNEL", "CALLERID", "CDR"):
            self.vars[name] = value
        elif m:
            raise ConfError(f"writing unknown function {name}")
        else:
            self.vars[name] = value

    # substitution ---------------------------------------------------------------------------
    def substitute(self, text: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            if text.startswith("${", i) or text.startswith("$[", i):
                opening = text[i + 1]
                closing = "}" if opening == "{" else "]"
                j = i + 2
                depth = 1
                while j < len(text) and depth:
                    if text[j] == "$" and text[j + 1 : j + 2] == "[" and opening == "[":
                        depth += 1
                        j += 1
                    elif text[j] == opening:
                        depth += 1
                    elif text[j] == closing:
                        depth -= 1
                    j += 1
                if depth:
                    raise ConfError(f"unclosed ${opening} in {text!r}")
                inner = self.substitute(text[i + 2 : j - 1])
                out.append(self._variable(inner) if opening == "{" else _Expr(inner).value())
                i = j
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def _variable(self, inner: str) -> str:
        depth = 0
        cut = len(inner)
        for k, c in enumerate(inner):
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == ":" and depth == 0:
                cut = k
                break
        name, rest = inner[:cut], inner[cut + 1 :]
        if name.endswith(")"):
            value = self._function(name)
        else:
            value = self.get(name)
        if cut == len(inner):
            return value
        offset, _, length = rest.partition(":")
        return substring(value, int(offset or 0), int(length) if length else None)

    def _function(self, call: str) -> str:
        fname, _, args = call.partition("(")
        args = args[: args.rindex(")")]
        if fname == "IF":
            cond, _, branches = args.partition("?")
            yes, _, no = branches.partition(":")
            return yes if condition(cond) else no
        if fname == "FILTER":
            allowed, string = [*split_args(args, standard=False, limit=2), ""][:2]
            return filter_chars(allowed, string)
        if fname == "LEN":
            return str(len(args))
        if fname == "LOCAL":
            return self.get(args)
        if fname in ("CHANNEL", "CALLERID"):
            return self.vars.get(call, "")
        raise ConfError(f"function {fname}() is not known to this evaluator")

    # running ---------------------------------------------------------------------------------
    def run(self, context: str, exten: str) -> None:
        self.context, self.exten = context, exten
        self._goto_exten(context, exten, "1")
        try:
            for _ in range(self.max_steps):
                steps = self.dialplan.steps(self.context, self.pattern)
                if self.index >= len(steps):
                    return  # no more priorities: Asterisk hangs up
                step = steps[self.index]
                data = self.substitute(step.data)
                self.trace.append((self.context, step.app, data))
                self.index += 1
                handler = getattr(self, "_app_" + step.app.lower(), None)
                if handler is None:
                    raise ConfError(f"application {step.app} is not known to this evaluator")
                if handler(data) == "stop":
                    return
            raise ConfError("the dialplan did not end (a loop?)")
        except _CallerGone:
            self.hung_up = True
            self._run_h()

    def _run_h(self) -> None:
        if "h" not in self.dialplan.contexts.get(self.context, {}):
            return
        self.exten, self.pattern, self.index = "h", "h", 0
        for step in self.dialplan.steps(self.context, "h"):
            data = self.substitute(step.data)
            self.trace.append((self.context, step.app, data))
            if step.app not in ("NoOp", "Set", "Log", "Verbose"):
                raise ConfError(f"h extension runs {step.app}")

    def _goto_exten(self, context: str, exten: str, priority: str) -> None:
        pattern = self.dialplan.find(context, exten)
        steps = self.dialplan.steps(context, pattern)
        for k, step in enumerate(steps):
            if str(step.priority) == priority or step.label == priority:
                self.context, self.exten, self.pattern, self.index = context, exten, pattern, k
                return
        raise LookupError(f"no priority {priority} in [{context}] {exten}")

    def _goto(self, target: str) -> None:
        parts = [p.strip() for p in target.split(",")]
        if len(parts) == 1:
            self._goto_exten(self.context, self.exten, parts[0])
        elif len(parts) == 2:
            self._goto_exten(self.context, parts[0], parts[1])
        else:
            self._goto_exten(parts[0], parts[1], parts[2])

    # applications ----------------------------------------------------------------------------
    def _app_noop(self, data: str) -> None:
        return None

    def _app_log(self, data: str) -> None:
        return None

    def _app_set(self, data: str) -> None:
        name, eq, value = data.partition("=")
        if not eq:
            raise ConfError(f"Set({data}) without '='")
        self.set(name.strip(), value)

    def _app_stopmixmonitor(self, data: str) -> None:
        return None

    def _app_playback(self, data: str) -> None:
        return None

    def _app_hangup(self, data: str) -> str:
        return "stop"

    def _app_goto(self, data: str) -> None:
        self._goto(data)

    def _app_gotoif(self, data: str) -> None:
        cond, _, branches = data.partition("?")
        yes, _, no = branches.partition(":")
        branch = yes if condition(cond) else no
        if branch:
            self._goto(branch)

    def _app_gosub(self, data: str) -> None:
        label, _, rest = data.partition("(")
        args = split_args(rest[: rest.rindex(")")], standard=False) if rest else []
        frame = _Frame(back=(self.context, self.exten, self.index))
        self.frames.append(frame)
        for n, value in enumerate(args, 1):
            self.set(f"LOCAL(ARG{n})", value)
        self.set("LOCAL(ARGC)", str(len(args)))
        self._goto(label)

    def _app_return(self, data: str) -> None:
        frame = self.frames.pop()
        for name, old in frame.saved.items():
            if old is None:
                self.vars.pop(name, None)
            else:
                self.vars[name] = old
        context, exten, index = frame.back
        self.context, self.exten = context, exten
        self.pattern = self.dialplan.find(context, exten)
        self.index = index

    def _app_agi(self, data: str) -> None:
        args = split_args(data)
        self.agi_calls.append(args)
        status = self.agi(self, args)
        self.vars["AGISTATUS"] = status
        if status == "HANGUP":
            raise _CallerGone

    def _app_dial(self, data: str) -> None:
        args = split_args(data)
        self.dials.append(args)
        self.vars["DIALSTATUS"] = self.dial_results.get(args[0], "NOANSWER")
        if self.vars["DIALSTATUS"] == "CANCEL":
            raise _CallerGone

    def _app_bridge(self, data: str) -> None:
        args = split_args(data)
        self.bridges.append(args[0])
        # SUCCESS: the bridge happened and is over (the other side hung up): go on.
        self.vars["BRIDGERESULT"] = self.bridge_results.get(args[0], "NONEXISTENT")

    def _app_chanspy(self, data: str) -> str | None:
        self.spied.append(split_args(data))
        if self.spy_ends == "gone":
            raise _CallerGone
        if self.spy_ends == "bridged":
            return "stop"  # the channel left for the bridge; its dialplan does not go on here
        return None

    # what happened ---------------------------------------------------------------------------
    def apps(self) -> list[str]:
        return [app for _, app, _ in self.trace]

    def dialed(self) -> list[str]:
        return [args[0] for args in self.dials]
