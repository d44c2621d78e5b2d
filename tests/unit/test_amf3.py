"""AMF3 decoding: byte-exact vectors for every type, references and traits,
truncation, garbage, limits, and AMF3 inside AMF0 (0x11)."""

from __future__ import annotations

import struct
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtmprelay.errors import AMFError
from rtmprelay.rtmp import amf0, amf3
from rtmprelay.rtmp.amf0 import UNDEFINED, ECMAArray, TypedObject

UTC = timezone.utc
NEW_YEAR_2020 = struct.pack(">d", 1577836800000.0)


def value_of(data: bytes):
    value, offset = amf3.decode(data)
    assert offset == len(data)
    return value


# (bytes, value): decode must give exactly this value and consume every byte
VECTORS = [
    (b"\x00", UNDEFINED),
    (b"\x01", None),
    (b"\x02", False),
    (b"\x03", True),
    # U29 integers: 1 to 4 bytes, 29 bits, sign-extended
    (b"\x04\x00", 0),
    (b"\x04\x7f", 127),
    (b"\x04\x81\x00", 128),
    (b"\x04\xff\x7f", 16383),
    (b"\x04\x81\x80\x00", 16384),
    (b"\x04\xff\xff\x7f", 2097151),
    (b"\x04\x80\xc0\x80\x00", 2097152),
    (b"\x04\xbf\xff\xff\xff", 268435455),
    (b"\x04\xc0\x80\x80\x00", -268435456),
    (b"\x04\xff\xff\xff\xff", -1),
    (b"\x05\x3f\xf8\x00\x00\x00\x00\x00\x00", 1.5),
    (b"\x06\x01", ""),
    (b"\x06\x0bhello", "hello"),
    (b"\x06\x05\xc3\xa9", "é"),
    (b"\x07\x09<a/>", "<a/>"),
    (b"\x08\x01" + NEW_YEAR_2020, datetime(2020, 1, 1, tzinfo=UTC)),
    (b"\x09\x01\x01", []),
    (b"\x09\x07\x01\x04\x01\x06\x03a\x01", [1, "a", None]),
    # associative part "k": "v", then one dense item: a dict with both
    (b"\x09\x03\x03k\x06\x03v\x01\x04\x05", ECMAArray({0: 5, "k": "v"})),
    (b"\x09\x01\x03k\x00\x01", ECMAArray({"k": UNDEFINED})),
    # anonymous dynamic object {a: 1}
    (b"\x0a\x0b\x01\x03a\x04\x01\x01", {"a": 1}),
    # sealed class Foo with member x
    (b"\x0a\x13\x07Foo\x03x\x04\x05", TypedObject("Foo", {"x": 5})),
    # sealed member x, dynamic member y
    (b"\x0a\x1b\x07Foo\x03x\x04\x05\x03y\x02\x01", TypedObject("Foo", {"x": 5, "y": False})),
    # anonymous class with a sealed member is a plain dict
    (b"\x0a\x13\x01\x03x\x04\x05", {"x": 5}),
    (b"\x0b\x09<a/>", "<a/>"),
    (b"\x0c\x07\x01\x02\x03", b"\x01\x02\x03"),
    (b"\x0c\x01", b""),
]

REFERENCE_VECTORS = [
    # string reference 0
    (b"\x09\x05\x01\x06\x05hi\x06\x00", ["hi", "hi"]),
    # the empty string never enters the table
    (b"\x09\x07\x01\x06\x01\x06\x05hi\x06\x00", ["", "hi", "hi"]),
    # class names and member names share the string table with values
    (b"\x0a\x13\x07Foo\x03x\x06\x02", TypedObject("Foo", {"x": "x"})),
    # the second object reuses the traits of the first (traits reference 0)
    (
        b"\x09\x05\x01\x0a\x13\x07Foo\x03x\x04\x01\x0a\x01\x04\x02",
        [TypedObject("Foo", {"x": 1}), TypedObject("Foo", {"x": 2})],
    ),
    # traits reference 1 after two trait definitions
    (
        b"\x09\x07\x01\x0a\x13\x07Foo\x03x\x04\x01\x0a\x13\x07Bar\x03y\x04\x02\x0a\x05\x04\x03",
        [TypedObject("Foo", {"x": 1}), TypedObject("Bar", {"y": 2}), TypedObject("Bar", {"y": 3})],
    ),
    # object references: the outer array is object 0, the inner one object 1
    (b"\x09\x05\x01\x0a\x0b\x01\x03a\x04\x01\x01\x0a\x02", [{"a": 1}, {"a": 1}]),
    (b"\x09\x05\x01\x09\x01\x01\x09\x02", [[], []]),
    (
        b"\x09\x05\x01\x08\x01" + NEW_YEAR_2020 + b"\x08\x02",
        [datetime(2020, 1, 1, tzinfo=UTC)] * 2,
    ),
    (b"\x09\x05\x01\x0c\x03\xff\x0c\x02", [b"\xff", b"\xff"]),
    (b"\x09\x05\x01\x0b\x03x\x07\x02", ["x", "x"]),
    # date, byte array and XML share the object table with arrays and objects
    (
        b"\x09\x07\x01\x0c\x03\xff\x0a\x0b\x01\x01\x0a\x04",
        [b"\xff", {}, {}],
    ),
]


def strict_type_equal(expected, actual) -> bool:
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, TypedObject):
        return expected.class_name == actual.class_name and strict_type_equal(
            expected.members, actual.members
        )
    if isinstance(expected, dict):
        return expected.keys() == actual.keys() and all(
            strict_type_equal(expected[key], actual[key]) for key in expected
        )
    if isinstance(expected, list):
        return len(expected) == len(actual) and all(
            strict_type_equal(a, b) for a, b in zip(expected, actual)
        )
    if isinstance(expected, datetime):
        return actual.tzinfo is UTC and expected == actual
    return expected == actual


@pytest.mark.parametrize(("data", "value"), VECTORS + REFERENCE_VECTORS)
def test_vector(data, value):
    assert strict_type_equal(value, value_of(data))


@pytest.mark.parametrize(("data", "value"), VECTORS + REFERENCE_VECTORS)
def test_vector_at_offset_leaves_trailing_bytes(data, value):
    decoded, offset = amf3.decode(bytearray(b"junk" + data + b"\x01trail"), 4)
    assert offset == 4 + len(data)
    assert strict_type_equal(value, decoded)


@pytest.mark.parametrize(("data", "value"), VECTORS + REFERENCE_VECTORS)
def test_every_strict_prefix_raises_amf_error(data, value):
    for cut in range(len(data)):
        with pytest.raises(AMFError):
            amf3.decode(memoryview(data)[:cut])


def test_object_references_are_the_same_object():
    outer = value_of(b"\x09\x05\x01\x0a\x0b\x01\x03a\x04\x01\x01\x0a\x02")
    assert outer[0] is outer[1]


def test_sealed_members_come_before_dynamic_ones():
    obj = value_of(b"\x0a\x1b\x07Foo\x03x\x04\x05\x03y\x02\x01")
    assert list(obj.members) == ["x", "y"]


def test_array_with_associative_part_keeps_both_kinds_of_key():
    value = value_of(b"\x09\x05\x03\x30\x06\x03v\x01\x04\x01\x04\x02")
    # the associative key "0" is a str; dense item 0 sits under the int 0
    assert value == {0: 1, 1: 2, "0": "v"}
    assert type(value) is ECMAArray


def test_amf3_values_re_encode_as_amf0():
    value = value_of(b"\x09\x03\x03k\x06\x03v\x01\x04\x05")
    assert amf0.encode(value) == (
        b"\x08\x00\x00\x00\x02\x00\x010\x00\x40\x14\x00\x00\x00\x00\x00\x00"
        b"\x00\x01k\x02\x00\x01v\x00\x00\x09"
    )


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "what", "where"),
    [
        (b"\x12", "unknown AMF3 type marker 0x12", "offset 0"),
        (b"\x0d\x03\x00\x00\x00\x01", "unsupported AMF3 type marker 0x0d (vector of int)",
         "offset 0"),
        (b"\x0e", "unsupported AMF3 type marker 0x0e (vector of uint)", "offset 0"),
        (b"\x0f", "unsupported AMF3 type marker 0x0f (vector of double)", "offset 0"),
        (b"\x10", "unsupported AMF3 type marker 0x10 (vector of object)", "offset 0"),
        (b"\x11", "unsupported AMF3 type marker 0x11 (dictionary)", "offset 0"),
        (b"\x0a\x07\x07Foo", "unsupported externalizable AMF3 object (class 'Foo')", "offset 0"),
        (b"\x06\x02", "string reference 1, but only 0 strings so far", "offset 1"),
        (b"\x0a\x05", "traits reference 1, but only 0 traits so far", "offset 0"),
        (b"\x09\x03\x01\x0a\x06", "reference to object 3, but only 1 objects so far",
         "offset 3"),
        (b"\x09\x03\x01\x09\x00", "reference to object 0, which is still being decoded (a cycle)",
         "offset 3"),
        (b"\x06\x05\xff\xfe", "invalid UTF-8 in string: invalid start byte", "offset 2"),
        (b"\x04\x80\x80", "truncated integer: U29 cut off after 2 bytes", "offset 1"),
        (b"\x06\x81\x80\x80", "truncated string: U29 cut off after 3 bytes", "offset 1"),
        (b"\x05\x00", "truncated double: need 8 bytes, have 1", "offset 1"),
        (b"\x06\x0bhel", "truncated string: need 5 bytes, have 3", "offset 2"),
        (b"\x08\x01" + struct.pack(">d", float("nan")), "date is not a finite number: nan",
         "offset 2"),
        (b"", "truncated AMF3 value: need 1 byte for the type marker, have 0", "offset 0"),
    ],
)
def test_errors(data, what, where):
    with pytest.raises(AMFError) as info:
        amf3.decode(data)
    assert (info.value.what, info.value.where) == (what, where)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x06\xff\xff\xff\xff", "truncated string: need 268435455 bytes, have 0"),
        (b"\x0c\xff\xff\xff\xff\x00", "truncated byte array: need 268435455 bytes, have 1"),
        (b"\x09\xff\xff\xff\xff\x01",
         "array claims 268435455 dense items but only 0 bytes are left"),
        (b"\x0a\xff\xff\xff\xfb\x01",
         "traits claim 33554431 sealed members but only 0 bytes are left"),
    ],
)
def test_huge_claimed_sizes_fail_fast(data, what):
    with pytest.raises(AMFError) as info:
        amf3.decode(data)
    assert info.value.what == what


@pytest.mark.parametrize(
    "data",
    [
        b"\x09\x03\x01" * 10000 + b"\x01",
        b"\x0a\x0b\x01\x03a" + b"\x0a\x01\x00" * 10000 + b"\x01",
        b"\x0a\x13\x01\x03a" + b"\x0a\x01" * 10000 + b"\x01",
    ],
    ids=["arrays", "dynamic-objects", "sealed-objects"],
)
def test_deep_nesting_raises_amf_error(data):
    with pytest.raises(AMFError) as info:
        amf3.decode(data)
    assert info.value.what == "nesting deeper than 64"


def test_max_depth_is_honoured_exactly():
    three = b"\x09\x03\x01" * 3 + b"\x01"
    assert amf3.decode(three, max_depth=3) == ([[[None]]], len(three))
    with pytest.raises(AMFError, match="nesting deeper than 2"):
        amf3.decode(three, max_depth=2)
    with pytest.raises(ValueError):
        amf3.decode(three, max_depth=amf0.MAX_DEPTH + 1)


def u29(value: int) -> bytes:
    """The AMF3 variable-length encoding of ``value`` (below 2**21 here)."""
    if value < 0x80:
        return bytes([value])
    if value < 0x4000:
        return bytes([0x80 | value >> 7, value & 0x7F])
    return bytes([0x80 | value >> 14, 0x80 | (value >> 7) & 0x7F, value & 0x7F])


def test_u29_helper_matches_vectors():
    assert b"\x04" + u29(16384) == b"\x04\x81\x80\x00"
    assert value_of(b"\x04" + u29(2097151)) == 2097151


def _chain(count: int, width: int) -> bytes:
    """An array of ``count`` arrays, each holding ``width`` references to the
    one before (array k is object k + 1)."""
    items = [b"\x09\x03\x01\x01"]  # object 1: [None]
    for k in range(1, count):
        items.append(b"\x09" + u29(width << 1 | 1) + b"\x01" + (b"\x0a" + u29(k << 1)) * width)
    return b"\x09" + u29(count << 1 | 1) + b"\x01" + b"".join(items)


def test_references_cannot_nest_past_max_depth():
    # array k spans k + 1 levels below the outer array: 63 arrays reach level 64
    assert len(value_of(_chain(63, 1))) == 63
    with pytest.raises(AMFError, match="nesting deeper than 64 through reference"):
        amf3.decode(_chain(64, 1))


def test_references_cannot_blow_up_exponentially():
    with pytest.raises(AMFError, match="references expand"):
        amf3.decode(_chain(10, 16))


# --- AMF3 inside AMF0 ------------------------------------------------------------------


def test_avmplus_value_inside_amf0():
    data = b"\x11\x0a\x0b\x01\x03a\x06\x05hi\x01"
    assert amf0.decode(data + b"\x05") == ({"a": "hi"}, len(data))


def test_type_17_command_decodes():
    # a command message body as Flash sends it with objectEncoding 3
    wire = (
        b"\x02\x00\x07connect"
        b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
        b"\x11\x0a\x0b\x01\x07app\x06\x09live\x1dobjectEncoding\x04\x03\x01"
        b"\x05"
    )
    assert amf0.decode_all(wire) == ["connect", 1.0, {"app": "live", "objectEncoding": 3}, None]


def test_each_avmplus_value_starts_fresh_tables():
    # within one AVM+ value the string table works ...
    assert amf0.decode(b"\x11\x09\x05\x01\x06\x05hi\x06\x00")[0] == ["hi", "hi"]
    # ... but it does not carry over into the next AVM+ value
    with pytest.raises(AMFError) as info:
        amf0.decode_all(b"\x11\x06\x05hi\x11\x06\x00")
    assert info.value.what == "string reference 0, but only 0 strings so far"
    assert info.value.where == "offset 7"


def test_avmplus_inside_amf0_containers():
    data = b"\x0a\x00\x00\x00\x02\x11\x04\x7f\x11\x0c\x03\x00"
    assert amf0.decode(data) == ([127, b"\x00"], len(data))


# --- garbage -----------------------------------------------------------------------------


def _decode_everything(data: bytes) -> None:
    offset = 0
    while offset < len(data):
        _, offset = amf3.decode(data, offset)


@given(st.binary(max_size=64))
def test_garbage_raises_only_amf_error(data):
    try:
        _decode_everything(data)
    except AMFError:
        pass


pieces = st.sampled_from(
    [
        b"\x09", b"\x03", b"\x05", b"\x01", b"\x0a", b"\x0b", b"\x13", b"\x1b", b"\x07Foo",
        b"\x03x", b"\x06", b"\x00", b"\x02", b"\x04", b"\x08", b"\x0c", b"\x81", b"\xff",
        NEW_YEAR_2020,
    ]
)


@given(st.lists(pieces, max_size=32).map(b"".join))
def test_structured_garbage_raises_only_amf_error(data):
    try:
        _decode_everything(data)
    except AMFError:
        pass
