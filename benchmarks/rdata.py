"""Just enough of R's serialization format to read a data frame out of an R package's data.

The second public dataset of benchmarks/quality.py (MovieLens "latest-small", in the `dslabs`
R package that Debian ships as r-cran-dslabs) is stored the way R stores package data: a
lazy-load database (Rdata.rdx, an index, and Rdata.rdb, one zlib-compressed serialized object
per dataset). Reading it here needs no R and no pandas. Covered: XDR format versions 2 and 3,
pairlists, symbols, references, logical / integer / double / string / list vectors with their
attributes, and the ALTREP compact sequences and wrappers R writes for row names.
See "R Internals", section 1.8 (Serialization Formats).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

NIL, SYM, PAIRLIST, CHAR, LGL, INT, REAL, STR, LIST = 254, 1, 2, 9, 10, 13, 14, 16, 19
ATTRLIST, ALTREP, REF = 239, 238, 255
SPECIAL_ENVIRONMENTS = {242, 241, 253, 252, 251, 247}  # empty, base, global, unbound, missing, base namespace
NA_INTEGER = -(2**31)


class Unsupported(ValueError):
    pass


class _Reader:
    def __init__(self, buffer: bytes) -> None:
        self.buffer, self.at, self.refs = buffer, 0, []
        if buffer[:2] != b"X\n":
            raise Unsupported(f"not R's XDR serialization (starts {buffer[:2]!r})")
        self.at = 2
        version = self._int()
        self._int(), self._int()  # writer's and minimal reader's R versions
        if version == 3:
            encoding_length = self._int()  # then the native encoding's name
            self.at += encoding_length
        elif version != 2:
            raise Unsupported(f"serialization version {version}")

    def _int(self) -> int:
        (value,) = struct.unpack_from(">i", self.buffer, self.at)
        self.at += 4
        return value

    def _length(self) -> int:
        n = self._int()
        return (self._int() << 32) + self._int() if n == -1 else n

    def _array(self, dtype: str, size: int) -> np.ndarray:
        n = self._length()
        values = np.frombuffer(self.buffer, dtype, n, self.at)
        self.at += size * n
        return values

    def item(self):
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == NIL or kind in SPECIAL_ENVIRONMENTS:
            return None
        if kind == REF:
            return self.refs[(flags >> 8 or self._int()) - 1]
        if kind == SYM:
            symbol = ("symbol", self.item())
            self.refs.append(symbol)
            return symbol
        if kind == CHAR:
            n = self._int()
            if n == -1:
                return None
            text = self.buffer[self.at : self.at + n].decode("utf-8", "replace")
            self.at += n
            return text
        if kind in (PAIRLIST, ATTRLIST):
            return self._pairlist(has_attr, has_tag)
        if kind == ALTREP:
            return self._altrep()
        if kind in (LGL, INT):
            value = self._array(">i4", 4).astype(np.int64)
        elif kind == REAL:
            value = self._array(">f8", 8).astype(np.float64)
        elif kind in (STR, LIST):
            value = [self.item() for _ in range(self._length())]
        else:
            raise Unsupported(f"R object type {kind} at byte {self.at}")
        return RObject(value, self.item() if has_attr else {})

    def _pairlist(self, has_attr: int, has_tag: int) -> dict:
        out: dict = {}
        while True:
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            out[tag[1] if tag else len(out)] = self.item()
            flags = self._int()
            if flags & 0xFF == NIL:
                return out
            if flags & 0xFF not in (PAIRLIST, ATTRLIST):
                raise Unsupported(f"pairlist continues with type {flags & 0xFF}")
            has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)

    def _altrep(self) -> "RObject":
        info, state, attributes = self.item(), self.item(), self.item()
        name = info[0][1]
        if name in ("compact_intseq", "compact_realseq"):
            n, start, step = state.value
            value = start + step * np.arange(int(n))
        elif name.startswith("wrap_"):
            value = state.value[0].value
        else:
            raise Unsupported(f"ALTREP class {name}")
        return RObject(value, attributes or {})


class RObject:
    def __init__(self, value, attributes: dict) -> None:
        self.value, self.attributes = value, attributes


def data_frame_columns(obj: RObject) -> dict[str, np.ndarray | list]:
    """Column name -> values (numpy for numbers, with NaN for R's NA; list for strings; factor codes as strings)."""
    names = obj.attributes["names"].value
    columns = {}
    for name, column in zip(names, obj.value):
        value = column.value
        if isinstance(value, np.ndarray) and value.dtype == np.int64:
            levels = column.attributes.get("levels")
            if levels is not None:  # a factor: 1-based codes into its levels
                labels = np.array(levels.value, dtype=object)
                value = [None if code == NA_INTEGER else labels[code - 1] for code in value]
            else:
                value = np.where(value == NA_INTEGER, np.nan, value) if (value == NA_INTEGER).any() else value
        columns[name] = value
    return columns


def lazy_load(directory: Path, name: str, database: str = "Rdata") -> RObject:
    """One object (e.g. a package's dataset) from the lazy-load database `database`.rdx / .rdb."""
    index = _Reader(zlib.decompress((directory / f"{database}.rdx").read_bytes(), 15 + 32)).item()
    variables = index.value[0]
    names = variables.attributes["names"].value
    if name not in names:
        raise KeyError(f"{name!r} is not in {directory / database}.rdx (it has {', '.join(names)})")
    offset, length = (int(x) for x in variables.value[names.index(name)].value)
    with open(directory / f"{database}.rdb", "rb") as f:
        f.seek(offset)
        chunk = f.read(length)
    # Each object: its uncompressed size (4 bytes), then zlib data (R's default compression 1).
    return _Reader(zlib.decompress(chunk[4:])).item()
