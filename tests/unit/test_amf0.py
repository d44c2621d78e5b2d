"""AMF0: byte-exact vectors both ways, round trips, truncation, garbage, limits."""

from __future__ import annotations

import copy
import math
import pickle
import struct
from datetime import datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmprelay.errors import AMFError, ProtocolError
from rtmprelay.rtmp import amf0
from rtmprelay.rtmp.amf0 import (
    UNDEFINED,
    UNSUPPORTED,
    ECMAArray,
    TypedObject,
    decode,
    decode_all,
    encode,
    encode_values,
)

UTC = timezone.utc


def num(value: float) -> bytes:
    return b"\x00" + struct.pack(">d", value)


# --- vectors: (python value, exact bytes); encode gives the bytes, decode the value

VECTORS = [
    (0.0, bytes.fromhex("00 0000000000000000")),
    (1.0, bytes.fromhex("00 3ff0000000000000")),
    (-2.5, bytes.fromhex("00 c004000000000000")),
    (float("inf"), bytes.fromhex("00 7ff0000000000000")),
    (True, b"\x01\x01"),
    (False, b"\x01\x00"),
    ("", b"\x02\x00\x00"),
    ("hello", b"\x02\x00\x05hello"),
    ("é", b"\x02\x00\x02\xc3\xa9"),
    ({}, b"\x03\x00\x00\x09"),
    ({"a": 1.0}, b"\x03\x00\x01a" + num(1.0) + b"\x00\x00\x09"),
    (None, b"\x05"),
    (UNDEFINED, b"\x06"),
    (ECMAArray(), b"\x08\x00\x00\x00\x00\x00\x00\x09"),
    (
        ECMAArray({"duration": 0.0, "width": 1280.0}),
        b"\x08\x00\x00\x00\x02"
        b"\x00\x08duration" + num(0.0) + b"\x00\x05width" + num(1280.0) + b"\x00\x00\x09",
    ),
    ([], b"\x0a\x00\x00\x00\x00"),
    ([1.0, "a", None], b"\x0a\x00\x00\x00\x03" + num(1.0) + b"\x02\x00\x01a\x05"),
    (datetime(1970, 1, 1, tzinfo=UTC), bytes.fromhex("0b 0000000000000000 0000")),
    # 2020-01-01T00:00:00Z = 1577836800000 ms
    (datetime(2020, 1, 1, tzinfo=UTC), b"\x0b" + struct.pack(">d", 1577836800000.0) + b"\0\0"),
    (
        datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        b"\x0b" + struct.pack(">d", -1.0) + b"\0\0",
    ),
    (UNSUPPORTED, b"\x0d"),
    (
        TypedObject("Foo", {"x": True}),
        b"\x10\x00\x03Foo\x00\x01x\x01\x01\x00\x00\x09",
    ),
    (TypedObject("", {}), b"\x10\x00\x00\x00\x00\x09"),
    (
        {"o": {"l": [ECMAArray({"k": UNDEFINED})]}},
        b"\x03\x00\x01o\x03\x00\x01l\x0a\x00\x00\x00\x01"
        b"\x08\x00\x00\x00\x01\x00\x01k\x06\x00\x00\x09"
        b"\x00\x00\x09\x00\x00\x09",
    ),
]


def same(original, decoded) -> bool:
    """Equal, and of the type a decode of ``original``'s encoding must give."""
    if isinstance(original, bool):
        return type(decoded) is bool and original == decoded
    if isinstance(original, (int, float)):
        if type(decoded) is not float:
            return False
        if isinstance(original, float) and math.isnan(original):
            return math.isnan(decoded)
        return original == decoded
    if isinstance(original, str):
        return type(decoded) is str and original == decoded
    if original is None or original is UNDEFINED or original is UNSUPPORTED:
        return decoded is original
    if isinstance(original, datetime):
        return type(decoded) is datetime and decoded.tzinfo is UTC and original == decoded
    if isinstance(original, TypedObject):
        return (
            type(decoded) is TypedObject
            and original.class_name == decoded.class_name
            and same(original.members, decoded.members)
        )
    if isinstance(original, dict):
        wanted = ECMAArray if isinstance(original, ECMAArray) else dict
        return (
            type(decoded) is wanted
            and list(original) == list(decoded)
            and all(same(original[key], decoded[key]) for key in original)
        )
    if isinstance(original, (list, tuple)):
        return (
            type(decoded) is list
            and len(original) == len(decoded)
            and all(same(a, b) for a, b in zip(original, decoded))
        )
    raise AssertionError(f"unexpected {original!r}")


@pytest.mark.parametrize(("value", "data"), VECTORS)
def test_encode_vector(value, data):
    assert encode(value) == data


@pytest.mark.parametrize(("value", "data"), VECTORS)
def test_decode_vector(value, data):
    decoded, offset = decode(data)
    assert offset == len(data)
    assert same(value, decoded)


@pytest.mark.parametrize(("value", "data"), VECTORS)
def test_every_strict_prefix_of_a_vector_raises_amf_error(value, data):
    for cut in range(len(data)):
        with pytest.raises(AMFError):
            decode(data[:cut])


@pytest.mark.parametrize(("value", "data"), VECTORS)
def test_decode_vector_with_trailing_bytes_and_offset(value, data):
    buffer = b"\xffJUNK" + data + b"\x05\x06trailing"
    decoded, offset = decode(buffer, 5)
    assert offset == 5 + len(data)
    assert same(value, decoded)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_bytes_like(kind):
    data = encode_values(["onStatus", 0.0, None, {"level": "status"}])
    assert decode_all(kind(data)) == ["onStatus", 0.0, None, {"level": "status"}]
    assert decode(kind(data), 11) == (0.0, 20)


def test_decode_accepts_other_memoryview_formats():
    data = memoryview(bytearray(b"\x02\x00\x02hi")).cast("b")
    assert decode(data) == ("hi", 5)


def test_ffmpeg_connect_command():
    # What ffmpeg's rtmpproto.c gen_connect puts on the wire (first fields).
    wire = (
        b"\x02\x00\x07connect"
        b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
        b"\x03"
        b"\x00\x03app\x02\x00\x04live"
        b"\x00\x04type\x02\x00\x0anonprivate"
        b"\x00\x08flashVer\x02\x00\x1fFMLE/3.0 (compatible; Lavf61.1)"
        b"\x00\x05tcUrl\x02\x00\x1artmp://localhost:1935/live"
        b"\x00\x00\x09"
    )
    values = [
        "connect",
        1,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; Lavf61.1)",
            "tcUrl": "rtmp://localhost:1935/live",
        },
    ]
    assert encode_values(values) == wire
    assert decode_all(wire) == values
    name, offset = decode(wire)
    assert (name, offset) == ("connect", 10)
    assert decode(wire, offset) == (1.0, 19)


def test_set_data_frame_on_metadata():
    wire = (
        b"\x02\x00\x0d@setDataFrame\x02\x00\x0aonMetaData"
        b"\x08\x00\x00\x00\x03"
        b"\x00\x08duration" + num(0.0)
        + b"\x00\x0cvideocodecid" + num(7.0)
        + b"\x00\x07encoder\x02\x00\x0dLavf61.1.100\x00"
        + b"\x00\x00\x09"
    )
    metadata = ECMAArray(duration=0.0, videocodecid=7.0, encoder="Lavf61.1.100\x00")
    assert encode_values(["@setDataFrame", "onMetaData", metadata]) == wire
    decoded = decode_all(wire)
    assert decoded == ["@setDataFrame", "onMetaData", metadata]
    assert type(decoded[2]) is ECMAArray


# --- numbers, strings, dates ---------------------------------------------------


def test_ints_encode_as_numbers_and_bool_is_not_an_int():
    assert encode(3) == num(3.0)
    assert encode(-(2**53)) == num(-(2.0**53))
    assert encode(True) == b"\x01\x01"
    assert decode(encode(3)) == (3.0, 9)
    assert type(decode(encode(3))[0]) is float


def test_int_subclasses_encode_by_their_base():
    import enum

    class Code(enum.IntEnum):
        OK = 2

    assert encode(Code.OK) == num(2.0)


def test_nonzero_boolean_byte_is_true():
    assert decode(b"\x01\x05") == (True, 2)


def test_nan_round_trips_bit_exact():
    data = num(float("nan"))
    value, _ = decode(data)
    assert math.isnan(value)
    assert encode(value) == data


def test_string_switches_to_long_string_above_65535_bytes():
    exact = "x" * 0xFFFF
    assert encode(exact)[:3] == b"\x02\xff\xff"
    assert len(encode(exact)) == 3 + 0xFFFF
    longer = "x" * 0x10000
    assert encode(longer)[:5] == b"\x0c\x00\x01\x00\x00"
    # counted in UTF-8 bytes, not characters
    accented = "é" * 0x8000  # 65536 bytes
    assert encode(accented)[:5] == b"\x0c\x00\x01\x00\x00"
    for text in (exact, longer, accented):
        assert decode(encode(text)) == (text, len(encode(text)))


def test_long_string_decodes_even_when_short():
    assert decode(b"\x0c\x00\x00\x00\x02hi") == ("hi", 7)


def test_xml_document_decodes_as_string():
    assert decode(b"\x0f\x00\x00\x00\x04<a/>") == ("<a/>", 9)


def test_date_ignores_timezone_field_and_is_utc():
    data = b"\x0b" + struct.pack(">d", 1577836800000.0) + struct.pack(">h", -120)
    value, offset = decode(data)
    assert offset == 11
    assert value == datetime(2020, 1, 1, tzinfo=UTC)
    assert value.tzinfo is UTC


def test_date_encoding_of_naive_and_other_zones():
    plus_two = timezone(timedelta(hours=2))
    expected = b"\x0b" + struct.pack(">d", 1577836800000.0) + b"\0\0"
    assert encode(datetime(2020, 1, 1, 2, 0, tzinfo=plus_two)) == expected
    assert encode(datetime(2020, 1, 1)) == expected  # naive is taken as UTC


@pytest.mark.parametrize("milliseconds", [float("nan"), float("inf"), -float("inf"), 1e300])
def test_impossible_dates_raise(milliseconds):
    data = b"\x0b" + struct.pack(">d", milliseconds) + b"\0\0"
    with pytest.raises(AMFError) as info:
        decode(data)
    assert info.value.where == "offset 1"
    assert "date" in info.value.what


def test_invalid_utf8_names_the_offset():
    with pytest.raises(AMFError) as info:
        decode(b"\x02\x00\x03a\xffb")
    assert info.value.where == "offset 4"
    assert "invalid UTF-8 in string" in info.value.what


def test_amf_error_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode(b"\x04")


# --- objects and arrays ----------------------------------------------------------


def test_ecma_array_count_is_only_a_hint():
    entries = b"\x00\x01a" + num(1.0) + b"\x00\x01b" + num(2.0) + b"\x00\x00\x09"
    for count in (b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\x00\x00\x00\x64", b"\xff" * 4):
        data = b"\x08" + count + entries
        assert decode(data) == (ECMAArray(a=1.0, b=2.0), len(data))


def test_ecma_array_int_keys_encode_as_decimal_strings():
    assert encode(ECMAArray({0: "x", "k": "y"})) == (
        b"\x08\x00\x00\x00\x02\x00\x010\x02\x00\x01x\x00\x01k\x02\x00\x01y\x00\x00\x09"
    )


def test_empty_key_before_a_value_is_a_member():
    data = b"\x03\x00\x00\x05\x00\x00\x09"
    assert decode(data) == ({"": None}, 7)
    assert encode({"": None}) == data


def test_object_end_outside_object_raises():
    with pytest.raises(AMFError) as info:
        decode(b"\x0a\x00\x00\x00\x01\x09")
    assert info.value.where == "offset 5"
    # a key that is not empty may not be followed by the end marker either
    with pytest.raises(AMFError):
        decode(b"\x03\x00\x01a\x09")


def test_tuple_encodes_as_strict_array():
    assert encode((1, "a")) == encode([1, "a"])


def test_duplicate_keys_last_wins():
    data = b"\x03\x00\x01a\x05\x00\x01a\x06\x00\x00\x09"
    assert decode(data) == ({"a": UNDEFINED}, len(data))


# --- references ------------------------------------------------------------------

OBJECT_A = b"\x03\x00\x01a" + num(1.0) + b"\x00\x00\x09"


def test_reference_resolves_to_the_same_object():
    data = b"\x0a\x00\x00\x00\x02" + OBJECT_A + b"\x07\x00\x01"
    value, offset = decode(data)
    assert offset == len(data)
    assert value == [{"a": 1.0}, {"a": 1.0}]
    assert value[0] is value[1]


def test_references_count_every_complex_kind_in_begin_order():
    data = (
        b"\x0a\x00\x00\x00\x06"  # 0: this strict array
        + b"\x10\x00\x01T\x00\x00\x09"  # 1: typed object
        + b"\x08\x00\x00\x00\x00\x00\x00\x09"  # 2: ECMA array
        + b"\x0a\x00\x00\x00\x00"  # 3: strict array
        + b"\x07\x00\x01"
        + b"\x07\x00\x02"
        + b"\x07\x00\x03"
    )
    value, _ = decode(data)
    assert value[3] is value[0]
    assert value[4] is value[1]
    assert value[5] is value[2]
    assert value[3] == TypedObject("T", {})


def test_decode_all_shares_references_decode_does_not():
    data = OBJECT_A + b"\x07\x00\x00"
    first, second = decode_all(data)
    assert first is second
    with pytest.raises(AMFError, match="reference to object 0, but only 0 objects"):
        decode(data, len(OBJECT_A))


def test_cyclic_reference_raises():
    with pytest.raises(AMFError, match="still being decoded") as info:
        decode(b"\x0a\x00\x00\x00\x01\x07\x00\x00")
    assert info.value.where == "offset 5"
    with pytest.raises(AMFError, match="still being decoded"):
        decode(b"\x03\x00\x04self\x07\x00\x00\x00\x00\x09")


def test_dangling_reference_raises():
    with pytest.raises(AMFError) as info:
        decode(b"\x0a\x00\x00\x00\x01\x07\x00\x05")
    assert info.value.where == "offset 5"
    assert info.value.what == "reference to object 5, but only 1 objects so far"


def test_references_cannot_nest_past_max_depth():
    # object k holds a reference to object k-1: one level each in the bytes,
    # k levels in the value
    chain = [b"\x0a\x00\x00\x00\x00"]
    chain += [b"\x0a\x00\x00\x00\x01\x07" + struct.pack(">H", k) for k in range(64)]
    assert len(decode_all(b"".join(chain[:64]))) == 64  # the last one spans 64 levels
    with pytest.raises(AMFError, match="nesting deeper than 64 through reference") as info:
        decode_all(b"".join(chain))
    assert info.value.where == f"offset {5 + 63 * 8 + 5}"


def test_references_cannot_blow_up_exponentially():
    # object k holds 16 references to object k-1: 16**k values in 5 + 48k bytes
    chain = [b"\x0a\x00\x00\x00\x00"]
    chain += [b"\x0a\x00\x00\x00\x10" + (b"\x07" + struct.pack(">H", k)) * 16 for k in range(8)]
    with pytest.raises(AMFError, match="references expand"):
        decode_all(b"".join(chain))


# --- unsupported and unknown markers -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x04", "unsupported AMF0 type marker 0x04 (movieclip)"),
        (b"\x0e", "unsupported AMF0 type marker 0x0e (recordset)"),
        (b"\x12", "unknown AMF0 type marker 0x12"),
        (b"\xff", "unknown AMF0 type marker 0xff"),
        (b"", "truncated value: need 1 byte for the type marker, have 0"),
    ],
)
def test_bad_markers(data, what):
    with pytest.raises(AMFError) as info:
        decode(b"\x05" + data, 1)
    assert info.value.what == what
    assert info.value.where == "offset 1"


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (b"\x02\x00\x0cabc", "truncated string: need 12 bytes, have 3", "offset 3"),
        (b"\x02\x00", "truncated string length: need 2 bytes, have 1", "offset 1"),
        (b"\x00\x3f\xf0", "truncated number: need 8 bytes, have 2", "offset 1"),
        (b"\x0c\x00\x00\x01\x00ab", "truncated long string: need 256 bytes, have 2", "offset 5"),
        (b"\x03\x00\x01a", "truncated value: need 1 byte for the type marker, have 0",
         "offset 4"),
        (b"\x03\x00\x01a\x05\x00", "truncated member name length: need 2 bytes, have 1",
         "offset 5"),
        (b"\x0b\x00", "truncated date: need 10 bytes, have 1", "offset 1"),
    ],
)
def test_truncation_messages(data, what, where):
    with pytest.raises(AMFError) as info:
        decode(data)
    assert (info.value.what, info.value.where) == (what, where)


# --- limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x03\x00\x01a" * 10000 + b"\x05",
        b"\x0a\x00\x00\x00\x01" * 10000 + b"\x05",
        b"\x08\x00\x00\x00\x01\x00\x01a" * 10000 + b"\x05",
        b"\x10\x00\x01T\x00\x01a" * 10000 + b"\x05",
        # AMF0 arrays, then an AVM+ value of AMF3 arrays: the depth carries on
        b"\x0a\x00\x00\x00\x01" * 40 + b"\x11" + b"\x09\x03\x01" * 10000 + b"\x01",
    ],
    ids=["object", "strict-array", "ecma-array", "typed-object", "amf0-then-amf3"],
)
def test_deep_nesting_raises_amf_error(data):
    with pytest.raises(AMFError) as info:
        decode(data)
    assert info.value.what == "nesting deeper than 64"
    with pytest.raises(AMFError, match="nesting deeper than 200"):
        decode(data, max_depth=amf0.MAX_DEPTH)


def test_max_depth_is_honoured_exactly():
    three = b"\x0a\x00\x00\x00\x01" * 3 + b"\x05"
    assert decode(three, max_depth=3) == ([[[None]]], len(three))
    with pytest.raises(AMFError, match="nesting deeper than 2") as info:
        decode(three, max_depth=2)
    assert info.value.where == "offset 10"
    assert decode(b"\x02\x00\x00", max_depth=0) == ("", 3)


@pytest.mark.parametrize("max_depth", [-1, amf0.MAX_DEPTH + 1])
def test_max_depth_out_of_range_is_a_programming_error(max_depth):
    with pytest.raises(ValueError):
        decode(b"\x05", max_depth=max_depth)


def test_offset_out_of_range_is_a_programming_error():
    with pytest.raises(ValueError):
        decode(b"\x05", 2)
    with pytest.raises(ValueError):
        decode(b"\x05", -1)


def test_huge_claimed_count_fails_fast():
    data = b"\x0a\xff\xff\xff\xff" + b"\x05" * 5
    with pytest.raises(AMFError) as info:
        decode(data)
    assert info.value.what == "strict array claims 4294967295 items but only 5 bytes are left"
    assert info.value.where == "offset 1"


def test_huge_claimed_string_length_fails_fast():
    with pytest.raises(AMFError, match="need 4294967295 bytes, have 1"):
        decode(b"\x0c\xff\xff\xff\xffx")


def test_bytearray_can_be_resized_after_an_error():
    buffer = bytearray(b"\x02\x00\x05ab")
    with pytest.raises(AMFError):
        decode(buffer)
    buffer.extend(b"cde")  # no BufferError: the view was released
    assert decode(buffer) == ("abcde", 8)


# --- encoding errors ---------------------------------------------------------------


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), 1j, {"k": b"v"}])
def test_unencodable_types_raise_type_error(value):
    with pytest.raises(TypeError):
        encode(value)


@pytest.mark.parametrize(
    "value", [{1: "x"}, {None: 1}, TypedObject("T", {2: 3}), ECMAArray({True: 1})]
)
def test_non_string_keys_raise_type_error(value):
    with pytest.raises(TypeError):
        encode(value)


def test_cycles_and_deep_values_raise_value_error():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        encode(cyclic)
    looped: dict = {}
    looped["self"] = looped
    with pytest.raises(ValueError):
        encode(looped)
    deep: list = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(ValueError):
        encode(deep)


def test_overlong_key_raises_value_error():
    with pytest.raises(ValueError):
        encode({"k" * 0x10000: 1})


# --- the values themselves -----------------------------------------------------------


def test_undefined_is_a_falsy_singleton():
    assert repr(UNDEFINED) == "UNDEFINED"
    assert not UNDEFINED
    assert UNDEFINED is not None
    assert copy.deepcopy(UNDEFINED) is UNDEFINED
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED
    assert repr(UNSUPPORTED) == "UNSUPPORTED"
    assert not UNSUPPORTED


def test_ecma_array_is_a_dict():
    array = ECMAArray(a=1)
    assert isinstance(array, dict)
    assert array == {"a": 1}
    assert repr(array) == "ECMAArray({'a': 1})"


def test_typed_object_is_frozen():
    obj = TypedObject("Foo", {"x": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        obj.class_name = "Bar"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TypedObject(1, {})  # type: ignore[arg-type]


def test_no_twisted_in_the_core():
    import rtmprelay.rtmp.amf0 as module0
    import rtmprelay.rtmp.amf3 as module3

    for module in (module0, module3):
        source = open(module.__file__, encoding="utf-8").read()
        assert "twisted" not in source


# --- properties ------------------------------------------------------------------------

keys = st.text(max_size=8)
ms_datetimes = st.datetimes(timezones=st.just(UTC)).map(
    lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000)
)
short_scalars = (
    st.none()
    | st.just(UNDEFINED)
    | st.just(UNSUPPORTED)
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | ms_datetimes
)
# 65532..65540 UTF-8 bytes: both sides of the string / long string boundary
long_strings = st.integers(0, 4).map(lambda extra: "é" * (32766 + extra))


def trees(scalars):
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(keys, children, max_size=4)
        | st.dictionaries(keys, children, max_size=4).map(ECMAArray)
        | st.builds(TypedObject, keys, st.dictionaries(keys, children, max_size=4)),
        max_leaves=16,
    )


values = trees(short_scalars | long_strings)
short_values = trees(short_scalars)


@given(values)
@settings(deadline=None, max_examples=60)
def test_round_trip(value):
    data = encode(value)
    decoded, offset = decode(data + b"\x05\x02\x00\x01x")
    assert offset == len(data)
    assert same(value, decoded)
    assert encode(decoded) == data


@given(trees(short_scalars | st.floats(allow_nan=True)))
def test_round_trip_bytes_with_nan(value):
    data = encode(value)
    assert encode(decode(data)[0]) == data


@given(st.lists(short_values, min_size=1, max_size=3))
@settings(deadline=None)
def test_every_strict_prefix_raises_amf_error(items):
    data = encode_values(items)
    assert [same(a, b) for a, b in zip(items, decode_all(data))] == [True] * len(items)
    for cut in range(len(data)):
        prefix = data[:cut]
        offset = 0
        with pytest.raises(AMFError):
            for _ in items:
                _, offset = decode(prefix, offset)


@given(st.binary(max_size=64))
def test_garbage_raises_only_amf_error(data):
    try:
        decode_all(data)
    except AMFError:
        pass


pieces = st.sampled_from(
    [
        b"\x03", b"\x08\x00\x00\x00\x01", b"\x0a\x00\x00\x00\x02", b"\x10\x00\x01T",
        b"\x00\x01a", b"\x00\x00\x09", b"\x07\x00\x00", b"\x07\x00\x01", b"\x05", b"\x06",
        b"\x02\x00\x01z", b"\x0b" + bytes(10), b"\x01\x01", b"\x11", b"\x09\x03\x01",
        b"\x0a\x0b\x01", b"\x0a\x01", b"\x06\x00", b"\x06\x03y", b"\x04\x81\x00",
    ]
)


@given(st.lists(pieces, max_size=24).map(b"".join))
def test_structured_garbage_raises_only_amf_error(data):
    try:
        decode_all(data)
    except AMFError:
        pass
