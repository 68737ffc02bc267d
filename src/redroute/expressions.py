"""Routing expressions: the grammar of queue steps, parsed and checked here,
compiled to a small postfix form that the Lua scripts evaluate against an
agent's attributes when an agent or a queue is written.

    expr  := and ("OR" and)*
    and   := unary ("AND" unary)*
    unary := "NOT" unary | "(" expr ")" | name [op value]
    op    := "==" | "!=" | ">=" | ">" | "<=" | "<" | "IN"
    value := integer | true | false | "double-quoted string"
           | "[" value ("," value)* "]"          (IN only)
    name  := [A-Za-z_][A-Za-z0-9_.-]*

Compiled form (JSON, evaluated with a stack, see lua/includes/skills.lua):
    ["v", name]            a bare name: true, a number > 0, a non-empty string
    [op, name, value]      a comparison (op one of == != >= > <= <)
    ["IN", name, [values]]
    ["NOT"], ["AND"], ["OR"]
An empty expression compiles to [] and matches every member.

Every limit on an expression lives here (LIMITS); an expression past one is
a ValidationError naming the position, like any other malformed one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError
from .model import Step


@dataclass(frozen=True)
class Limits:
    chars: int = 1024  # characters in one expression
    depth: int = 16  # nesting of parentheses and NOT
    terms: int = 64  # names tested in one expression
    name_chars: int = 64
    string_chars: int = 256
    in_values: int = 64
    max_int: int = 10**15  # |integer| (exact in Lua's doubles)
    steps: int = 10


LIMITS = Limits()
OPS = ("==", "!=", ">=", ">", "<=", "<", "IN")
KEYWORDS = {"AND", "OR", "NOT", "IN", "true", "false"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_INT = re.compile(r"-?[0-9]+")
_WS = re.compile(r"[ \t\r\n]*")

Value = bool | int | str


@dataclass(frozen=True)
class Token:
    kind: str  # name, int, str, op, kw, punct, end
    text: str
    value: Any
    pos: int  # 1-based character position


class ExpressionError(ValidationError):
    def __init__(self, what: str, pos: int, message: str) -> None:
        super().__init__(f"{what}: {message} at position {pos}")
        self.position = pos


def _tokens(src: str, what: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(src)
    while True:
        i = _WS.match(src, i).end()
        if i >= n:
            out.append(Token("end", "", None, n + 1))
            return out
        c, pos = src[i], i + 1
        two = src[i:i + 2]
        if two in ("==", "!=", ">=", "<="):
            out.append(Token("op", two, two, pos))
            i += 2
        elif c in "<>":
            out.append(Token("op", c, c, pos))
            i += 1
        elif c in "()[],":
            out.append(Token("punct", c, c, pos))
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and src[j] != '"':
                if src[j] == "\\" and j + 1 < n and src[j + 1] in '"\\':
                    j += 1
                elif src[j] == "\\" or ord(src[j]) < 0x20:
                    raise ExpressionError(what, j + 1, "a string may not hold control characters "
                                          "or escapes other than \\\" and \\\\")
                buf.append(src[j])
                j += 1
            if j >= n:
                raise ExpressionError(what, pos, "unterminated string")
            text = "".join(buf)
            if len(text) > LIMITS.string_chars:
                raise ExpressionError(what, pos, f"a string is longer than {LIMITS.string_chars} characters")
            out.append(Token("str", src[i:j + 1], text, pos))
            i = j + 1
        elif c == "-" or (c.isascii() and c.isdigit()):
            m = _INT.match(src, i)
            if m is None or (m.end() < n and (src[m.end()].isalnum() or src[m.end()] in "_.")):
                raise ExpressionError(what, pos, "malformed integer")
            v = int(m.group())
            if abs(v) > LIMITS.max_int:
                raise ExpressionError(what, pos, f"an integer beyond ±{LIMITS.max_int}")
            out.append(Token("int", m.group(), v, pos))
            i = m.end()
        elif c.isascii() and (c.isalpha() or c == "_"):
            m = _NAME.match(src, i)
            text = m.group()
            if text in KEYWORDS:
                out.append(Token("kw", text, text, pos))
            else:
                if len(text) > LIMITS.name_chars:
                    raise ExpressionError(what, pos, f"a name is longer than {LIMITS.name_chars} characters")
                out.append(Token("name", text, text, pos))
            i = m.end()
        else:
            raise ExpressionError(what, pos, f"unexpected character {c!r}")


class _Parser:
    def __init__(self, src: str, what: str) -> None:
        self.what = what
        self.toks = _tokens(src, what)
        self.i = 0
        self.out: list[list[Any]] = []
        self.names: list[str] = []

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, message: str, tok: Token | None = None) -> ExpressionError:
        t = tok or self.tok
        found = "the end" if t.kind == "end" else repr(t.text)
        return ExpressionError(self.what, t.pos, f"{message}, found {found}")

    def take(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "kw" and self.tok.text == word

    def expr(self, depth: int) -> None:
        self.and_(depth)
        while self.is_kw("OR"):
            self.take()
            self.and_(depth)
            self.out.append(["OR"])

    def and_(self, depth: int) -> None:
        self.unary(depth)
        while self.is_kw("AND"):
            self.take()
            self.unary(depth)
            self.out.append(["AND"])

    def unary(self, depth: int) -> None:
        if depth > LIMITS.depth:
            raise ExpressionError(self.what, self.tok.pos, f"nested deeper than {LIMITS.depth}")
        t = self.tok
        if self.is_kw("NOT"):
            self.take()
            self.unary(depth + 1)
            self.out.append(["NOT"])
        elif t.kind == "punct" and t.text == "(":
            self.take()
            self.expr(depth + 1)
            if not (self.tok.kind == "punct" and self.tok.text == ")"):
                raise self.fail("expected ')'")
            self.take()
        elif t.kind == "name":
            self.take()
            self.names.append(t.text)
            if len(self.names) > LIMITS.terms:
                raise ExpressionError(self.what, t.pos, f"more than {LIMITS.terms} terms")
            op = self.tok
            if op.kind == "op" or (op.kind == "kw" and op.text == "IN"):
                self.take()
                if op.text == "IN":
                    self.out.append(["IN", t.text, self.values()])
                else:
                    self.out.append([op.text, t.text, self.value()])
            else:
                self.out.append(["v", t.text])
        else:
            raise self.fail("expected an attribute name, NOT or '('")

    def value(self) -> Value:
        t = self.tok
        if t.kind in ("int", "str"):
            self.take()
            return t.value
        if t.kind == "kw" and t.text in ("true", "false"):
            self.take()
            return t.text == "true"
        if t.kind == "punct" and t.text == "[":
            raise self.fail("a list is only allowed after IN")
        raise self.fail("expected a value (an integer, true, false or a \"string\")")

    def values(self) -> list[Value]:
        if not (self.tok.kind == "punct" and self.tok.text == "["):
            raise self.fail("expected '[' after IN")
        self.take()
        vals = [self.value()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.take()
            vals.append(self.value())
            if len(vals) > LIMITS.in_values:
                raise ExpressionError(self.what, self.tok.pos, f"more than {LIMITS.in_values} values")
        if not (self.tok.kind == "punct" and self.tok.text == "]"):
            raise self.fail("expected ',' or ']'")
        self.take()
        return vals


@dataclass(frozen=True)
class Compiled:
    source: str
    code: list[list[Any]]  # postfix
    names: tuple[str, ...]  # attribute names tested, in order, once each


def compile_expression(src: Any, what: str = "expression") -> Compiled:
    """Parses and checks an expression; raises ExpressionError (a
    ValidationError) naming the position of the first fault."""
    if not isinstance(src, str):
        raise ValidationError(f"{what} must be a string")
    if len(src) > LIMITS.chars:
        raise ExpressionError(what, LIMITS.chars + 1, f"longer than {LIMITS.chars} characters")
    p = _Parser(src, what)
    if p.tok.kind != "end":
        p.expr(1)
        if p.tok.kind != "end":
            raise p.fail("expected AND, OR or the end")
    return Compiled(src, p.out, tuple(dict.fromkeys(p.names)))


def compile_steps(steps: Any, max_timeout_ms: int) -> tuple[list[Step], str, list[int], list[str]]:
    """A queue's steps checked and compiled: the steps, the compiled form
    as JSON (a list of postfix lists), the cumulative step offsets from the
    request's enqueueTime ([0, t1, t1+t2, …]) and the attribute names used."""
    if not isinstance(steps, list | tuple) or not 1 <= len(steps) <= LIMITS.steps:
        raise ValidationError(f"steps must be a list of 1 to {LIMITS.steps} steps")
    out: list[Step] = []
    code: list[list[list[Any]]] = []
    offsets, names = [0], []
    for i, s in enumerate(steps, 1):
        if isinstance(s, Step):
            expr, timeout = s.expression, s.timeout_ms
        elif isinstance(s, dict) and set(s) <= {"expression", "timeoutMs"}:
            expr, timeout = s.get("expression", ""), s.get("timeoutMs")
        else:
            raise ValidationError(f"steps[{i}] must be an object of expression and timeoutMs")
        c = compile_expression(expr, f"steps[{i}].expression")
        last = i == len(steps)
        if last and timeout is not None:
            raise ValidationError(f"steps[{i}].timeoutMs: the last step has no timeout")
        if not last:
            if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= max_timeout_ms:
                raise ValidationError(f"steps[{i}].timeoutMs must be an integer from 1 to {max_timeout_ms}")
            offsets.append(offsets[-1] + timeout)
        out.append(Step(c.source, timeout))
        code.append(c.code)
        names.extend(c.names)
    return out, json.dumps(code, separators=(",", ":"), ensure_ascii=False), offsets, list(dict.fromkeys(names))


# The same evaluation in Python (the reference model and the explanation's
# tests use it; the engine evaluates in Lua).


def _truthy(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v > 0
    if isinstance(v, str):
        return v != ""
    return False


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def _compare(op: str, attr: Any, value: Any) -> bool:
    if attr is None:
        return False
    if op == "==":
        return _same(attr, value)
    if op == "!=":
        return not _same(attr, value)
    num = lambda x: isinstance(x, int | float) and not isinstance(x, bool)  # noqa: E731
    if not (num(attr) and num(value)):
        return False
    return {">=": attr >= value, ">": attr > value, "<=": attr <= value, "<": attr < value}[op]


def evaluate(code: list[list[Any]], attrs: dict[str, Any]) -> bool:
    stack: list[bool] = []
    for ins in code:
        op = ins[0]
        if op == "v":
            stack.append(_truthy(attrs.get(ins[1])))
        elif op == "IN":
            a = attrs.get(ins[1])
            stack.append(a is not None and any(_same(a, x) for x in ins[2]))
        elif op == "NOT":
            stack.append(not stack.pop())
        elif op in ("AND", "OR"):
            b, a = stack.pop(), stack.pop()
            stack.append((a and b) if op == "AND" else (a or b))
        else:
            stack.append(_compare(op, attrs.get(ins[1]), ins[2]))
    return stack[0] if stack else True


def skill_score(names: list[str], attrs: dict[str, Any]) -> float:
    """The sum of an agent's numeric or boolean values (true = 1) of the
    attributes named in a queue's steps."""
    total: float = 0
    for n in names:
        v = attrs.get(n)
        if isinstance(v, bool):
            total += 1 if v else 0
        elif isinstance(v, int | float):
            total += v
    return total
