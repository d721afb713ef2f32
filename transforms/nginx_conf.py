"""Find a ``log_format`` in an nginx configuration, the way nginx reads it.

``read_log_format("/etc/nginx/nginx.conf", "main")`` returns ``(escape, body)``:
the pieces after the name (and after an optional ``escape=``) concatenated with
nothing in between, exactly as ngx_http_log_module does. The tokenizer follows
ngx_conf_read_token: ``#`` comments start only where a token could, quotes
only open at the start of a token, a backslash protects the next character and
``\\"`` ``\\'`` ``\\\\`` ``\\n`` ``\\r`` ``\\t`` are unescaped. ``include`` is
followed (relative to the main file's directory, globs allowed, each file once).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from schemas.errors import AccesslogError
from transforms.formats import COMBINED

# nginx's built-in format (ngx_http_log_module docs); it needs no log_format line.
NGINX_COMBINED = COMBINED
ESCAPES = ("default", "json", "none")

_SPACE = " \t\r\n"
_UNESCAPE = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class _Token:
    kind: str       # "word", ";", "{" or "}"
    text: str
    line: int


@dataclass(frozen=True)
class _Directive:
    args: tuple[str, ...]
    where: str      # "path:line"
    blocks: tuple[str, ...]   # enclosing block names, outermost first


def read_log_format(conf_path: str, name: str) -> tuple[str, str]:
    """``(escape, body)`` of ``log_format NAME`` in the nginx config at ``conf_path``.

    ``escape`` is ``default``, ``json`` or ``none``. ``combined`` falls back to nginx's
    built-in body when the config does not define it. Raises AccesslogError when the file
    cannot be read, the name is not defined, or the config does not tokenize.
    """
    root = os.path.dirname(os.path.abspath(conf_path))
    unreadable: list[str] = []
    defined: dict[str, _Directive] = {}
    try:
        with open(conf_path, "rb"):
            pass
    except OSError as exc:
        raise AccesslogError(f"cannot read nginx config {conf_path}: {exc.strerror}; "
                             "pass the path of a readable nginx.conf") from None
    for directive in _directives(os.path.abspath(conf_path), root, set(), (), unreadable):
        args = directive.args
        if args[0] == "log_format" and len(args) >= 2 and "stream" not in directive.blocks:
            defined.setdefault(args[1], directive)   # nginx refuses duplicates; the first is the one meant
    if name in defined:
        return _log_format(defined[name])
    if name == "combined":
        return "default", NGINX_COMBINED
    names = ", ".join(sorted(defined)) or "none"
    skipped = f"; could not read included {', '.join(unreadable)}" if unreadable else ""
    raise AccesslogError(f"log_format {name!r} is not defined in {conf_path} or its includes (defined: {names}; "
                         f"'combined' is built in){skipped}: pass one of those names")


def _log_format(directive: _Directive) -> tuple[str, str]:
    pieces = list(directive.args[2:])
    escape = "default"
    if pieces and pieces[0].startswith("escape="):
        escape = pieces.pop(0)[len("escape="):]
        if escape not in ESCAPES:
            raise AccesslogError(f"log_format {directive.args[1]!r} at {directive.where} has escape={escape}: "
                                 f"use escape={', escape='.join(ESCAPES)}")
    if not pieces:
        raise AccesslogError(f"log_format {directive.args[1]!r} at {directive.where} has no format string: "
                             "add the format after the name")
    return escape, "".join(pieces)


def _directives(path: str, root: str, seen: set[str], blocks: tuple[str, ...], unreadable: list[str]):
    """Yield the directives of the file at ``path`` in order, with includes expanded in place."""
    real = os.path.realpath(path)
    if real in seen:
        return        # already read: an include cycle or a file included twice
    seen.add(real)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError:
        unreadable.append(path)     # e.g. /etc/nginx/mime.types on a machine that is not the server
        return
    stack = list(blocks)
    args: list[str] = []
    line = 1
    for token in _tokenize(text, path):
        if token.kind == "word":
            if not args:
                line = token.line
            args.append(token.text)
            continue
        where = f"{path}:{token.line}"
        if token.kind == "}":
            if args:
                raise AccesslogError(f"directive {args[0]!r} at {path}:{line} has no ending ';' before the '}}' "
                                     f"at {where}: add it")
            if len(stack) == len(blocks):
                raise AccesslogError(f"unexpected '}}' at {where}: remove it or add the block it closes")
            stack.pop()
            continue
        if not args:
            raise AccesslogError(f"unexpected {token.kind!r} at {where}: remove it or add the directive it ends")
        directive = _Directive(tuple(args), f"{path}:{line}", tuple(stack))
        args = []
        if token.kind == "{":
            stack.append(directive.args[0])
        if directive.args[0] == "include" and token.kind == ";" and len(directive.args) == 2:
            for included in _expand(directive.args[1], root, unreadable):
                yield from _directives(included, root, seen, tuple(stack), unreadable)
        else:
            yield directive
    if args:
        raise AccesslogError(f"directive {args[0]!r} at {path}:{line} has no ending ';': add it")
    if len(stack) != len(blocks):
        raise AccesslogError(f"{path} ends inside the {stack[-1]!r} block: add the missing '}}'")


def _expand(pattern: str, root: str, unreadable: list[str]) -> list[str]:
    """An include argument -> the files it names (nginx: relative to the main config's directory)."""
    full = os.path.join(root, pattern)
    if any(ch in full for ch in "*?["):
        return sorted(glob.glob(full))    # glob(3) order; no match is fine for nginx too
    return [full]


def _tokenize(text: str, path: str):
    """nginx config text -> _Tokens (ngx_conf_read_token's rules)."""
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            line += ch == "\n"
            i += 1
        elif ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch in ";{}":
            yield _Token(ch, ch, line)
            i += 1
        elif ch in "\"'":
            start_line, j = line, i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise AccesslogError(f"unterminated {ch} quote starting at {path}:{start_line}: "
                                     f"close the string with {ch} (write \\{ch} for a literal {ch})")
            yield _Token("word", _unescape(text[i + 1:j]), start_line)
            line += text.count("\n", i, j)
            i = j + 1
            if i < n and text[i] not in _SPACE + ";{)":
                raise AccesslogError(f"unexpected {text[i]!r} after a quoted string at {path}:{line}: "
                                     "separate the arguments with a space")
        else:
            start, start_line, j = i, line, i
            while j < n:
                c = text[j]
                if c == "\\":
                    j += 2
                    continue
                if c in _SPACE or c == ";" or (c == "{" and text[j - 1] != "$"):
                    break
                j += 1
            j = min(j, n)
            yield _Token("word", _unescape(text[start:j]), start_line)
            line += text.count("\n", start, j)
            i = j


def _unescape(raw: str) -> str:
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and raw[i + 1:i + 2] in _UNESCAPE:
            out.append(_UNESCAPE[raw[i + 1]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)
