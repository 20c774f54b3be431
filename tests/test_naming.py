"""Output key templates and key safety (README: Request languages, Configuration): vidsnap.core.naming."""

from __future__ import annotations

import pytest

from vidsnap.core.errors import BadRequest, NotAllowed
from vidsnap.core.naming import (
    INDEX_VARIABLES,
    VARIABLES,
    check_key,
    frames_overwrite,
    output_key,
    split_s3_uri,
    validate_template,
)
from vidsnap.core.plan import DEFAULT_KEY_TEMPLATE, SourceRef

SRC = SourceRef(key="videos/2024/clip.final.mp4", bucket="media")
ROOT = SourceRef(key="clip.mp4", bucket="media")
NOEXT = SourceRef(key="raw/clip", bucket="media")
LOCAL_ABS = SourceRef(key="/home/me/videos/clip.mov")


def key(template: str, index: int = 1, ext: str = "jpg", source: SourceRef = SRC) -> str:
    return output_key(template, index=index, ext=ext, source=source)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{index}.jpg", "1.jpg"),
        ("f.{autoext}", "f.png"),
        ("f_{streamindex}.jpg", "f_0.jpg"),
        ("{bucket}.jpg", "media.jpg"),
        ("{key}.jpg", "videos/2024/clip.final.mp4.jpg"),
        ("{dirname}/x.jpg", "videos/2024/x.jpg"),
        ("{basename}.jpg", "clip.final.mp4.jpg"),
        ("{barename}.jpg", "clip.final.jpg"),
        ("{ext}.jpg", "mp4.jpg"),
        ("{Count}.jpg", "00001.jpg"),
        ("{ObjectPrefix}x.jpg", "videos/2024/x.jpg"),
        ("{FileName}.jpg", "clip.final.jpg"),
        ("x{ExtName}.jpg", "x.mp4.jpg"),
        ("%d.jpg", "1.jpg"),
        ("%03d.jpg", "001.jpg"),
        ("{{lit}}-{index}.jpg", "{lit}-1.jpg"),
    ],
)
def test_every_variable(template: str, expected: str) -> None:
    ext = "png" if "autoext" in template else "jpg"
    assert key(template, ext=ext) == expected


def test_every_variable_is_covered() -> None:
    assert {
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
    } == VARIABLES
    assert {"index", "Count", "TileCount"} == INDEX_VARIABLES


def test_index_is_one_based_and_counts() -> None:
    assert [key("f/{index}.{autoext}", i) for i in (1, 2, 10)] == ["f/1.jpg", "f/2.jpg", "f/10.jpg"]
    assert key("{Count}.jpg", 123) == "00123.jpg"
    assert key("{Count}.jpg", 123456) == "123456.jpg"  # padding is a minimum width
    assert key("%05d.jpg", 42) == "00042.jpg"


def test_index_below_one_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="1-based"):
        key("{index}.jpg", 0)


def test_default_template() -> None:
    assert key(DEFAULT_KEY_TEMPLATE, 3, "webp") == "clip.final/3.webp"


def test_mps_idiom_works_at_root_and_in_folders() -> None:
    template = "{ObjectPrefix}{FileName}_{Count}{ExtName}.jpg"
    assert key(template, 2) == "videos/2024/clip.final_00002.mp4.jpg"
    assert key(template, 2, source=ROOT) == "clip_00002.mp4.jpg"
    assert key("{ObjectPrefix}{FileName}/{Count}.jpg", source=NOEXT) == "raw/clip/00001.jpg"


def test_source_without_extension() -> None:
    assert key("{barename}-{ext}-{index}.jpg", source=NOEXT) == "clip--1.jpg"
    assert key("{FileName}{ExtName}-{index}.jpg", source=NOEXT) == "clip-1.jpg"


def test_empty_dirname_does_not_make_an_absolute_key() -> None:
    assert key("{dirname}/{barename}_{index}.jpg", source=ROOT) == "clip_1.jpg"
    assert key("out/{dirname}/{barename}_{index}.jpg", source=ROOT) == "out/clip_1.jpg"
    assert key("out/{dirname}/{barename}_{index}.jpg") == "out/videos/2024/clip.final_1.jpg"


def test_local_absolute_source_is_named_relatively() -> None:
    assert key("{dirname}/{barename}/{index}.jpg", source=LOCAL_ABS) == "home/me/videos/clip/1.jpg"
    assert key("{bucket}{key}.jpg", source=LOCAL_ABS) == "home/me/videos/clip.mov.jpg"


# --- the suffix rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "index", "expected"),
    [
        ("out", 1, "out_0_1.jpg"),
        ("out", 2, "out_0_2.jpg"),
        ("frames/out", 3, "frames/out_0_3.jpg"),
        ("{barename}", 1, "clip.final_0_1.jpg"),  # only dots typed in the template count
        ("{basename}", 2, "clip.final.mp4_0_2.jpg"),
        ("{FileName}{ExtName}", 1, "clip.final.mp4_0_1.jpg"),
        ("out.", 1, "out._0_1.jpg"),  # a trailing dot is no extension
        ("a.b/out", 1, "a.b/out_0_1.jpg"),  # a dot in a folder is not an extension
        (".hidden", 1, ".hidden_0_1.jpg"),  # a dotfile has no extension
        ("frames/", 1, "frames/_0_1.jpg"),
    ],
)
def test_no_extension_no_index_gets_suffix(template: str, index: int, expected: str) -> None:
    assert key(template, index) == expected
    assert not frames_overwrite(template)


def test_suffix_rule_does_not_depend_on_the_source() -> None:
    for source in (SRC, ROOT, NOEXT, LOCAL_ABS):
        assert key("{barename}", 5, source=source).endswith("_0_5.jpg")
        assert key("{barename}.{autoext}", 5, source=source).endswith(".jpg")
        assert "_0_" not in key("{barename}.{autoext}", 5, source=source)


@pytest.mark.parametrize("template", ["out.jpg", "a/b/out.{autoext}", "{barename}.png", "x.{ext}"])
def test_extension_without_index_overwrites(template: str) -> None:
    assert key(template, 1) == key(template, 2)
    assert frames_overwrite(template)


@pytest.mark.parametrize("template", ["{index}", "out_%d", "x_%02d", "{Count}", "{index}.jpg"])
def test_index_variable_is_written_as_is(template: str) -> None:
    assert "_0_7" not in key(template, 7)
    assert key(template, 7) != key(template, 8)
    assert not frames_overwrite(template)


def test_frames_overwrite_rejects_bad_template() -> None:
    with pytest.raises(BadRequest):
        frames_overwrite("{oops")


def test_deterministic() -> None:
    template = "{dirname}/{barename}/{Count}_%d.{autoext}"
    assert [key(template, i) for i in range(1, 4)] == [key(template, i) for i in range(1, 4)]


# --- which templates number their frames -----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{index}.jpg", True),
        ("{Count}.jpg", True),
        ("%d.jpg", True),
        ("%04d.jpg", True),
        ("out.jpg", False),
        ("{{index}}.jpg", False),  # a literal, not the variable
        ("100%.jpg", False),
        ("%5d.jpg", False),  # only %d and %0Nd are aliases
        ("{barename}.{autoext}", False),
    ],
)
def test_index_variables(template: str, expected: bool) -> None:
    # Every template here has an extension, so its frames overwrite each other exactly when it
    # does not number them.
    assert frames_overwrite(template) is not expected


def test_literal_percent_and_braces() -> None:
    assert key("100%_{index}.jpg") == "100%_1.jpg"
    assert key("%5d_{index}.jpg") == "%5d_1.jpg"
    assert key("{{{index}}}.jpg") == "{1}.jpg"


# --- validate_template -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        DEFAULT_KEY_TEMPLATE,
        "out",
        "out.jpg",
        "{dirname}/{barename}_{index}.{autoext}",
        "{ObjectPrefix}{FileName}_{Count}.jpg",
        "a/{{b}}/%03d.png",
        "ünïcode/{index}.jpg",
    ],
)
def test_validate_accepts(template: str) -> None:
    validate_template(template)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{nope}.jpg", "unknown variable"),
        ("{Index}.jpg", "unknown variable"),  # names are case-sensitive
        ("{}.jpg", "unknown variable"),
        ("{index.jpg", "unbalanced"),
        ("{a{index}.jpg", "unbalanced"),
        ("index}.jpg", "unbalanced"),
        ("/abs/{index}.jpg", "absolute"),
        ("\\abs\\{index}.jpg", "absolute"),
        ("C:\\out\\{index}.jpg", "absolute"),
        ("../{index}.jpg", "'..'"),
        ("a/../../{index}.jpg", "'..'"),
        ("a\\..\\{index}.jpg", "'..'"),
        ("a\x00b.jpg", "control"),
        ("a\nb.jpg", "control"),
        ("", "empty"),
        ("x" * 1100, "bytes"),
    ],
)
def test_validate_rejects(template: str, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment) as info:
        validate_template(template, param="URI")
    assert info.value.param == "URI"
    assert type(info.value) is BadRequest


def test_validate_rejects_non_string() -> None:
    with pytest.raises(BadRequest, match="string"):
        validate_template(42)  # type: ignore[arg-type]


def test_output_key_rejects_bad_template() -> None:
    with pytest.raises(BadRequest, match="unknown variable"):
        key("{what}.jpg")


def test_output_key_rejects_traversal_from_the_source() -> None:
    evil = SourceRef(key="a/../../etc/passwd.mp4", bucket="b")
    with pytest.raises(NotAllowed, match=r"\.\."):
        key("{dirname}/{index}.jpg", source=evil)


def test_output_key_rejects_control_chars_from_the_source() -> None:
    with pytest.raises(NotAllowed, match="control"):
        key("{barename}/{index}.jpg", source=SourceRef(key="a\x07b.mp4", bucket="b"))


def test_output_key_rejects_too_long() -> None:
    with pytest.raises(BadRequest, match="1024"):
        key("{key}/{index}.jpg", source=SourceRef(key="k" * 1020 + ".mp4", bucket="b"))


# --- check_key -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good", ["a", "a/b/c.jpg", "a..b/c", "...", "a/./b", "ünï/çødé.png", "x" * 1024, "é" * 512, "a b+c"]
)
def test_check_key_accepts(good: str) -> None:
    assert check_key(good) == good


@pytest.mark.parametrize(
    ("bad", "exc"),
    [
        ("..", NotAllowed),
        ("../a", NotAllowed),
        ("a/..", NotAllowed),
        ("a/../b", NotAllowed),
        ("a\\..\\b", NotAllowed),
        ("..\\a", NotAllowed),
        ("/a", NotAllowed),
        ("\\a", NotAllowed),
        ("C:/a", NotAllowed),
        ("a\x00", NotAllowed),
        ("a\x1fb", NotAllowed),
        ("a\x7fb", NotAllowed),
        ("a\x85b", NotAllowed),
        ("", BadRequest),
        ("x" * 1025, BadRequest),
        ("é" * 513, BadRequest),
        ("a\ud800b", BadRequest),
    ],
)
def test_check_key_rejects(bad: str, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        check_key(bad)
    assert type(info.value) is exc
    assert getattr(info.value, "param", None) == "key"


def test_check_key_rejects_non_string() -> None:
    with pytest.raises(BadRequest):
        check_key(None)  # type: ignore[arg-type]


def test_error_messages_are_bounded() -> None:
    with pytest.raises(NotAllowed) as info:
        check_key("../" + "x" * 1000)
    assert len(info.value.message) < 300


# --- split_s3_uri ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/k/x.jpg", ("b", "k/x.jpg")),
        ("oss://b/k", ("b", "k")),
        ("s3://b//k", ("b", "/k")),  # a plain splitter: the key is not checked here
        ("s3://b/{index}.jpg", ("b", "{index}.jpg")),
    ],
)
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize(
    "uri", ["s3://bucket-only", "s3://b/", "s3:///k", "s3://", "S3://b/k", "http://b/k", "b/k", ""]
)
def test_split_s3_uri_rejects(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://"):
        split_s3_uri(uri)
