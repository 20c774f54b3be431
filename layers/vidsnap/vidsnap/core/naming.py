"""Output key templates, key safety checks, object URIs (README: Request languages; README: Configuration).

A key template names the objects (or, with the CLI, the files) that an asynchronous job writes,
one per captured frame. It is plain text with variables in braces, as in OSS ``sys/saveas``
(``o_``), IMM ``TargetURI`` templates and MPS ``OutputFile.Object``:

=================  ==========================================================================
variable           value
=================  ==========================================================================
``{index}``        the frame number, 1-based (``%d`` and ``%0Nd`` are aliases, ``%03d`` → 001)
``{Count}``        MPS: the frame number, 5-digit zero padded (``00001``)
``{TileCount}``    MPS: the sprite sheet number, 5-digit zero padded (``00001``)
``{autoext}``      the output format's extension without the dot (``jpg``, ``png``, ...)
``{streamindex}``  the video stream index; always ``0`` (vidsnap captures one stream)
``{bucket}``       the source bucket ('' for a local source)
``{key}``          the source key (``path1/path2/name.mp4``)
``{dirname}``      the source key's folder without a trailing slash (``path1/path2``; '' at root)
``{basename}``     the source file name (``name.mp4``)
``{barename}``     the source file name without its extension (``name``)
``{ext}``          the source extension without the dot (``mp4``; '' when there is none)
``{ObjectPrefix}`` MPS: the source folder *with* a trailing slash (``path1/path2/``; '' at root)
``{FileName}``     MPS: the source file name without its extension (``name``)
``{ExtName}``      MPS: the source extension *with* the dot (``.mp4``; '' when there is none)
=================  ==========================================================================

``{{`` and ``}}`` are literal braces. Variable names are case-sensitive (OSS/IMM names are
lower case, MPS names are CamelCase, as each service documents them).

Decisions of our own (keep in sync with the README):

- ``%d``/``%0Nd`` (N up to 2 digits) are the only ``%`` forms recognised; any other ``%`` is
  literal text (``100%.jpg`` is a valid key).
- ``{ExtName}`` carries the leading dot and ``{ObjectPrefix}`` the trailing slash, so the MPS idiom
  ``{ObjectPrefix}{FileName}_{Count}{ExtName}`` works at the bucket root as well.
- When a variable expands to '' (``{dirname}`` of a root object), a ``/`` that directly follows it
  at the start of the key or after another ``/`` is dropped: ``{dirname}/{barename}.jpg`` gives
  ``clip.jpg`` for ``clip.mp4``, not the absolute ``/clip.jpg``.
- A leading ``/`` of the *source* key (a local absolute path given to the CLI) is ignored for
  naming, so ``{dirname}`` is never an absolute path.
- "Has an extension" is decided on the template's own text, never on the source, so the answer is
  the same for every source: the last path segment of the template must contain a literal ``.``
  that is neither its first nor its last character (``out.jpg``, ``{barename}.{autoext}`` have one;
  ``out``, ``.hidden``, ``a.b/out``, ``{barename}``, ``{basename}`` and ``{FileName}{ExtName}``
  have none — a dot that only comes from a variable does not count). Without an extension and
  without an index variable, ``_{streamindex}_{index}.{autoext}`` is appended (``out`` →
  ``out_0_1.jpg``, ``{basename}`` → ``clip.mp4_0_1.jpg``). With an extension and no index variable
  every frame is written to the same key (the last one remains, as in OSS); :func:`frames_overwrite`
  tells the engine so it can warn.

Errors: a bad *template* (unknown variable, unbalanced braces, a literal part that is absolute or
traverses) is a :class:`~vidsnap.core.errors.BadRequest` naming the parameter it came from. A bad
*expanded key* found by :func:`check_key` (``..`` segments, absolute paths, backslash traversal,
control characters) is :class:`NotAllowed` (403, README: Configuration), while an empty or
over-long key is a :class:`~vidsnap.core.errors.BadRequest`.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from vidsnap.core.errors import BadRequest, NotAllowed
from vidsnap.core.plan import SourceRef

__all__ = [
    "INDEX_VARIABLES",
    "MAX_KEY_BYTES",
    "VARIABLES",
    "check_key",
    "frames_overwrite",
    "output_key",
    "split_s3_uri",
    "track_key",
    "validate_template",
]

#: S3 (and OSS) object keys are at most 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024

#: Every variable a template may use.
VARIABLES: frozenset[str] = frozenset(
    {
        "index",
        "autoext",
        "streamindex",
        "bucket",
        "key",
        "dirname",
        "basename",
        "barename",
        "ext",
        "Count",
        "TileCount",
        "ObjectPrefix",
        "FileName",
        "ExtName",
    }
)
#: The variables that number the frames (``%d``/``%0Nd`` count too).
INDEX_VARIABLES: frozenset[str] = frozenset({"index", "Count", "TileCount"})

# `%d` or `%0Nd`; the width is capped at two digits so a stray "%0999999d" cannot blow up a key.
_PERCENT = re.compile(r"%(?:0(\d{1,2}))?d")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


@dataclass(frozen=True)
class _Token:
    kind: Literal["lit", "var", "pct"]
    text: str  # literal text, or the variable name
    width: int = 0  # zero-padding width of a %0Nd token


def _snip(value: str, limit: int = 80) -> str:
    """A repr-safe, bounded rendering of a user value for error messages."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _tokenize(template: str, param: str) -> list[_Token]:
    """Split a template into literal text, variables and ``%d`` tokens (BadRequest when malformed)."""
    tokens: list[_Token] = []
    lit: list[str] = []
    i, n = 0, len(template)

    def flush() -> None:
        if lit:
            tokens.append(_Token("lit", "".join(lit)))
            lit.clear()

    while i < n:
        c = template[i]
        if c == "{":
            if template.startswith("{{", i):
                lit.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            # A "{" inside the name means the first "{" was never closed ("{a{b}").
            if end < 0 or "{" in template[i + 1 : end]:
                raise BadRequest(
                    f"{param}: unbalanced '{{' at position {i} in key template {_snip(template)}; "
                    "valid: {variable} or '{{' for a literal brace",
                    param=param,
                )
            name = template[i + 1 : end]
            if name not in VARIABLES:
                raise BadRequest(
                    f"{param}: unknown variable {_snip('{' + name + '}')} in key template "
                    f"{_snip(template)}; valid: {', '.join('{' + v + '}' for v in sorted(VARIABLES))}, "
                    "%d, %0Nd",
                    param=param,
                )
            flush()
            tokens.append(_Token("var", name))
            i = end + 1
        elif c == "}":
            if template.startswith("}}", i):
                lit.append("}")
                i += 2
                continue
            raise BadRequest(
                f"{param}: unbalanced '}}' at position {i} in key template {_snip(template)}; "
                "valid: {variable} or '}}' for a literal brace",
                param=param,
            )
        elif c == "%" and (m := _PERCENT.match(template, i)):
            flush()
            tokens.append(_Token("pct", "%", int(m.group(1) or 0)))
            i = m.end()
        else:
            lit.append(c)
            i += 1
    flush()
    return tokens


@dataclass(frozen=True)
class _SourceParts:
    bucket: str
    key: str
    dirname: str
    basename: str
    barename: str
    ext: str


def _source_parts(source: SourceRef) -> _SourceParts:
    # A local absolute path (CLI) is named as if it were a key: never let it make the output absolute.
    key = source.key.lstrip("/")
    dirname, basename = posixpath.split(key)
    barename, dot_ext = posixpath.splitext(basename)
    return _SourceParts(source.bucket or "", key, dirname, basename, barename, dot_ext[1:])


def _value(token: _Token, *, index: int, ext: str, src: _SourceParts) -> str:
    if token.kind == "pct":
        return f"{index:0{token.width}d}" if token.width else str(index)
    values = {
        "index": str(index),
        "Count": f"{index:05d}",
        "TileCount": f"{index:05d}",
        "autoext": ext,
        "streamindex": "0",
        "bucket": src.bucket,
        "key": src.key,
        "dirname": src.dirname,
        "basename": src.basename,
        "barename": src.barename,
        "ext": src.ext,
        "ObjectPrefix": src.dirname + "/" if src.dirname else "",
        "FileName": src.barename,
        "ExtName": "." + src.ext if src.ext else "",
    }
    return values[token.text]


def _expand(tokens: list[_Token], *, index: int, ext: str, src: _SourceParts) -> str:
    out: list[str] = []
    length = 0
    prev_empty_var = False
    for tok in tokens:
        if tok.kind == "lit":
            text = tok.text
            # An empty variable followed by "/" must not leave "/x" or "a//x" behind.
            if prev_empty_var and text.startswith("/") and (length == 0 or out[-1].endswith("/")):
                text = text[1:]
            prev_empty_var = False
        else:
            text = _value(tok, index=index, ext=ext, src=src)
            prev_empty_var = text == ""
        if text:
            out.append(text)
            length += len(text)
    return "".join(out)


def _has_extension(tokens: list[_Token]) -> bool:
    # Render the template with every variable as a neutral "X" (no dot, no slash), so only the dots
    # the user typed count, then look at the last path segment like posixpath.splitext does.
    text = "".join(t.text if t.kind == "lit" else "X" for t in tokens)
    _, dot_ext = posixpath.splitext(text.rsplit("/", 1)[-1])
    return len(dot_ext) > 1


def _tokens_have_index(tokens: list[_Token]) -> bool:
    return any(t.kind == "pct" or (t.kind == "var" and t.text in INDEX_VARIABLES) for t in tokens)


def validate_template(template: str, *, param: str = "o") -> None:
    """Check a key template without a source: syntax, variables and the safety of its literal text.

    Raises :class:`BadRequest` (with ``param``) for a template that is not a string, is empty or too
    long, has unknown variables or unbalanced braces, or whose literal text is an absolute path,
    traverses (``..``), uses backslashes as separators or contains control characters.
    """
    if not isinstance(template, str):
        raise BadRequest(
            f"{param}: the key template must be a string, not {type(template).__name__}", param=param
        )
    if not template:
        raise BadRequest(f"{param}: the key template is empty; valid: a non-empty key template", param=param)
    tokens = _tokenize(template, param)
    # Probe with a neutral source: variables become harmless words, so any problem left is in the
    # literal text the user wrote (a bad *source* key is caught later by check_key on the real key).
    probe = _expand(
        tokens,
        index=1,
        ext="jpg",
        src=_SourceParts("bucket", "dir/video.mp4", "dir", "video.mp4", "video", "mp4"),
    )
    if template.startswith(("/", "\\")) or _DRIVE.match(template):
        raise BadRequest(
            f"{param}: the key template {_snip(template)} is an absolute path; valid: a relative key",
            param=param,
        )
    try:
        check_key(probe)
    except (BadRequest, NotAllowed) as exc:
        raise BadRequest(f"{param}: key template {_snip(template)}: {exc.message}", param=param) from None


def output_key(template: str, *, index: int, ext: str, source: SourceRef) -> str:
    """The key of frame ``index`` (1-based) in format ``ext`` (``jpg``...) for ``source``.

    Deterministic: the same arguments always give the same key. Applies the documented suffix rule
    (no extension and no index variable → ``_{streamindex}_{index}.{autoext}`` appended) and
    checks the result with :func:`check_key`. Raises :class:`BadRequest` for a malformed template,
    :class:`NotAllowed` for an unsafe resulting key, and :class:`ValueError` for ``index < 1``
    (a caller bug, not a request problem).
    """
    if index < 1:
        raise ValueError(f"frame index is 1-based, got {index}")
    tokens = _tokenize(template, "template")
    key = _expand(tokens, index=index, ext=ext, src=_source_parts(source))
    if not _tokens_have_index(tokens) and not _has_extension(tokens):
        key = f"{key}_0_{index}.{ext}"
    return check_key(key)


def track_key(template: str, *, source: SourceRef, ext: str = "vtt") -> str:
    """The key of a file that lies beside a job's images: a thumbnail track (``.vtt``).

    The images' template without its index variable (and one ``-``, ``_``, ``.`` or space just before
    it), with the extension ``ext``: ``out/{barename}-{index}.jpg`` → ``out/clip.vtt``. When nothing
    of the file name is left (``snap/{Count}.jpg``, ``{barename}/{index}.{autoext}``) the source's
    bare name is used: ``snap/clip.vtt``, ``clip/clip.vtt``.
    """
    tokens: list[_Token] = []
    for tok in _tokenize(template, "template"):
        if tok.kind == "pct" or (tok.kind == "var" and tok.text in INDEX_VARIABLES):
            if tokens and tokens[-1].kind == "lit" and tokens[-1].text[-1:] in ("-", "_", ".", " "):
                tokens[-1] = _Token("lit", tokens[-1].text[:-1])
            continue
        tokens.append(tok)
    src = _source_parts(source)
    key = _expand(tokens, index=1, ext=ext, src=src)
    folder, _, name = key.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    name = f"{stem or src.barename or 'track'}.{ext}"
    return check_key(f"{folder}/{name}" if folder else name)


def frames_overwrite(template: str) -> bool:
    """True when every frame of a multi-frame job is written to the same key.

    That is the case for a template with an extension and no index variable (README: the last
    frame remains, and the notification carries a warning). A template with neither gets the
    ``_{streamindex}_{index}.{autoext}`` suffix, so its frames do not overwrite each other.
    Raises :class:`BadRequest` for a malformed template.
    """
    tokens = _tokenize(template, "template")
    return not _tokens_have_index(tokens) and _has_extension(tokens)


def check_key(key: str) -> str:
    """Return ``key`` when it is a safe relative object key; raise otherwise.

    :class:`NotAllowed` (README): a ``..`` segment (with ``/`` or ``\\`` as separator), an absolute
    path (leading ``/`` or ``\\``, or a drive letter), control characters. :class:`BadRequest`:
    not a string, empty, not encodable as UTF-8, or longer than 1024 bytes.
    """
    if not isinstance(key, str):
        raise BadRequest(f"key must be a string, not {type(key).__name__}", param="key")
    if not key:
        raise BadRequest("key is empty; valid: 1..1024 bytes of UTF-8", param="key")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"key {_snip(key)} is not valid UTF-8 text", param="key") from None
    if size > MAX_KEY_BYTES:
        raise BadRequest(
            f"key {_snip(key)} is {size} bytes long; valid: 1..{MAX_KEY_BYTES} bytes of UTF-8", param="key"
        )
    if any(unicodedata.category(c) == "Cc" for c in key):
        raise NotAllowed(f"key {_snip(key)} contains control characters", param="key")
    if key.startswith(("/", "\\")) or _DRIVE.match(key):
        raise NotAllowed(f"key {_snip(key)} is an absolute path; valid: a relative key", param="key")
    # Backslashes are ordinary characters in S3 but separators on Windows and for some tools: treat
    # them as separators when looking for traversal so "a\\..\\b" cannot escape a local output root.
    if any(seg == ".." for seg in re.split(r"[/\\]", key)):
        raise NotAllowed(f"key {_snip(key)} has a '..' segment; valid: a key without '..'", param="key")
    return key


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` (``oss://`` accepted) into ``(bucket, key)``.

    A plain splitter: the scheme is matched as written (lower case), and the bucket and key are
    only required to be non-empty. Raises :class:`ValueError` for anything else; callers that
    answer a request turn that into their own error (and check the parts as they need).
    """
    for scheme in ("s3://", "oss://"):
        if uri.startswith(scheme):
            bucket, _, key = uri[len(scheme) :].partition("/")
            if bucket and key:
                return bucket, key
    raise ValueError(f"not an s3:// URI: {uri!r}")
