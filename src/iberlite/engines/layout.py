"""Where each token of a scoring pack goes: pure logic, no model needed.

llama.cpp's CPU kernels give a token bit-identical results wherever it is packed only when
(measured with benchmarks/mc_numerics.py, flash attention off):

* its KV cell equals its position modulo `align`, and the cells it attends to fall into
  blocks of `align` exactly as they would alone: attention sums cells in SIMD-wide lanes and
  blocks, so a sequence segment starts at a block boundary (or, continuing a kept prefix
  that ends mid-block, in the cell right after it), and a shared prefix is shared only up to
  its last whole block (the rest is repeated in each choice's segment);
* every decode has a multiple of ROWS (4) rows and asks for logits at a multiple of ROWS
  rows: the repacked quantized GEMMs take activation rows in fours and the remainder through
  another kernel (Gemma 3 270M on an AVX-512 EPYC: 1, 2 or 3 change logprobs by up to 0.3
  nats; 4, 8 and 16 agree bit for bit on XStoryCloze-eu, XNLI-es and BEC2016eu, both catalog
  models).

`align` is the SIMD width in floats of the kernels llama.cpp was built with: 8 for AVX2,
16 for AVX-512 (engines/kernels.py decides it; the doctor checks it on the device).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

ROWS = 4  # decodes and their logits come in multiples of this many rows


@dataclass
class Seq:
    """One request's token sequence and the index of its first scored token."""

    req: int
    tokens: list[int]
    start: int
    offset: int = 0  # position of tokens[0]: tokens before it are in the KV already (a kept prefix)


@dataclass
class Entry:
    """One token to evaluate: position, sequences it belongs to, and the (request, next
    token) pairs its logits must score (empty: no logits needed). Group -1 is padding."""

    token: int
    pos: int
    seq_ids: tuple[int, ...]
    targets: list[tuple[int, int]] = field(default_factory=list)
    group: int = 0


@dataclass(frozen=True, eq=False)
class Segment:
    """Entries that take consecutive KV cells, starting at a position that is a multiple of
    `align` (a shared prefix comes before the choices that continue it), or right after the
    last cell of a kept prefix that ends mid-block."""

    entries: list[Entry]


@dataclass(frozen=True)
class Chunk:
    """One `llama_decode`: its rows and, per row, whether logits are requested."""

    entries: list[Entry]
    logits: list[bool]


def shared_len(group: list[Seq]) -> int:
    """Length of the longest common token prefix of the group's sequences."""
    if len(group) == 1:
        return len(group[0].tokens)
    first = group[0].tokens
    n = min(len(s.tokens) for s in group)
    for k in range(n):
        t = first[k]
        if any(s.tokens[k] != t for s in group[1:]):
            return k
    return n


@dataclass(frozen=True)
class Layout:
    """The aligned layout for one context: block size, decode size, sequence ids, pad token."""

    align: int
    n_batch: int
    n_seq_max: int
    pad_token: int

    def __post_init__(self) -> None:
        if self.align < 1 or self.n_batch % self.align or self.n_batch % ROWS:
            raise ValueError(f"n_batch ({self.n_batch}) must be a multiple of align ({self.align}) "
                             f"and of {ROWS}")
        if self.n_seq_max < 2:
            raise ValueError("the layout needs at least two sequence ids (one is the padding's)")

    def padding(self, cursor: int, pos: int = 0) -> int:
        """Rows of padding that bring the next segment, whose first position is `pos`, to a row
        equal to that position modulo align (a block boundary when it starts a sequence)."""
        return (pos - cursor) % self.align

    def rows(self, segments: list[Segment], base: int = 0) -> int:
        """Rows the aligned layout of `segments` takes, padding included, when its first row
        goes to KV cell `base`."""
        n = 0
        for seg in segments:
            n += self.padding(base + n, seg.entries[0].pos) + len(seg.entries)
        return n

    def group_segments(self, group: list[Seq], gi: int, first_id: int) -> list[Segment]:
        """Tokens to evaluate for one group: the shared prefix once, then each suffix.

        The logits at position p predict token p+1; a position is requested only when some
        sequence scores the token after it.
        """
        shared = shared_len(group)
        off = group[0].offset  # every sequence of a group starts at the same position
        if len(group) > 1:
            shared = max(0, shared - (off + shared) % self.align)  # shared in whole blocks only
        ids = tuple(range(first_id, first_id + len(group)))
        prefix = [Entry(token=t, pos=off + p, seq_ids=ids, group=gi)
                  for p, t in enumerate(group[0].tokens[:shared])]
        suffixes = [[Entry(token=s.tokens[p], pos=off + p, seq_ids=(ids[j],), group=gi)
                     for p in range(shared, len(s.tokens))] for j, s in enumerate(group)]
        by_key = {}
        for e in prefix + [e for suf in suffixes for e in suf]:
            for sid in e.seq_ids:
                by_key[(sid - first_id, e.pos - off)] = e
        for j, s in enumerate(group):
            for p in range(s.start - 1, len(s.tokens) - 1):
                by_key[(j, p)].targets.append((s.req, s.tokens[p + 1]))
        return [Segment(part) for part in [prefix, *suffixes] if part]

    def packs(self, groups: list[list[Seq]], base: int = 0
              ) -> Iterator[tuple[list[tuple[int, list[Seq]]], list[Segment]]]:
        """Greedily fill packs (yielded with their segments) whose aligned layout, from KV cell
        `base` on, fits one n_batch decode and n_seq_max - 1 sequences (the last id is the
        padding's); a group too big for one decode goes alone, over several decodes.

        A group that continues a kept prefix mid-block (its offset is not a multiple of align)
        opens a pack: its first token must take cell `base`, right after the prefix's last
        cell, so that the block they share is laid out as it would be alone."""
        pack: list[tuple[int, list[Seq]]] = []
        segs: list[Segment] = []
        seqs = 0
        for gi, g in enumerate(groups):
            mine = self.group_segments(g, gi, seqs)
            full = seqs + len(g) > self.n_seq_max - 1
            mid_block = g[0].offset % self.align != 0
            if pack and (full or mid_block or self.rows(segs + mine, base) > self.n_batch):
                yield pack, segs
                pack, seqs = [], 0
                mine = self.group_segments(g, gi, 0)  # sequence ids restart in a new pack
                segs = []
            pack.append((gi, g))
            segs += mine
            seqs += len(g)
        if pack:
            yield pack, segs

    def pad_entry(self, pos: int) -> Entry:
        """A padding row: its own sequence (the last id), attended to by nobody."""
        return Entry(token=self.pad_token, pos=pos, seq_ids=(self.n_seq_max - 1,), group=-1)

    def lay_out(self, segments: list[Segment], base: int = 0) -> list[Entry]:
        """The pack's entries in decode order, each segment padded so that every token's KV
        cell (`base` plus its index) equals its position modulo align."""
        entries: list[Entry] = []
        n_pad = 0  # the padding is one sequence, so its positions run on
        for seg in segments:
            pad = self.padding(base + len(entries), seg.entries[0].pos)
            entries.extend(self.pad_entry(n_pad + k) for k in range(pad))
            entries.extend(seg.entries)
            n_pad += pad
        return entries

    def chunks(self, entries: list[Entry]) -> Iterator[Chunk]:
        """Cut a laid-out pack into n_batch decodes, each padded to a multiple of ROWS rows
        and asking for logits at a multiple of ROWS rows (padding rows first, then rows of
        real tokens that need none), so every row goes through the same kernels. Only the last
        decode is padded at its end, so cells stay aligned."""
        n_pad = sum(e.group < 0 for e in entries)
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            extra_rows = -len(chunk) % ROWS
            chunk = chunk + [self.pad_entry(n_pad + k) for k in range(extra_rows)]
            n_pad += extra_rows
            want = [bool(e.targets) for e in chunk]
            extra = -sum(want) % ROWS
            for i in sorted(range(len(chunk)), key=lambda i: chunk[i].group >= 0):
                if extra == 0:
                    break
                if not want[i]:
                    want[i], extra = True, extra - 1
            yield Chunk(chunk, want)
