"""Read a GGUF file's header: scalar metadata and tensor descriptions, skipping arrays.

`gguf.GGUFReader` builds a numpy view of every element of every array, which for Gemma's
262k-entry vocabulary takes about 8 s in Python. The facts iberlite shows need none of the
array contents, so arrays are skipped: fixed-size ones in one step, string arrays by their
length fields only.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path

_MAGIC = b"GGUF"
_SCALARS = {  # GGUF value type -> struct format
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's name, ggml type id, element count, shape (row length first) and data
    offset (in the data section)."""

    name: str
    ggml_type: int
    n_elements: int
    shape: tuple[int, ...] = ()
    offset: int = 0


@dataclass(frozen=True)
class GgufHeader:
    """Scalar and string metadata (arrays are left out) and every tensor's description."""

    version: int
    fields: dict[str, object]
    tensors: tuple[TensorInfo, ...]
    data_start: int = 0  # where the tensor data section begins in the file

    def data_end(self) -> int:
        """The byte where the last tensor's data ends: a file shorter than this is truncated.

        Tensors of a ggml type this reader does not know count as empty (a lower bound)."""
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

        end = self.data_start
        for t in self.tensors:
            try:
                block, size = GGML_QUANT_SIZES[GGMLQuantizationType(t.ggml_type)]
            except (ValueError, KeyError):
                continue
            end = max(end, self.data_start + t.offset + t.n_elements // block * size)
        return end


_FIRST_SPLIT = re.compile(r"^(?P<prefix>.+)-00001-of-(?P<count>\d{5})\.gguf$")


def split_part_paths(path: Path, header: GgufHeader) -> list[Path]:
    """Every file of a split model (llama.cpp's ``PREFIX-0000i-of-0000N.gguf``, beside each
    other) when `path` is its first part; ``[path]`` for a whole file."""
    count = header.fields.get("split.count")
    m = _FIRST_SPLIT.match(path.name)
    if not isinstance(count, int) or count <= 1 or not m:
        return [path]
    return [path.with_name(f"{m['prefix']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("Q")
        if self.pos + n > len(self.buf):
            raise ValueError("a string runs past the end of the file")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_array(self) -> None:
        kind, count = self.take("I"), self.take("Q")
        if kind in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[kind]) * count
        elif kind == _STRING:
            unpack, buf, pos = struct.unpack_from, self.buf, self.pos
            for _ in range(count):
                pos += 8 + unpack("<Q", buf, pos)[0]
            self.pos = pos
        elif kind == _ARRAY:
            for _ in range(count):
                self.skip_array()
        else:
            raise ValueError(f"unknown array element type {kind}")
        if self.pos > len(self.buf):
            raise ValueError("an array runs past the end of the file")

    def value(self, kind: int):
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            self.skip_array()
            return None
        raise ValueError(f"unknown metadata value type {kind}")


def read_gguf_header(path: Path) -> GgufHeader:
    """Parse the header of the GGUF file at `path`; ValueError if it is not one."""
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # an empty file cannot be mapped
            raise ValueError("the file is empty") from exc
    try:
        if buf[:4] != _MAGIC:
            raise ValueError("no GGUF magic number")
        cur = _Cursor(buf)
        cur.pos = 4
        version = cur.take("I")
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = cur.take("Q"), cur.take("Q")
        fields: dict[str, object] = {}
        for _ in range(n_kv):
            key = cur.string()
            value = cur.value(cur.take("I"))
            if value is not None:
                fields[key] = value
        tensors = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.take("I")
            shape = tuple(cur.take("Q") for _ in range(n_dims))
            n = 1
            for d in shape:
                n *= d
            ggml_type = cur.take("I")
            tensors.append(TensorInfo(name, ggml_type, n, shape, cur.take("Q")))
        align = fields.get("general.alignment", 32)
        align = align if isinstance(align, int) and align > 0 else 32
        data_start = -(-cur.pos // align) * align
        return GgufHeader(version, fields, tuple(tensors), data_start)
    finally:
        buf.close()
