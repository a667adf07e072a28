//! A non-allocating walk over the external term format: it says precisely
//! why a body is not one we accept, and finds where a large binary is cut off.
//!
//! What it proves, using only the body's bytes: every length field is backed
//! by real bytes (a `LIST_EXT` claiming 2^32 elements fails at the end of the
//! body, without anything sized from the count), nesting stays within
//! [`MAX_TERM_DEPTH`], and none of the tags we refuse on the wire occur:
//! an `ATOM_CACHE_REF` to a reference the message's header did not make, a
//! distribution header inside a term, a `BIT_BINARY_EXT` whose bit count is 0
//! on a non-empty binary or above 8, and a compressed term (the distribution
//! encoder never sends one). It allocates nothing and does work linear in the
//! body, so it bounds the work before any term is decoded or allocated.
//!
//! Our decoder (`term::etf`) has limits of its own: it checks every element
//! count against the bytes left before sizing a vector and refuses nesting
//! deeper than `term::etf::MAX_DEPTH`, no less than [`MAX_TERM_DEPTH`], so a
//! body this walk admits always decodes within bounds. `decode_control`
//! decodes well-formed bodies directly and walks the ones the decoder refused
//! before decoding them again, so the error names what is wrong; the walk is
//! defence in depth on that path, not the only guard.

use std::fmt;

/// Deepest nesting accepted. `Term` drops recursively (and `term::etf`
/// decodes recursively, up to its own `MAX_DEPTH`, no less than this), so this
/// bounds stack use; real control messages and ordinary payloads stay far
/// below it.
pub const MAX_TERM_DEPTH: usize = 256;

/// The external-format version byte that starts a stand-alone term.
pub const VERSION_MAGIC: u8 = 131;

/// Why a body is not a term we are willing to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermError {
    /// The bytes end inside a term.
    Truncated { at: usize },
    /// A tag byte this crate does not decode.
    UnknownTag { tag: u8, at: usize },
    /// `ATOM_CACHE_REF` to a reference its message's distribution header did
    /// not make (or in a message without one).
    AtomCacheRef { at: usize },
    /// zlib-compressed term: never produced by the distribution encoder, and
    /// an unbounded inflate is not something we do on peer input.
    Compressed { at: usize },
    /// Nesting deeper than [`MAX_TERM_DEPTH`].
    TooDeep { at: usize },
    /// A `BIT_BINARY_EXT` whose trailing bit count is not 1..=8.
    BadBitCount { bits: u8, at: usize },
}

impl fmt::Display for TermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { at } => write!(f, "term truncated at byte {at}"),
            Self::UnknownTag { tag, at } => write!(f, "unsupported term tag {tag} at byte {at}"),
            Self::AtomCacheRef { at } => {
                write!(
                    f,
                    "atom cache reference the header did not make at byte {at}"
                )
            }
            Self::Compressed { at } => write!(f, "compressed term at byte {at}"),
            Self::TooDeep { at } => {
                write!(f, "term nested deeper than {MAX_TERM_DEPTH} at byte {at}")
            }
            Self::BadBitCount { bits, at } => {
                write!(f, "bit binary with {bits} trailing bits at byte {at}")
            }
        }
    }
}

impl std::error::Error for TermError {}

/// Checks one term starting at `pos` (an optional leading version byte is
/// allowed) and returns `(had_version_byte, end)`. `atom_refs` is how many
/// atom cache references the message's distribution header made: an
/// `ATOM_CACHE_REF` to any other is refused.
pub fn check_term(buf: &[u8], pos: usize, atom_refs: usize) -> Result<(bool, usize), TermError> {
    let w = Walker {
        buf,
        atom_refs,
        probe_min: usize::MAX,
        cut_binary: std::cell::Cell::new(None),
    };
    w.check(pos)
}

/// In `start`, the beginning of a message body (control term, then the
/// optional payload term) whose end has not arrived yet: the binary of at
/// least `min` bytes the bytes are cut off in, as (offset of its contents,
/// length), when that is where they end. What reassembly needs to put such a
/// binary's contents in a buffer of its own as they arrive, instead of
/// copying them out of the joined message afterwards.
pub fn cut_binary(start: &[u8], min: usize) -> Option<(usize, usize)> {
    let w = Walker {
        buf: start,
        // Only a probe: whatever the header said, decoding checks again.
        atom_refs: 256,
        probe_min: min,
        cut_binary: std::cell::Cell::new(None),
    };
    match w.check(0) {
        Ok((_, end)) if end < start.len() => {
            let _ = w.check(end);
        }
        _ => {}
    }
    w.cut_binary.get()
}

struct Walker<'a> {
    buf: &'a [u8],
    /// References the distribution header made (see [`check_term`]).
    atom_refs: usize,
    /// Binaries at least this long that run past the end of `buf` are noted
    /// in `cut_binary` (see [`cut_binary`]).
    probe_min: usize,
    cut_binary: std::cell::Cell<Option<(usize, usize)>>,
}

impl Walker<'_> {
    fn check(&self, pos: usize) -> Result<(bool, usize), TermError> {
        let magic = self.buf.get(pos) == Some(&VERSION_MAGIC);
        let start = if magic { pos + 1 } else { pos };
        let end = self.term(start, 0)?;
        Ok((magic, end))
    }

    /// `pos + n` if those `n` bytes exist.
    fn take(&self, pos: usize, n: usize) -> Result<usize, TermError> {
        match pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => Ok(end),
            _ => Err(TermError::Truncated { at: pos }),
        }
    }

    fn u8_at(&self, pos: usize) -> Result<u8, TermError> {
        self.buf
            .get(pos)
            .copied()
            .ok_or(TermError::Truncated { at: pos })
    }

    fn u16_at(&self, pos: usize) -> Result<usize, TermError> {
        self.take(pos, 2)?;
        Ok(u16::from_be_bytes([self.buf[pos], self.buf[pos + 1]]) as usize)
    }

    fn u32_at(&self, pos: usize) -> Result<usize, TermError> {
        self.take(pos, 4)?;
        let b = &self.buf[pos..pos + 4];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// Walks `count` consecutive terms. Every term is at least one byte, so a
    /// lying count fails at the end of the buffer after at most `len` steps.
    fn terms(&self, mut pos: usize, count: usize, depth: usize) -> Result<usize, TermError> {
        for _ in 0..count {
            pos = self.term(pos, depth)?;
        }
        Ok(pos)
    }

    fn term(&self, pos: usize, depth: usize) -> Result<usize, TermError> {
        if depth >= MAX_TERM_DEPTH {
            return Err(TermError::TooDeep { at: pos });
        }
        let tag = self.u8_at(pos)?;
        let p = pos + 1;
        let d = depth + 1;
        match tag {
            70 => self.take(p, 8),                                  // NEW_FLOAT_EXT
            97 => self.take(p, 1),                                  // SMALL_INTEGER_EXT
            98 => self.take(p, 4),                                  // INTEGER_EXT
            99 => self.take(p, 31),                                 // FLOAT_EXT
            106 => Ok(p),                                           // NIL_EXT
            100 | 118 => self.take(p + 2, self.u16_at(p)?),         // ATOM_EXT, ATOM_UTF8_EXT
            115 | 119 => self.take(p + 1, self.u8_at(p)? as usize), // SMALL_ATOM(_UTF8)_EXT
            107 => self.take(p + 2, self.u16_at(p)?),               // STRING_EXT
            109 => {
                // BINARY_EXT
                let len = self.u32_at(p)?;
                let end = self.take(p + 4, len);
                if end.is_err() && len >= self.probe_min {
                    self.cut_binary.set(Some((p + 4, len)));
                }
                end
            }
            77 => {
                // BIT_BINARY_EXT
                let len = self.u32_at(p)?;
                let bits = self.u8_at(p + 4)?;
                if bits > 8 || (len > 0 && bits == 0) {
                    return Err(TermError::BadBitCount { bits, at: pos });
                }
                self.take(p + 5, len)
            }
            110 => self.take(p + 2, self.u8_at(p)? as usize), // SMALL_BIG_EXT
            111 => self.take(p + 5, self.u32_at(p)?),         // LARGE_BIG_EXT
            104 => self.terms(p + 1, self.u8_at(p)? as usize, d), // SMALL_TUPLE_EXT
            105 => self.terms(p + 4, self.u32_at(p)?, d),     // LARGE_TUPLE_EXT
            108 => {
                // LIST_EXT: elements then tail
                let end = self.terms(p + 4, self.u32_at(p)?, d)?;
                self.term(end, d)
            }
            116 => {
                // MAP_EXT: `arity` key/value pairs
                let arity = self.u32_at(p)?;
                let pairs = arity.checked_mul(2).ok_or(TermError::Truncated { at: p })?;
                self.terms(p + 4, pairs, d)
            }
            // Node-carrying identifiers: node term, then fixed-size fields.
            103 => self.take(self.term(p, d)?, 9),  // PID_EXT
            88 => self.take(self.term(p, d)?, 12),  // NEW_PID_EXT
            102 => self.take(self.term(p, d)?, 5),  // PORT_EXT
            89 => self.take(self.term(p, d)?, 8),   // NEW_PORT_EXT
            120 => self.take(self.term(p, d)?, 12), // V4_PORT_EXT
            101 => self.take(self.term(p, d)?, 5),  // REFERENCE_EXT
            114 | 90 => {
                // NEW_REFERENCE_EXT / NEWER_REFERENCE_EXT: Len, Node, Creation, Len x u32
                let words = self.u16_at(p)?;
                let creation = if tag == 114 { 1 } else { 4 };
                let after_node = self.term(p + 2, d)?;
                self.take(after_node, creation + 4 * words)
            }
            113 => self.terms(p, 3, d), // EXPORT_EXT: Module, Function, Arity
            112 => {
                // NEW_FUN_EXT: Size, Arity, Uniq[16], Index, NumFree, then
                // Module, OldIndex, OldUniq, Pid, FreeVars...
                let fixed = self.take(p, 4 + 1 + 16 + 4)?;
                let num_free = self.u32_at(fixed)?;
                let after = self.terms(fixed + 4, 4, d)?;
                self.terms(after, num_free, d)
            }
            117 => {
                // FUN_EXT: NumFree, Pid, Module, Index, Uniq, FreeVars...
                let num_free = self.u32_at(p)?;
                let after = self.terms(p + 4, 4, d)?;
                self.terms(after, num_free, d)
            }
            82 if usize::from(self.u8_at(p)?) < self.atom_refs => Ok(p + 1), // ATOM_CACHE_REF
            82 => Err(TermError::AtomCacheRef { at: pos }),
            80 => Err(TermError::Compressed { at: pos }),
            _ => Err(TermError::UnknownTag { tag, at: pos }),
        }
    }
}
