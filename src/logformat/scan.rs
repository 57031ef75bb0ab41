//! Finding a byte in the short fields of a log line.
//!
//! Most fields (addresses, times, statuses, request targets) end within a few dozen bytes.
//! For those, `memchr`'s set-up costs more than the search: a line called it about ten times,
//! which was a fifth of the parser's instructions. These helpers test eight bytes at a time in
//! a machine word (SWAR: no `unsafe`, no target features) for the first 32 bytes, and leave
//! longer fields to `memchr`.

/// Bytes tested word by word before handing over to `memchr`.
const SHORT: usize = 32;

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `word` that equals `b`, and possibly of bytes above the first
/// such byte (the borrow of the subtraction), never below: the lowest bit set is exact.
#[inline]
fn matches(word: u64, b: u8) -> u64 {
    let x = word ^ (LOW * u64::from(b));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// The first of `bytes` in `s`. Always inlined: as a call it cost about 40 instructions
/// of overhead, several times a line, and `N` is then known where it is used.
#[inline(always)]
fn find_any<const N: usize>(bytes: [u8; N], s: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= s.len().min(SHORT) {
        let word = u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
        let hits = bytes.iter().fold(0, |hits, &b| hits | matches(word, b));
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let rest = &s[at..];
    let found = if rest.len() < 8 {
        rest.iter().position(|c| bytes.contains(c))
    } else {
        match *bytes.as_slice() {
            [a] => memchr::memchr(a, rest),
            [a, b] => memchr::memchr2(a, b, rest),
            [a, b, c] => memchr::memchr3(a, b, c, rest),
            _ => rest.iter().position(|c| bytes.contains(c)),
        }
    };
    found.map(|i| i + at)
}

/// The first `a` in `s`.
#[inline]
pub fn find(a: u8, s: &[u8]) -> Option<usize> {
    find_any([a], s)
}

/// The first `a` or `b` in `s`.
#[inline]
pub fn find2(a: u8, b: u8, s: &[u8]) -> Option<usize> {
    find_any([a, b], s)
}

/// The first `a`, `b` or `c` in `s`.
#[inline]
pub fn find3(a: u8, b: u8, c: u8, s: &[u8]) -> Option<usize> {
    find_any([a, b, c], s)
}

/// The first `"`, `\\` or control byte (below 0x20) in `s`: where a JSON string's run of
/// plain text ends. Word by word to the end, with no hand-over to `memchr`: nothing in it
/// finds bytes below a bound, and the strings of a JSON log line are short.
pub fn find_json_special(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= s.len() {
        let word = u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or_default());
        // Bytes below 0x20, exact at the lowest as in `matches`.
        let control = word.wrapping_sub(LOW * 0x20) & !word & HIGH;
        let hits = matches(word, b'"') | matches(word, b'\\') | control;
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    s[at..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|i| i + at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_what_memchr_finds(s in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'"'), Just(b'\\'), any::<u8>()], 0..100)) {
            prop_assert_eq!(find(b'"', &s), memchr::memchr(b'"', &s));
            prop_assert_eq!(find2(b'"', b'\\', &s), memchr::memchr2(b'"', b'\\', &s));
            prop_assert_eq!(find3(b'"', b'\\', b'a', &s), memchr::memchr3(b'"', b'\\', b'a', &s));
        }

        #[test]
        fn finds_json_specials_as_a_byte_loop_does(s in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'"'), Just(b'\\'), 0u8..0x21, any::<u8>()], 0..100)) {
            let expected = s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(find_json_special(&s), expected);
        }
    }

    #[test]
    fn every_position_and_length() {
        for len in 0..80 {
            for at in 0..len {
                let mut s = vec![b'x'; len];
                s[at] = b']';
                assert_eq!(find(b']', &s), Some(at), "len {len} at {at}");
                assert_eq!(find2(b'?', b']', &s), Some(at), "len {len} at {at}");
                assert_eq!(find3(b'?', b'#', b']', &s), Some(at), "len {len} at {at}");
            }
            assert_eq!(find(b']', &vec![b'x'; len]), None);
        }
    }
}
