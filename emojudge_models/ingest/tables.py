"""Reading the CSV files of a corpus (manifest.csv, Labels/labels_consensus.csv) whatever their text encoding.

Spreadsheet programs save CSV as UTF-8, UTF-8 with a byte-order mark, or UTF-16 (little or big endian, usually
with a BOM); all of these are read the same. Anything else is refused with :class:`CorpusInvalid`, one line naming
the file, so ``eval-set add`` and the ingest asset accept exactly the same files.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class CorpusInvalid(ValueError):
    """A corpus, or one of its files, that cannot be ingested; the message is one line naming the file and cause."""


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def sniff_encoding(raw: bytes) -> str:
    """The encoding of ``raw``: from its byte-order mark, from the NUL pattern of BOM-less UTF-16, else UTF-8.

    BOM-less UTF-16 of mostly ASCII text (CSV headers always are) has a NUL in every other byte: the odd bytes
    for little endian, the even bytes for big endian. UTF-8 text has no NUL bytes at all.
    """
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            return encoding
    head = raw[:4096]
    if len(head) >= 2:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > len(odd) // 2 and even.count(0) == 0:
            return "utf-16-le"
        if even.count(0) > len(even) // 2 and odd.count(0) == 0:
            return "utf-16-be"
    return "utf-8"


def read_text(path: Path) -> str:
    """The text of ``path`` decoded with its sniffed encoding (the BOM removed); CorpusInvalid if it does not decode."""
    raw = path.read_bytes()
    encoding = sniff_encoding(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        label = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        raise CorpusInvalid(
            f"{path}: not readable as {label} ({error.reason} at byte {error.start}); save it as UTF-8 or UTF-16 text"
        ) from None
    return text[1:] if encoding.startswith("utf-16") and text.startswith("\ufeff") else text


def read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    """The CSV at ``path`` as strings (empty cells ""), checked to have every column in ``required``."""
    import pandas as pd  # here, not at import: the CLI loads this module before printing --help

    if not path.is_file():
        raise CorpusInvalid(f"{path}: file not found")
    try:
        table = pd.read_csv(io.StringIO(read_text(path)), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise CorpusInvalid(f"{path}: the file is empty; it needs a header row with {', '.join(required)}") from None
    except pd.errors.ParserError as error:
        cause = " ".join(str(error).split())
        raise CorpusInvalid(f"{path}: not a valid CSV ({cause})") from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in required if column not in table.columns]
    if missing:
        found = ", ".join(table.columns) or "none"
        raise CorpusInvalid(f"{path}: missing required column(s) {', '.join(missing)} (found: {found})")
    return table
