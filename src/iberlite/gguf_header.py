"""Read the scalar metadata and tensor table of a GGUF file, skipping the arrays.

gguf's ``GGUFReader`` builds a numpy view per element of every array, which for Gemma 3's
262k-token vocabulary takes about 15 s of CPU on every model load; the facts iberlite needs
(architecture, file type, context length, tensor types and sizes) are scalars and the tensor
table, so this reader steps over arrays by their lengths and keeps the rest (well under a second).
Layout: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

# GGUF value types -> struct format of a scalar (8: string, 9: array)
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GgufTensor:
    """One entry of the tensor table."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int


@dataclass(frozen=True)
class GgufHeader:
    """Scalar metadata (strings and numbers; arrays are left out) and the tensor table."""

    version: int
    metadata: dict[str, object]
    tensors: tuple[GgufTensor, ...]


class _Cursor:
    def __init__(self, buf) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError("string runs past the end of the file")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return s

    def skip_array(self) -> None:
        etype, count = self.unpack("<I"), self.unpack("<Q")
        if etype in _SCALAR:
            self.pos += count * struct.calcsize(_SCALAR[etype])
        elif etype == _STRING:
            for _ in range(count):
                self.pos += 8 + struct.unpack_from("<Q", self.buf, self.pos)[0]
        elif etype == _ARRAY:
            for _ in range(count):
                self.skip_array()
        else:
            raise ValueError(f"unknown GGUF array type {etype}")
        if self.pos > len(self.buf):
            raise ValueError("array runs past the end of the file")


def read_header(path: Path) -> GgufHeader:
    """The header of GGUF file `path`; ValueError or struct.error when it is not one."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError("no GGUF magic")
        cur = _Cursor(buf)
        cur.pos = 4
        version = cur.unpack("<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        metadata: dict[str, object] = {}
        for _ in range(n_kv):
            key, vtype = cur.string(), cur.unpack("<I")
            if vtype in _SCALAR:
                metadata[key] = cur.unpack(_SCALAR[vtype])
            elif vtype == _STRING:
                metadata[key] = cur.string()
            elif vtype == _ARRAY:
                cur.skip_array()
            else:
                raise ValueError(f"unknown GGUF value type {vtype}")
        tensors = []
        for _ in range(n_tensors):
            name, n_dims = cur.string(), cur.unpack("<I")
            if n_dims > 8:
                raise ValueError(f"tensor {name} has {n_dims} dimensions")
            shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
            ggml_type = cur.unpack("<I")
            cur.unpack("<Q")  # data offset
            tensors.append(GgufTensor(name, shape, ggml_type))
        return GgufHeader(version, metadata, tuple(tensors))
