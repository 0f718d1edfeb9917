"""The fast path of ``protocol.encoding.canonicalize`` (json.dumps for objects of ASCII strings
and safe integers) gives exactly the bytes of the generic RFC 8785 path (the ``rfc8785``
package), and values outside it still take the generic path (same output, same errors)."""

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from secsync_jupyter.protocol import encoding
from secsync_jupyter.protocol.encoding import MAX_SAFE_INTEGER, canonicalize

ascii_text = st.text(alphabet=st.characters(max_codepoint=127))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | ascii_text
    | st.text()  # non-ASCII: the generic path
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(ascii_text | st.text(), inner, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=400)
@given(values)
def test_fast_path_gives_the_rfc8785_bytes(value):
    assert canonicalize(value) == rfc8785.dumps(value)


def _fast(value) -> bool:
    """The fast path applies: the shape, and an ASCII output (every key and string ASCII)."""
    return encoding._plain(value) and encoding._encode_plain_c(value).isascii()


def test_fast_path_cases():
    # control characters, quotes, backslash, DEL, slash; keys in code-unit order; booleans
    value = {
        "b": '\x00\x01\x08\t\n\x0b\x0c\r\x1f"\\\x7f/',
        "a": [True, False, None, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, 0],
        "B": {"logHead": {"seq": 2, "hash": "x"}, "heads": {"clocks": {}}},
        "": [],
    }
    assert _fast(value)
    assert canonicalize(value) == rfc8785.dumps(value)
    # outside the fast path: non-ASCII, unsafe integers, tuples, floats
    assert not _fast({"k": "Ö"}) and canonicalize({"k": "Ö"}) == rfc8785.dumps({"k": "Ö"})
    assert not _fast({"é": 1}) and canonicalize({"é": 1}) == rfc8785.dumps({"é": 1})
    assert not encoding._plain(2**53)
    for bad in (2**53, 1.5, {"k": object()}):
        try:
            canonicalize(bad)
        except encoding.EncodingError:
            pass
        else:
            raise AssertionError(f"{bad!r} was canonicalized")
