"""Read TensorFlow tensor-bundle checkpoints with numpy only (no TensorFlow import).

A TF2/TF1 "V2" checkpoint written by ``tf.train.Saver`` is a *tensor bundle*:

* ``<prefix>.index`` -- an immutable sorted string table in the LevelDB "table" layout.
  Keys are tensor names; the value of the empty key is a ``BundleHeaderProto`` and every
  other value is a ``BundleEntryProto`` (dtype, shape, shard_id, offset, size, crc32c).
* ``<prefix>.data-SSSSS-of-NNNNN`` -- the shards; each tensor is ``size`` raw little-endian
  bytes at ``offset`` in shard ``shard_id``.

The table is parsed here by hand: a 48-byte footer (two block handles and a magic number),
an index block whose values are block handles of the data blocks, and data blocks of
prefix-compressed entries (varint32 ``shared``, ``non_shared``, ``value_len``, key suffix,
value) followed by a restart array.  Protobuf messages are decoded by a minimal wire-format
reader (varint, fixed32/64 and length-delimited fields).

Integrity checks: the CRC32C of every table block (index and data blocks of the ``.index``
file, a few kilobytes) is always verified.  The per-tensor CRC32C stored in each
``BundleEntryProto`` is verified only when ``verify_data_crc=True``: it is computed in pure
Python (about a second per megabyte), so it is off by default; callers that pin the data
shard by SHA-256 (as :mod:`musicdiff.evaluation.embeddings.musicnn` does) get a stronger check anyway.

Only compression type 0 (uncompressed blocks, which TensorFlow's bundle writer always uses)
and numeric dtypes are supported; other cases raise ``ValueError``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_tf_bundle", "read_tf_bundle_entries", "BundleEntry"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c

# tensorflow/core/framework/types.proto DataType enum -> numpy little-endian dtype.
_TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


# --------------------------------------------------------------------------- crc32c
def _make_crc32c_table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask_crc(masked: int) -> int:
    # LevelDB/TF store crc32c values "masked": rot-right 15 plus a constant.
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------- wire readers
def _varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError(f"truncated varint while reading {what}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError(f"varint too long while reading {what}")


def _proto_fields(buf: bytes, what: str) -> list[tuple[int, int, object]]:
    """Decode one protobuf message into (field_number, wire_type, value) triples."""
    out = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, what)
        field, wtype = tag >> 3, tag & 7
        if wtype == 0:
            val, pos = _varint(buf, pos, what)
        elif wtype == 1:
            if pos + 8 > len(buf):
                raise ValueError(f"truncated fixed64 in {what}")
            (val,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wtype == 2:
            n, pos = _varint(buf, pos, what)
            if pos + n > len(buf):
                raise ValueError(f"truncated length-delimited field in {what}")
            val = buf[pos : pos + n]
            pos += n
        elif wtype == 5:
            if pos + 4 > len(buf):
                raise ValueError(f"truncated fixed32 in {what}")
            (val,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wtype} in {what}")
        out.append((field, wtype, val))
    return out


class BundleEntry:
    """Decoded ``BundleEntryProto``: where one tensor lives in the data shards."""

    __slots__ = ("name", "dtype", "shape", "shard_id", "offset", "size", "crc32c", "sliced")

    def __init__(self, name: str, raw: bytes):
        self.name = name
        self.dtype = 0
        self.shape: tuple[int, ...] = ()
        self.shard_id = 0
        self.offset = 0
        self.size = 0
        self.crc32c: int | None = None
        self.sliced = False
        what = f"bundle entry {name!r}"
        for field, _wt, val in _proto_fields(raw, what):
            if field == 1:
                self.dtype = int(val)  # type: ignore[arg-type]
            elif field == 2:
                self.shape = _decode_shape(val, what)  # type: ignore[arg-type]
            elif field == 3:
                self.shard_id = int(val)  # type: ignore[arg-type]
            elif field == 4:
                self.offset = int(val)  # type: ignore[arg-type]
            elif field == 5:
                self.size = int(val)  # type: ignore[arg-type]
            elif field == 6:
                self.crc32c = int(val)  # type: ignore[arg-type]
            elif field == 7:
                self.sliced = True

    def __repr__(self) -> str:
        return (
            f"BundleEntry({self.name!r}, dtype={self.dtype}, shape={self.shape}, "
            f"shard={self.shard_id}, offset={self.offset}, size={self.size})"
        )


def _decode_shape(buf: bytes, what: str) -> tuple[int, ...]:
    dims = []
    for field, _wt, val in _proto_fields(buf, what + " shape"):
        if field == 2:  # repeated Dim
            size = 0
            for f2, _w2, v2 in _proto_fields(val, what + " dim"):  # type: ignore[arg-type]
                if f2 == 1:
                    size = int(v2)  # type: ignore[arg-type]
                    if size >= 1 << 63:  # int64 stored as two's complement varint
                        size -= 1 << 64
            dims.append(size)
        elif field == 3 and val:
            raise ValueError(f"{what}: tensor of unknown rank")
    if any(d < 0 for d in dims):
        raise ValueError(f"{what}: negative dimension in shape {dims}")
    return tuple(dims)


# --------------------------------------------------------------------------- SSTable
def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER_LEN > len(data):
        raise ValueError(f"{path}: block handle ({offset}, {size}) runs past end of file")
    block = data[offset:end]
    ctype = data[end]
    (masked,) = struct.unpack_from("<I", data, end + 1)
    if _crc32c(block + bytes([ctype])) != _unmask_crc(masked):
        raise ValueError(f"{path}: CRC32C mismatch in table block at offset {offset}")
    if ctype != 0:
        raise ValueError(f"{path}: compressed table blocks (type {ctype}) are not supported")
    return block


def _block_entries(block: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise ValueError(f"{path}: table block too short")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise ValueError(f"{path}: corrupt restart array in table block")
    entries = []
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos, str(path))
        non_shared, pos = _varint(block, pos, str(path))
        vlen, pos = _varint(block, pos, str(path))
        if shared > len(key) or pos + non_shared + vlen > limit:
            raise ValueError(f"{path}: corrupt entry in table block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + vlen]))
        pos += vlen
    return entries


def _table_items(path: Path) -> list[tuple[bytes, bytes]]:
    data = path.read_bytes()
    if len(data) < _FOOTER_LEN:
        raise ValueError(f"{path}: too short to be a TensorFlow checkpoint index")
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
    if magic != _TABLE_MAGIC:
        raise ValueError(f"{path}: bad table magic number, not a TensorFlow checkpoint index")
    pos = 0
    _meta_off, pos = _varint(footer, pos, str(path))
    _meta_size, pos = _varint(footer, pos, str(path))
    idx_off, pos = _varint(footer, pos, str(path))
    idx_size, pos = _varint(footer, pos, str(path))
    index_block = _read_block(data, idx_off, idx_size, path)
    items: list[tuple[bytes, bytes]] = []
    for _last_key, handle in _block_entries(index_block, path):
        hpos = 0
        boff, hpos = _varint(handle, hpos, str(path))
        bsize, hpos = _varint(handle, hpos, str(path))
        items.extend(_block_entries(_read_block(data, boff, bsize, path), path))
    return items


# --------------------------------------------------------------------------- public API
def _index_path(prefix: str | Path) -> Path:
    if Path(prefix).is_dir():
        # A bundle saved with an empty basename ("<folder>/"): pathlib drops the separator.
        return Path(prefix) / ".index"
    prefix = str(prefix)
    if prefix.endswith(".index"):
        prefix = prefix[: -len(".index")]
    return Path(prefix + ".index")


def read_tf_bundle_entries(prefix: str | Path) -> tuple[int, dict[str, BundleEntry]]:
    """Parse ``<prefix>.index`` and return ``(num_shards, {tensor_name: BundleEntry})``.

    Raises ``FileNotFoundError`` if the index file is missing and ``ValueError`` if it is
    not a well-formed tensor-bundle index.
    """
    index = _index_path(prefix)
    if not index.is_file():
        raise FileNotFoundError(f"TensorFlow checkpoint index not found: {index}")
    num_shards = 1
    entries: dict[str, BundleEntry] = {}
    header_seen = False
    for key, value in _table_items(index):
        if key == b"":
            header_seen = True
            for field, _wt, val in _proto_fields(value, f"{index} header"):
                if field == 1:
                    num_shards = int(val)  # type: ignore[arg-type]
                elif field == 2 and val != 0:
                    raise ValueError(f"{index}: big-endian bundles are not supported")
            continue
        name = key.decode("utf-8")
        entries[name] = BundleEntry(name, value)
    if not header_seen:
        raise ValueError(f"{index}: no bundle header, not a TensorFlow V2 checkpoint")
    return num_shards, entries


def read_tf_bundle(
    prefix: str | Path, *, names: list[str] | None = None, verify_data_crc: bool = False
) -> dict[str, np.ndarray]:
    """Read every tensor (or only ``names``) of a TensorFlow V2 checkpoint as numpy arrays.

    Parameters
    ----------
    prefix:
        Checkpoint prefix: the path of the ``.index`` file without that suffix.  An existing
        directory is taken as ``"<folder>/"``, i.e. a bundle saved with an empty basename
        (``<folder>/.index``), since ``pathlib`` drops trailing separators.
    names:
        Optional subset of tensor names; a name absent from the bundle raises ``KeyError``.
    verify_data_crc:
        Also check each tensor's CRC32C (slow pure-Python loop, off by default).

    Returns
    -------
    dict mapping tensor name to a C-contiguous array of its stored dtype and shape
    (TensorFlow layouts, e.g. conv kernels are ``(kh, kw, in, out)``).

    Raises
    ------
    FileNotFoundError: the ``.index`` file or a data shard is missing.
    ValueError: malformed index, unsupported dtype/sliced tensor, size mismatch, CRC mismatch.
    """
    num_shards, entries = read_tf_bundle_entries(prefix)
    base = str(_index_path(prefix))[: -len(".index")]  # may end with a separator
    wanted = list(entries) if names is None else list(names)
    for n in wanted:
        if n not in entries:
            raise KeyError(f"tensor {n!r} not in checkpoint {base}.index")
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for name in wanted:
        e = entries[name]
        if e.sliced:
            raise ValueError(f"{base}: partitioned (sliced) tensor {name!r} is not supported")
        if e.dtype not in _TF_DTYPES:
            raise ValueError(f"{base}: tensor {name!r} has unsupported TF dtype enum {e.dtype}")
        if not 0 <= e.shard_id < num_shards:
            raise ValueError(f"{base}: tensor {name!r} names shard {e.shard_id} of {num_shards}")
        if e.shard_id not in shards:
            shard_path = Path(f"{base}.data-{e.shard_id:05d}-of-{num_shards:05d}")
            if not shard_path.is_file():
                raise FileNotFoundError(f"TensorFlow checkpoint data shard not found: {shard_path}")
            shards[e.shard_id] = shard_path.read_bytes()
        shard = shards[e.shard_id]
        dtype = _TF_DTYPES[e.dtype]
        count = int(np.prod(e.shape, dtype=np.int64)) if e.shape else 1
        if count * dtype.itemsize != e.size:
            raise ValueError(
                f"{base}: tensor {name!r} shape {e.shape} x {dtype} needs "
                f"{count * dtype.itemsize} bytes but the entry says {e.size}"
            )
        if e.offset + e.size > len(shard):
            raise ValueError(f"{base}: tensor {name!r} runs past the end of its data shard")
        raw = shard[e.offset : e.offset + e.size]
        if verify_data_crc and e.crc32c is not None:
            if _crc32c(raw) != _unmask_crc(e.crc32c):
                raise ValueError(f"{base}: CRC32C mismatch for tensor {name!r}")
        out[name] = np.frombuffer(raw, dtype=dtype).reshape(e.shape).copy()
    return out
