//! Hex, as weft writes bytes for people: [`Digest`](crate::Digest)s, node and team ids, join
//! tokens. Lower case out, either case in.

/// The hex digits, by value.
const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Why a text is not the hex of so many bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character is not a hex digit.
    #[error("`{found}` at position {position} is not a hex digit (expected 0-9 or a-f)")]
    NotHex {
        /// The offending character.
        found: char,
        /// Its byte offset in the text.
        position: usize,
    },
    /// The text has the wrong number of digits.
    #[error("{found} hex characters where {expected} belong")]
    WrongLength {
        /// How many characters the text has.
        found: usize,
        /// How many it must have: two per byte.
        expected: usize,
    },
}

/// Decodes `text`, which must be exactly two hex digits (either case) per byte of `out`, into
/// `out`. A character that is not a hex digit is reported before a wrong length, so that a
/// pasted text with a stray character says which one.
pub fn decode(text: &str, out: &mut [u8]) -> Result<(), HexError> {
    if let Some((position, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(HexError::NotHex { found, position });
    }
    // Every character is an ASCII hex digit: bytes and characters are the same count.
    if text.len() != 2 * out.len() {
        return Err(HexError::WrongLength {
            found: text.len(),
            expected: 2 * out.len(),
        });
    }
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = (digit_value(pair[0]) << 4) | digit_value(pair[1]);
    }
    Ok(())
}

/// The value of an ASCII hex digit; callers have checked that `c` is one.
fn digit_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_either_case() {
        let bytes = [0x00, 0x01, 0x7f, 0x80, 0xab, 0xff];
        assert_eq!(encode(&bytes), "00017f80abff");
        assert_eq!(encode(&[]), "");
        for text in ["00017f80abff", "00017F80ABFF"] {
            let mut out = [0u8; 6];
            assert_eq!(decode(text, &mut out), Ok(()));
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn bad_texts_say_what_is_wrong() {
        let cases: &[(&str, usize, HexError)] = &[
            (
                "abc",
                2,
                HexError::WrongLength {
                    found: 3,
                    expected: 4,
                },
            ),
            (
                "",
                1,
                HexError::WrongLength {
                    found: 0,
                    expected: 2,
                },
            ),
            (
                "0g",
                1,
                HexError::NotHex {
                    found: 'g',
                    position: 1,
                },
            ),
            // A stray character is named even when the length is wrong too.
            (
                "é00",
                1,
                HexError::NotHex {
                    found: 'é',
                    position: 0,
                },
            ),
        ];
        for (text, n_bytes, expected) in cases {
            let mut out = vec![0u8; *n_bytes];
            assert_eq!(decode(text, &mut out).as_ref(), Err(expected), "{text:?}");
        }
    }
}
