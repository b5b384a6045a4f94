"""tf.train.Example records in TFRecord files, written without TensorFlow or Apache Beam.

Why: importing TensorFlow costs ~3 s per worker, only to serialise a handful of string and int64
features. This module produces the same bytes on its own:

- the tf.train.Example message classes are built at import time from descriptors written here in
  code, mirroring tensorflow/core/example/{feature,example}.proto field for field, in a private
  DescriptorPool (never the default one, so it cannot clash with TensorFlow's registration when
  both are loaded in one process). Readers and tests use them; the writer does not need them.
- `ExampleEncoder` writes the protobuf wire format by hand (varints and length-delimited fields in
  the order `SerializeToString(deterministic=True)` uses: map entries sorted by key). It is several
  times faster than filling and serialising message objects, and tests/schemas/test_tfexample.py
  checks that its bytes equal TensorFlow's `tf.train.Example` framed by Beam's `_TFRecordUtil`.
- `tfrecord_frame` is TFRecord's framing: length, masked CRC32C of the length, data, masked
  CRC32C of the data (google_crc32c, already a dependency of apache-beam[gcp]); `read_tfrecords`
  reads it back, checking both CRCs, for source readers.
"""
from __future__ import annotations

import struct
from operator import index
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from flanforge.schemas.records import RECORD_FIELDS

__all__ = ["BytesList", "Example", "ExampleEncoder", "Feature", "Features", "FloatList", "Int64List", "read_tfrecords", "tfrecord_frame", "to_example"]

# --- tf.train.Example message classes -------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto


def _add_field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    type_: int,
    *,
    repeated: bool = False,
    type_name: str = "",
    oneof_index: int | None = None,
) -> descriptor_pb2.FieldDescriptorProto:
    field = message.field.add(name=name, number=number, type=type_, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = type_name
    if oneof_index is not None:
        field.oneof_index = oneof_index
    return field


def _file_protos() -> tuple[descriptor_pb2.FileDescriptorProto, descriptor_pb2.FileDescriptorProto]:
    """feature.proto and example.proto as TensorFlow declares them (the Example part of them)."""
    feature = descriptor_pb2.FileDescriptorProto(name="tensorflow/core/example/feature.proto", package="tensorflow", syntax="proto3")
    _add_field(feature.message_type.add(name="BytesList"), "value", 1, _F.TYPE_BYTES, repeated=True)
    _add_field(feature.message_type.add(name="FloatList"), "value", 1, _F.TYPE_FLOAT, repeated=True).options.packed = True
    int64_value = _add_field(feature.message_type.add(name="Int64List"), "value", 1, _F.TYPE_INT64, repeated=True)
    int64_value.options.packed = True
    int64_value.options.jstype = descriptor_pb2.FieldOptions.JS_STRING
    kind = feature.message_type.add(name="Feature")
    kind.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), 1):
        _add_field(kind, name, number, _F.TYPE_MESSAGE, type_name=".tensorflow." + type_name, oneof_index=0)  # oneof kind
    # map<string, Feature> feature = 1, spelled the way protobuf represents a map.
    features = feature.message_type.add(name="Features")
    _add_field(features, "feature", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".tensorflow.Features.FeatureEntry")
    entry = features.nested_type.add(name="FeatureEntry")
    _add_field(entry, "key", 1, _F.TYPE_STRING)
    _add_field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    entry.options.map_entry = True

    example = descriptor_pb2.FileDescriptorProto(
        name="tensorflow/core/example/example.proto", package="tensorflow", syntax="proto3", dependency=[feature.name]
    )
    _add_field(example.message_type.add(name="Example"), "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    return feature, example


_POOL = descriptor_pool.DescriptorPool()
for _proto in _file_protos():
    _POOL.AddSerializedFile(_proto.SerializeToString())


def _message_class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow." + name))


Example = _message_class("Example")
Features = _message_class("Features")
Feature = _message_class("Feature")
BytesList = _message_class("BytesList")
Int64List = _message_class("Int64List")
FloatList = _message_class("FloatList")


def to_example(record: Mapping[str, Any], message_class: Any = None) -> Any:
    """`record` as an Example message (filled in place; an empty string list stays a bytes_list).

    `message_class` may be another tf.train.Example class, TensorFlow's own for instance: the
    tests fill TF's message this way and compare its serialisation with ExampleEncoder's bytes."""
    example = (message_class or Example)()
    features = example.features.feature
    for f in RECORD_FIELDS:
        value = record[f.name]
        if f.kind == "int64":
            features[f.name].int64_list.value.append(value)
        elif f.kind == "string":
            features[f.name].bytes_list.value.append(value.encode("utf-8"))
        else:
            values = features[f.name].bytes_list
            values.SetInParent()
            values.value.extend(v.encode("utf-8") for v in value)
    return example


# --- TFRecord framing -----------------------------------------------------------------------------

_U64 = struct.Struct("<Q").pack
_U32 = struct.Struct("<I").pack
_crc32c: Callable[[bytes], int] = google_crc32c.value
_crc32c_extend: Callable[[int, bytes], int] = google_crc32c.extend


def _masked(crc: int) -> bytes:
    """TFRecord stores CRCs rotated and offset ("masked"), as 4 little-endian bytes."""
    return _U32((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def tfrecord_frame(data: bytes) -> bytes:
    """One TFRecord: uint64 LE length, masked CRC32C of those 8 bytes, data, masked CRC32C of data."""
    length = _U64(len(data))
    return length + _masked(_crc32c(length)) + data + _masked(_crc32c(data))


def read_tfrecords(f: BinaryIO) -> Iterator[bytes]:
    """The records of a TFRecord stream, checking both CRCs of each; ValueError at the first
    damaged frame (the lengths after it cannot be trusted), naming its byte offset."""
    offset = 0
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise ValueError(f"truncated record header at byte {offset}")
        length = head[:8]
        if _masked(_crc32c(length)) != head[8:]:
            raise ValueError(f"corrupt record length at byte {offset}")
        (size,) = struct.unpack("<Q", length)
        data = f.read(size)
        tail = f.read(4)
        if len(data) < size or len(tail) < 4:
            raise ValueError(f"truncated record at byte {offset}")
        if _masked(_crc32c(data)) != tail:
            raise ValueError(f"corrupt record data at byte {offset}")
        yield data
        offset += 16 + size


# --- hand-written wire format ---------------------------------------------------------------------


_ONE_BYTE = [bytes([n]) for n in range(0x80)]


def _varint(n: int) -> bytes:
    """Base-128 varint of n >= 0 (lengths are mostly below 128: one table lookup)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _delimited(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, varint length, body."""
    return tag + _varint(len(body)) + body


def _entry(key_field: bytes, kind_tag: bytes, list_body: bytes) -> bytes:
    """A Features.feature map entry, {key, value: Feature{kind: list}}, as Features field 1."""
    return _delimited(b"\x0a", key_field + _delimited(b"\x12", _delimited(kind_tag, list_body)))


_BYTES_LIST, _INT64_LIST = b"\x0a", b"\x1a"  # tags of Feature.bytes_list = 1 and Feature.int64_list = 3
_MAX_CACHED = 16384  # entries per cache, so that no input can grow one without bound


class _Prefixes(dict):
    """Payload length n -> the bytes that `make` puts in front of an n-byte payload.

    Everything before the innermost payload of a nested length-delimited message (tags, lengths,
    the map key) depends only on the payload's length, so it is made once per distinct length and
    encoding a value is one dict lookup and one concatenation instead of several varint calls.
    """

    def __init__(self, make: Callable[[bytes], bytes]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, n: int) -> bytes:
        whole = self._make(bytes(n))
        prefix = whole[: len(whole) - n]
        if len(self) < _MAX_CACHED:
            self[n] = prefix
        return prefix


class _Int64Entries(dict):
    """An int64 value -> its whole map entry (answer_index takes few distinct values)."""

    def __init__(self, key_field: bytes) -> None:
        super().__init__()
        self._key_field = key_field

    def __missing__(self, value: int) -> bytes:
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"int64 value out of range: {value}")
        packed = _varint(value & 0xFFFFFFFFFFFFFFFF)  # two's complement: a negative value takes 10 bytes
        entry = _entry(self._key_field, _INT64_LIST, _delimited(b"\x0a", packed))  # Int64List.value = 1, packed
        if len(self) < _MAX_CACHED:
            self[value] = entry
        return entry


def _bytes_list_body(values: Sequence[str]) -> bytes:
    """BytesList.value = 1 for each value (empty for an empty list: still a bytes_list, as SetInParent gives)."""
    out: list[bytes] = []
    for value in values:
        data = value.encode("utf-8")
        out += (b"\x0a", _varint(len(data)), data)
    return b"".join(out)


def _column_encoder(name: str, kind: str) -> Callable[[Sequence[Any]], list[bytes]]:
    """A function from one field's column of values to that field's map entry for each record."""
    key_field = _delimited(b"\x0a", name.encode("utf-8"))  # FeatureEntry.key = 1
    if kind == "int64":
        entries = _Int64Entries(key_field)
        return lambda column: [entries[index(v)] for v in column]
    if kind == "string":
        before_value = _Prefixes(lambda value: _entry(key_field, _BYTES_LIST, _delimited(b"\x0a", value)))
        return lambda column: [before_value[len(data)] + data for data in [s.encode("utf-8") for s in column]]
    before_list = _Prefixes(lambda body: _entry(key_field, _BYTES_LIST, body))
    return lambda column: [before_list[len(body)] + body for body in map(_bytes_list_body, column)]


class _FrameHeads(dict):
    """Length n of an Example's Features -> (TFRecord length + its masked CRC + Example.features
    tag and length, CRC32C of that tag and length), so a record costs one CRC over its body."""

    def __missing__(self, n: int) -> tuple[bytes, int]:
        head = b"\x0a" + _varint(n)  # Example.features = 1
        length = _U64(len(head) + n)
        frame_head = (length + _masked(_crc32c(length)) + head, _crc32c(head))
        if len(self) < _MAX_CACHED:
            self[n] = frame_head
        return frame_head


class ExampleEncoder:
    """Records (RECORD_FIELDS) -> a TFRecord file of tf.train.Example, byte-identical to TensorFlow's.

    Column-oriented because shards arrive as columns (pyarrow `to_pylist()`): each field's map
    entries are made for a whole column in one comprehension, then each record's entries are
    joined in key order (the order deterministic serialisation uses) and framed. Keep one encoder
    per worker: its caches of length prefixes are what make it fast.
    """

    def __init__(self) -> None:
        fields = sorted(RECORD_FIELDS, key=lambda f: f.name.encode("utf-8"))  # map entries sorted by key
        self._names = [f.name for f in fields]
        self._column_encoders = [_column_encoder(f.name, f.kind) for f in fields]
        self._frame_heads = _FrameHeads()

    def encode_columns(self, columns: Mapping[str, Sequence[Any]], n: int) -> bytes:
        """A TFRecord file's bytes from n records given as columns (field name -> n values)."""
        encoded = []
        for name, encode_column in zip(self._names, self._column_encoders):
            column = columns[name]
            if len(column) != n:
                raise ValueError(f"column {name!r} has {len(column)} values, expected {n}")
            encoded.append(encode_column(column))
        frame_heads, crc32c_extend, mask = self._frame_heads, _crc32c_extend, _masked
        out: list[bytes] = []
        for entries in zip(*encoded):
            features = b"".join(entries)
            frame_head, head_crc = frame_heads[len(features)]
            out += (frame_head, features, mask(crc32c_extend(head_crc, features)))
        return b"".join(out)

    def encode(self, records: Iterable[Mapping[str, Any]]) -> bytes:
        """A TFRecord file's bytes from records given as dicts."""
        records = list(records)
        return self.encode_columns({name: [r[name] for r in records] for name in self._names}, len(records))
