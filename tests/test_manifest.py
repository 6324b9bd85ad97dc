"""`train.manifest`: reading, validating and writing `path,type,color,group` CSVs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lotlens.errors import ManifestError
from lotlens.train.manifest import COLUMNS, Row, manifest_sha256, read_manifest, write_manifest


def write(tmp_path: Path, text: str, name: str = "manifest.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_rows_and_ignores_extra_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\n".join(
            [
                "note,path,color,type,group,source",
                "x,img/1.jpg,Red,Stock,stanford,web",
                "y, img/2.jpg ,gray,dealer, adv7 ,",
            ]
        ),
    )
    assert read_manifest(path) == [
        Row("img/1.jpg", "Stock", "Red", "stanford"),
        Row("img/2.jpg", "Dealer", "Grey", "adv7"),
    ]


def test_empty_labels_are_none_and_missing_group_is_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, "path,type,color,group\na.jpg,,Blue,\nb.jpg,Stock,,g\n")
    a, b = read_manifest(path)
    assert (a.type, a.color, a.group) == (None, "Blue", "unknown")
    assert (b.type, b.color, b.group) == ("Stock", None, "g")


def test_group_column_is_optional(tmp_path: Path) -> None:
    rows = read_manifest(write(tmp_path, "path,type,color\na.jpg,Stock,Red\n"))
    assert rows == [Row("a.jpg", "Stock", "Red", "unknown")]


def test_placeholder_has_no_color(tmp_path: Path) -> None:
    rows = read_manifest(write(tmp_path, "path,type,color\nlogo.png,placeholder,White\n"))
    assert rows == [Row("logo.png", "Placeholder", None, "unknown")]


@pytest.mark.parametrize("legacy", ["N/A", "n/a", "NA", "none"])
def test_legacy_no_color(tmp_path: Path, legacy: str) -> None:
    rows = read_manifest(write(tmp_path, f"path,type,color\na.jpg,Dealer,{legacy}\n"))
    assert rows[0].color is None
    assert rows[0].type == "Dealer"


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("path,type,color\na.jpg,Stock,Red\n".encode("utf-8-sig"))
    assert read_manifest(path)[0].path == "a.jpg"


def test_quoted_fields(tmp_path: Path) -> None:
    rows = read_manifest(write(tmp_path, 'path,type,color,group\n"dir, with comma/a.jpg",Stock,Red,"A, B Motors"\n'))
    assert rows == [Row("dir, with comma/a.jpg", "Stock", "Red", "A, B Motors")]


def test_key_combines_type_and_color() -> None:
    assert Row("a", "Stock", "Red", "g").key == "Stock|Red"
    assert Row("a", None, "Red", "g").key == "|Red"
    assert Row("a", "Placeholder", None, "g").key == "Placeholder|"


@pytest.mark.parametrize(("header", "missing"), [("path,type,group", "color"), ("file,type,color", "path")])
def test_missing_column(tmp_path: Path, header: str, missing: str) -> None:
    path = write(tmp_path, f"{header}\na,Stock,Red\n")
    with pytest.raises(ManifestError, match=f"missing column.*{missing}"):
        read_manifest(path)


def test_empty_file_is_missing_every_column(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(write(tmp_path, ""))


@pytest.mark.parametrize(("line", "word"), [("a.jpg,Truck,Red", "type"), ("a.jpg,Stock,Beige", "color")])
def test_unknown_label_names_the_line(tmp_path: Path, line: str, word: str) -> None:
    path = write(tmp_path, f"path,type,color\nok.jpg,Stock,Red\n{line}\n")
    with pytest.raises(ManifestError, match=rf"manifest\.csv:3: unknown {word}"):
        read_manifest(path)


def test_empty_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="empty path"):
        read_manifest(write(tmp_path, "path,type,color\n  ,Stock,Red\n"))


@pytest.mark.parametrize("body", ["", "a.jpg,,\nb.jpg,,N/A\n"])
def test_no_labelled_row(tmp_path: Path, body: str) -> None:
    with pytest.raises(ManifestError, match="no labelled row"):
        read_manifest(write(tmp_path, f"path,type,color\n{body}"))


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / "nope.csv")


def test_manifest_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path)


def test_manifest_error_is_not_a_value_error(tmp_path: Path) -> None:
    # Callers catch ManifestError; the ValueError of the label check must not leak as such.
    with pytest.raises(ManifestError) as info:
        read_manifest(write(tmp_path, "path,type,color\na.jpg,Stock,Beige\n"))
    assert not isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, ValueError)


def test_write_read_round_trip(tmp_path: Path) -> None:
    rows = [
        Row("img/a.jpg", "Stock", "Red", "stanford"),
        Row("img/b c.jpg", "Dealer", None, "adv, 1"),
        Row("img/d.png", "Placeholder", None, "adv2"),
        Row("img/e.jpg", None, "Purple", "adv3"),
    ]
    path = tmp_path / "out" / "nested" / "manifest.csv"
    write_manifest(rows, path)  # makes the folders
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    assert read_manifest(path) == rows


def test_sha256_changes_with_content(tmp_path: Path) -> None:
    a = write(tmp_path, "path,type,color\na.jpg,Stock,Red\n", "a.csv")
    b = write(tmp_path, "path,type,color\na.jpg,Stock,Blue\n", "b.csv")
    assert manifest_sha256(a) == manifest_sha256(a)
    assert len(manifest_sha256(a)) == 64
    assert manifest_sha256(a) != manifest_sha256(b)
