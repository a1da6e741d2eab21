"""Frames: the events of a time range as one table over several blocks.

A :class:`Frame` stitches slices of day blocks together and answers columns, masks and
property lookups for the whole range without copying more than a query asks for; a
:class:`VisitorSpace` numbers the distinct visitors of the frame's blocks so exact distinct
counts are sorts over small integers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from appliance.budget import check_budget
from appliance.events.blocks import SCALARS, Block


def _codes_in(accepted: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``accepted[codes]``: whether each row's code is an accepted one. A filter usually
    accepts one value or a few: comparing the small codes with each is several times faster
    than gathering through them (numpy widens every code to a 64-bit index first)."""
    chosen = np.flatnonzero(accepted)
    if len(chosen) == 0:
        return np.zeros(len(codes), bool)
    if len(chosen) == len(accepted):
        return np.ones(len(codes), bool)
    if len(chosen) <= 4:
        out = codes == chosen[0]
        for code in chosen[1:].tolist():
            out |= codes == code
        return out
    return accepted[codes]


class VisitorSpace:
    """The distinct visitors of a frame's blocks, numbered: block ``b``'s local visitor code
    ``c`` is frame code ``canonical[offset[b] + c]``. Anonymous visitor ids change daily, so
    blocks rarely share a visitor; the few that do are found with one sort of the blocks'
    (already sorted) dictionaries and mapped to the first block's code."""

    def __init__(self, blocks: list[Block]) -> None:
        dictionaries = [block.visitor_dictionary() for block in blocks]
        sizes = [len(d) for d in dictionaries]
        self.offsets = np.cumsum([0, *sizes])[:-1].astype(np.int64)
        self.size = int(sum(sizes))
        self._dictionaries = dictionaries
        self._every: np.ndarray | None = None
        self.canonical: np.ndarray | None = None
        if len(dictionaries) > 1 and self.size:
            # each dictionary is sorted: a stable sort (timsort) merges the runs, 2-3x faster;
            # stable, so each run of one hash starts with its first block's code, and every
            # code of the run maps to that one (one pass: at the seed's month most visitors
            # come back on other days, and a search per block for each of them took seconds)
            every = np.concatenate(dictionaries)
            order = np.argsort(every, kind="stable")
            merged = every[order]
            same = merged[1:] == merged[:-1]
            if same.any():
                starts = np.flatnonzero(np.concatenate([[True], ~same]))
                run = np.repeat(starts, np.diff(np.append(starts, self.size)))
                canonical = np.empty(self.size, np.int64)
                canonical[order] = order[run]
                self.canonical = canonical
                self._every = every

    def codes(self, index: int, local: np.ndarray) -> np.ndarray:
        """Frame codes of block ``index``'s local visitor codes."""
        codes = local.astype(np.int64) + self.offsets[index]
        return self.canonical[codes] if self.canonical is not None else codes

    def hashes(self, codes: np.ndarray) -> np.ndarray:
        """The visitor hashes of frame codes."""
        if not self.size:
            return np.zeros(len(codes), np.uint64)
        if self._every is None:
            self._every = np.concatenate(self._dictionaries)
        return self._every[codes]

    def count(self, codes: np.ndarray) -> int:
        """How many distinct visitors ``codes`` holds."""
        if not len(codes):
            return 0
        if len(codes) * 16 < self.size:
            ordered = np.sort(codes)
            return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1
        seen = np.zeros(self.size, bool)
        seen[codes] = True
        return int(np.count_nonzero(seen))

    def count_groups(self, groups: np.ndarray, codes: np.ndarray) -> dict[int, int]:
        """For each group id, how many distinct visitors it has; ``groups`` non-decreasing."""
        if not len(groups):
            return {}
        bounds = np.flatnonzero(np.diff(groups)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(groups)]])
        return {int(groups[s]): self.count(codes[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)}


class Frame:
    """Events of a period: slices of day blocks, read column by column and concatenated."""

    def __init__(self, parts: list[tuple[Block, int, int]], spaces: Callable[[list[Block]], VisitorSpace] | None = None) -> None:
        self.parts = parts
        self.size = sum(hi - lo for _, lo, hi in parts)
        self._cache: dict[str, np.ndarray] = {}
        self._space: VisitorSpace | None = None
        self._spaces = spaces or VisitorSpace
        self.key = tuple((b.site, b.day, b.identity, lo, hi) for b, lo, hi in parts)
        self.span: tuple[int, int] | None = None  # the time range asked for (ColumnStore.frame)

    def column(self, name: str) -> np.ndarray:
        """A scalar column (``ts``, ``visitor``, ``kind``...) or a string field's ids."""
        found = self._cache.get(name)
        if found is None:
            if name in SCALARS:
                pieces = [block.scalar(name)[lo:hi] for block, lo, hi in self.parts]
                dtype = SCALARS[name]
            else:
                pieces = [block.ids(name)[lo:hi] for block, lo, hi in self.parts]
                dtype = np.dtype(np.uint32)
            found = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
            self._cache[name] = found
        return found

    @property
    def visitors(self) -> VisitorSpace:
        if self._space is None:
            self._space = self._spaces([block for block, _, _ in self.parts])
        return self._space

    def visitor_codes(self) -> np.ndarray:
        """Per row, its visitor as a frame code (see :class:`VisitorSpace`)."""
        found = self._cache.get("visitor codes")
        if found is None:
            space = self.visitors
            pieces = [space.codes(i, block.visitor_codes()[lo:hi]) for i, (block, lo, hi) in enumerate(self.parts)]
            found = self._cache["visitor codes"] = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        return found

    def visitor_codes_of(self, rows: np.ndarray) -> np.ndarray:
        """The frame visitor codes of the boolean ``rows``, gathered block by block."""
        if "visitor codes" in self._cache:
            return self._cache["visitor codes"][rows]
        space = self.visitors
        pieces = []
        start = 0
        for index, (block, lo, hi) in enumerate(self.parts):
            chosen = rows[start : start + hi - lo]
            start += hi - lo
            if chosen.any():
                pieces.append(space.codes(index, block.visitor_codes_at(np.flatnonzero(chosen) + lo)))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)

    def values_at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """``column(name)[rows]`` (a boolean mask or row numbers), gathered block by block
        without joining the whole column."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, np.int64)
        found = self._cache.get(name)
        if found is not None:
            return found[rows]
        if len(self.parts) == 1:  # one block (a day's walk): gathered in any order, nothing sorted
            block, lo, _ = self.parts[0]
            return _gathered(name, block, rows + lo).astype(SCALARS.get(name, np.dtype(np.uint32)), copy=False)
        order = None
        if len(rows) > 1 and (np.diff(rows) < 0).any():
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
        starts = np.cumsum([0] + [hi - lo for _, lo, hi in self.parts])
        bounds = np.searchsorted(rows, starts)
        pieces = []
        for index, (block, lo, _) in enumerate(self.parts):
            local = rows[bounds[index] : bounds[index + 1]] - starts[index] + lo
            if len(local):
                pieces.append(_gathered(name, block, local))
        dtype = SCALARS.get(name, np.dtype(np.uint32))
        out = np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype)
        if order is not None:
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def mask(self, name: str, accept: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Rows whose string field ``name`` is accepted; ``accept(distinct ids) -> bool array``
        is called once per block on that block's dictionary, never per row."""
        pieces = []
        for block, lo, hi in self.parts:
            check_budget()
            dictionary, codes = block.dictionary(name)
            pieces.append(_codes_in(accept(dictionary), codes[lo:hi]))
        return np.concatenate(pieces) if pieces else np.zeros(0, bool)

    def prop_mask(self, key_ids: Iterable[int], accept: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """Rows with a property whose key is in ``key_ids`` and whose value is accepted
        (any value when ``accept`` is None)."""
        keys = np.fromiter(key_ids, np.uint32)
        pieces = []
        for block, lo, hi in self.parts:
            check_budget()
            out = np.zeros(hi - lo, bool)
            rows, prop_keys, prop_values = block.props()
            if len(rows) and len(keys):
                chosen = np.isin(prop_keys, keys)
                if accept is not None and chosen.any():
                    values = prop_values[chosen]
                    distinct, inverse = np.unique(values, return_inverse=True)
                    chosen[chosen] = accept(distinct)[inverse]
                hit = rows[chosen].astype(np.int64)
                hit = hit[(hit >= lo) & (hit < hi)] - lo
                out[hit] = True
            pieces.append(out)
        return np.concatenate(pieces) if pieces else np.zeros(0, bool)


def _gathered(name: str, block, rows: np.ndarray) -> np.ndarray:
    """Field ``name``'s values at a block's ``rows`` (its own row numbers, in any order)."""
    if name == "visitor":
        return block.visitor_dictionary()[block.visitor_codes()[rows]]
    if name in SCALARS:
        return block.scalar(name)[rows]
    dictionary, codes = block.dictionary(name)
    return dictionary[codes[rows]]
