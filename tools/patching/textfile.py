"""Read and write a text file as a list of lines while remembering how it was stored.

Why: every edit works on lines without line endings, so a CRLF file, a BOM or a missing final newline must be
remembered on read and restored on write; otherwise a one-line fix would show up as a whole-file diff.
Undecodable files are reported as a message (an observation for the model), never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class TextFile:
    """A file's content as lines (no endings) plus the storage details needed to write it back unchanged."""

    lines: tuple[str, ...]
    eol: str = "\n"
    final_newline: bool = True
    bom: bool = False

    def with_lines(self, lines: list[str] | tuple[str, ...], final_newline: bool | None = None) -> TextFile:
        keep = self.final_newline if final_newline is None else final_newline
        return replace(self, lines=tuple(lines), final_newline=keep)

    def render(self) -> bytes:
        text = self.eol.join(self.lines)
        if self.lines and self.final_newline:
            text += self.eol
        return (_BOM if self.bom else b"") + text.encode("utf-8")


def split_text(text: str) -> tuple[list[str], bool]:
    """Split normalized text (``\\n`` endings) into lines and whether it ends with a newline."""
    if text == "":
        return [], True
    final = text.endswith("\n")
    body = text[:-1] if final else text
    return body.split("\n"), final


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_bytes(data: bytes, display: str) -> TextFile | str:
    """Decode ``data``; on failure return a one-line observation naming ``display``."""
    if b"\x00" in data:
        return f"{display} looks like a binary file (it contains NUL bytes); it was left unchanged."
    bom = data.startswith(_BOM)
    raw = data[len(_BOM) :] if bom else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"{display} is not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "it was left unchanged. Edit only UTF-8 text files."
        )
    crlf = text.count("\r\n")
    eol = "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"
    lines, final = split_text(normalize_newlines(text))
    return TextFile(tuple(lines), eol=eol, final_newline=final, bom=bom)


def read_text(path: Path, display: str) -> TextFile | str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"Could not read {display}: {exc.strerror or exc}."
    return parse_bytes(data, display)


def text_file_from(content: str, like: TextFile | None = None) -> TextFile:
    """A new file's lines from model-written ``content``; a text file always gets a final newline."""
    lines, _ = split_text(normalize_newlines(content))
    if like is None:
        return TextFile(tuple(lines))
    return replace(like, lines=tuple(lines), final_newline=True)


def write_text(path: Path, content: TextFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.render())
