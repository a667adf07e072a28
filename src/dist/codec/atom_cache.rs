//! The distribution atom cache, both halves, per connection (sans-I/O):
//! the atoms a peer's distribution headers name ([`AtomCache`]), and the
//! atoms ours have named ([`OutAtomCache`]).
//!
//! Once `DFLAG_DIST_HDR_ATOM_CACHE` is negotiated, a BEAM peer sends an atom
//! (a registered name, a node name in a pid, a record tag) in full once, in
//! a message's distribution header, with the cache slot to keep it in;
//! later messages name the slot only. Each header lists the atoms its
//! message uses, and the terms after it say `ATOM_CACHE_REF i` for the
//! header's `i`th. This module owns the slots and reads the header's list;
//! it must never guess: a reference to a slot never filled, a truncated
//! entry or an atom that is not UTF-8 is an error that ends the
//! connection, since every later message may lean on the slot.
//!
//! Wire form (erts `erts_prepare_dist_ext`): `NumberOfAtomCacheRefs` (one
//! byte, N), then, when N > 0, `N / 2 + 1` flag bytes holding N + 1 half
//! bytes, the `i`th in the low half of byte `i / 2` for even `i` and in the
//! high half for odd `i`. Half byte `i < N` is a reference: bit 3 "new
//! entry", bits 0-2 the segment (the slot's high bits). Half byte N has the
//! "long atoms" bit (bit 0): new entries' lengths are two bytes, not one.
//! Then one entry per reference: the slot's low byte and, for a new entry,
//! the length and the atom's text.

use crate::term::etf::{AtomRefs, MAX_REFERENCED_ATOMS};
use crate::term::Atom;

use super::FrameError;

/// Slots in one direction of a connection: 8 segments of 256.
pub const SLOTS: usize = 2048;

/// The atoms a peer has put in our cache on one connection.
#[derive(Debug, Default)]
pub struct AtomCache {
    /// `SLOTS` entries once the first header filled one; until then empty,
    /// so a connection whose peer never uses the cache pays nothing.
    slots: Vec<Option<Atom>>,
}

impl AtomCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the atom cache part of a distribution header from its first
    /// byte (`NumberOfAtomCacheRefs`) on: fills the slots its new entries
    /// name and sets `refs` to the atoms it references, in order. Returns
    /// the bytes the part took.
    pub fn read_refs(&mut self, header: &[u8], refs: &mut Vec<Atom>) -> Result<usize, FrameError> {
        refs.clear();
        let Some(&n) = header.first() else {
            return Err(bad(
                "distribution header ends before its atom cache references",
            ));
        };
        let n = usize::from(n);
        if n == 0 {
            return Ok(1);
        }
        let flag_bytes = n / 2 + 1;
        let flags = header
            .get(1..1 + flag_bytes)
            .ok_or_else(|| bad("distribution header ends in its atom cache flags"))?;
        let half = |i: usize| (flags[i / 2] >> ((i & 1) * 4)) & 0x0f;
        let long_atoms = half(n) & 1 != 0;
        if self.slots.is_empty() {
            self.slots = vec![None; SLOTS];
        }
        let mut at = 1 + flag_bytes;
        let byte = |at: &mut usize| -> Result<u8, FrameError> {
            let b = header
                .get(*at)
                .copied()
                .ok_or_else(|| bad("distribution header ends in an atom cache reference"))?;
            *at += 1;
            Ok(b)
        };
        for i in 0..n {
            let flag = half(i);
            let slot = usize::from(flag & 7) << 8 | usize::from(byte(&mut at)?);
            if flag & 8 == 0 {
                match &self.slots[slot] {
                    Some(atom) => refs.push(atom.clone()),
                    None => {
                        return Err(bad(&format!(
                            "atom cache reference to slot {slot}, which no header filled"
                        )))
                    }
                }
                continue;
            }
            let len = if long_atoms {
                usize::from(byte(&mut at)?) << 8 | usize::from(byte(&mut at)?)
            } else {
                usize::from(byte(&mut at)?)
            };
            let text = header
                .get(at..at + len)
                .ok_or_else(|| bad("distribution header ends in a new atom cache entry"))?;
            at += len;
            let text = std::str::from_utf8(text)
                .map_err(|_| bad(&format!("atom cache entry for slot {slot} is not UTF-8")))?;
            let atom = Atom::from(text);
            self.slots[slot] = Some(atom.clone());
            refs.push(atom);
        }
        Ok(at)
    }
}

/// Writes the atom cache part of a header, reference by reference: the
/// count and room for the flags first, then each reference's half byte and
/// entry, the long-atoms half byte last.
struct RefsWriter {
    flags_at: usize,
    n: usize,
    long_atoms: bool,
}

impl RefsWriter {
    fn start(out: &mut Vec<u8>, n: u8, long_atoms: bool) -> Self {
        out.push(n);
        let n = usize::from(n);
        let flags_at = out.len();
        if n > 0 {
            out.resize(flags_at + n / 2 + 1, 0);
        }
        RefsWriter {
            flags_at,
            n,
            long_atoms,
        }
    }

    /// Reference `i` to `slot`: a new entry with `text`, else the slot alone.
    fn reference(&self, out: &mut Vec<u8>, i: usize, slot: usize, text: Option<&str>) {
        let flag = (slot >> 8) as u8 & 7 | if text.is_some() { 8 } else { 0 };
        out[self.flags_at + i / 2] |= flag << ((i & 1) * 4);
        out.push(slot as u8);
        if let Some(text) = text {
            if self.long_atoms {
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
            } else {
                out.push(text.len() as u8);
            }
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn finish(self, out: &mut [u8]) {
        if self.n > 0 && self.long_atoms {
            out[self.flags_at + self.n / 2] |= 1 << ((self.n & 1) * 4);
        }
    }
}

#[cfg(test)]
/// A header's atom cache part: `(new, slot, text)` per reference.
pub(crate) fn header_for_test(refs: &[(bool, usize, &str)], long_atoms: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let w = RefsWriter::start(&mut out, refs.len() as u8, long_atoms);
    for (i, (new, slot, text)) in refs.iter().enumerate() {
        w.reference(&mut out, i, *slot, new.then_some(*text));
    }
    w.finish(&mut out);
    out
}

/// The atoms our headers have put in the peer's cache on one connection,
/// and the references of the message being encoded.
///
/// Each atom has one slot, chosen from its text as the BEAM chooses one from
/// its atom index (modulo 2039): the first message naming it sends its
/// text and the slot, later ones the slot alone, until another atom that
/// wants the slot takes it. The peer's slots change only as our headers
/// arrive, so headers must reach the socket in the order
/// [`write_refs`](Self::write_refs) wrote them, and a message encoded with
/// references but not sent must be [`abort`](Self::abort)ed.
///
/// The encoder asks for each atom it meets ([`AtomRefs::refer`]): one hash
/// of its text and one comparison with its slot, no search of the atoms
/// named so far and no clone but of an atom new to the slot.
#[derive(Debug, Default)]
pub struct OutAtomCache {
    slots: Vec<Option<Atom>>,
    /// Per slot: the message (by [`generation`](Self::generation)) that
    /// last referred to it, and where in that message's list.
    seen: Vec<(u32, u8)>,
    /// Counts messages, so that `seen` needs no clearing between them.
    generation: u32,
    /// The message's references in order: a slot, and whether the header
    /// carries its text (the slot is new to the atom).
    refs: Vec<(u16, bool)>,
    /// What the slots this message filled held before, to put back when it
    /// is not sent.
    replaced: Vec<(u16, Option<Atom>)>,
}

/// Slots we use: the BEAM's `ERTS_USE_ATOM_CACHE_SIZE`.
const USED_SLOTS: usize = 2039;

impl OutAtomCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends to `out` the atom cache part of the distribution header of
    /// the message just encoded: the count, the flags, and for each atom it
    /// referred to its slot, with its text when the slot did not hold it.
    pub fn write_refs(&mut self, out: &mut Vec<u8>) {
        let text = |slot: u16| {
            self.slots[usize::from(slot)]
                .as_ref()
                .map_or("", Atom::as_str)
        };
        let long_atoms = self
            .refs
            .iter()
            .any(|&(slot, new)| new && text(slot).len() > 255);
        let w = RefsWriter::start(out, self.refs.len() as u8, long_atoms);
        for (i, &(slot, new)) in self.refs.iter().enumerate() {
            w.reference(out, i, usize::from(slot), new.then(|| text(slot)));
        }
        w.finish(out);
        // Sent: what the slots held before is gone from the peer too.
        self.replaced.clear();
    }

    /// The message just encoded will not be sent with this header: the
    /// slots it filled get back what they held (the peer never saw them).
    pub fn abort(&mut self) {
        while let Some((slot, atom)) = self.replaced.pop() {
            self.slots[usize::from(slot)] = atom;
        }
        self.refs.clear();
    }
}

impl AtomRefs for OutAtomCache {
    fn refer(&mut self, atom: &Atom) -> Option<u8> {
        if self.refs.len() >= MAX_REFERENCED_ATOMS {
            return None;
        }
        if self.slots.is_empty() {
            self.slots = vec![None; USED_SLOTS];
            self.seen = vec![(u32::MAX, 0); USED_SLOTS];
        }
        let slot = slot_of(atom.as_str());
        let known = self.slots[slot].as_ref() == Some(atom);
        let (generation, i) = self.seen[slot];
        if generation == self.generation {
            // Named already in this message; another atom that wants the
            // same slot goes as text.
            return known.then_some(i);
        }
        if !known {
            let old = self.slots[slot].replace(atom.clone());
            self.replaced.push((slot as u16, old));
        }
        let i = self.refs.len() as u8;
        self.refs.push((slot as u16, !known));
        self.seen[slot] = (self.generation, i);
        Some(i)
    }

    fn clear(&mut self) {
        // Encoded and not sent (nor aborted) would leave the peer's cache
        // behind ours: never done, but put back all the same.
        if !self.replaced.is_empty() {
            self.abort();
        }
        self.refs.clear();
        self.generation = self.generation.wrapping_add(1);
        if self.generation == u32::MAX {
            // `u32::MAX` marks slots never seen; start the count again.
            self.generation = 0;
            self.seen.iter_mut().for_each(|s| *s = (u32::MAX, 0));
        }
    }
}

/// An atom's slot: a multiplicative hash of its text, eight bytes at a
/// time, modulo the slots we use. Any stable choice works; the peer takes
/// the slot from the header.
fn slot_of(text: &str) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = text.as_bytes();
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
            .wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    ((h >> 32) ^ h) as usize % USED_SLOTS
}

fn bad(what: &str) -> FrameError {
    FrameError::Malformed(what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(refs: &[Atom]) -> Vec<&str> {
        refs.iter().map(Atom::as_str).collect()
    }

    #[test]
    fn what_our_headers_name_reads_back_as_the_same_atoms() {
        let mut ours = OutAtomCache::new();
        let mut theirs = AtomCache::new();
        let mut refs = Vec::new();
        let long = "ü".repeat(150); // 300 bytes: long atoms
        let messages: Vec<Vec<Atom>> = vec![
            vec!["a@host".into(), "sink".into(), "m".into()],
            vec!["m".into(), "a@host".into(), "sink".into()],
            vec!["sink".into(), long.as_str().into(), "ok".into(), "m".into()],
            vec![],
            (0..MAX_REFERENCED_ATOMS)
                .map(|i| Atom::from(format!("atom_{i}")))
                .collect(),
            vec!["a@host".into(), "sink".into()],
        ];
        let mut first_len = 0;
        for (k, atoms) in messages.iter().enumerate() {
            let mut header = Vec::new();
            ours.clear();
            // Two atoms of one message that want the same slot: the second
            // goes as text, not in the header.
            let referred: Vec<Atom> = atoms
                .iter()
                .filter(|a| ours.refer(a).is_some())
                .cloned()
                .collect();
            assert!(referred.len() * 10 >= atoms.len() * 8, "few collisions");
            ours.write_refs(&mut header);
            if k == 0 {
                first_len = header.len();
            }
            if k == 1 {
                assert!(
                    header.len() < first_len,
                    "the same atoms again go by slot alone"
                );
            }
            let used = theirs.read_refs(&header, &mut refs).expect("valid");
            assert_eq!(used, header.len());
            assert_eq!(refs, referred);
        }
    }

    #[test]
    fn an_encoding_not_sent_leaves_the_cache_as_the_peer_has_it() {
        let mut ours = OutAtomCache::new();
        let mut theirs = AtomCache::new();
        let mut refs = Vec::new();
        let sink = Atom::from("sink");
        let other = Atom::from("other");
        // Sent: the peer has "sink".
        ours.clear();
        assert_eq!(ours.refer(&sink), Some(0));
        let mut header = Vec::new();
        ours.write_refs(&mut header);
        theirs.read_refs(&header, &mut refs).expect("valid");
        // Encoded, then not sent (too large, say): "other" was new to us
        // and must stay new; "sink" stays known.
        ours.clear();
        assert_eq!(ours.refer(&other), Some(0));
        assert_eq!(ours.refer(&sink), Some(1));
        assert_eq!(ours.refer(&other), Some(0), "once per message");
        ours.abort();
        ours.clear();
        assert_eq!(ours.refer(&sink), Some(0));
        assert_eq!(ours.refer(&other), Some(1));
        let mut header = Vec::new();
        ours.write_refs(&mut header);
        assert!(header.windows(5).any(|w| w == b"other"), "sent as new");
        assert!(!header.windows(4).any(|w| w == b"sink"), "known: slot only");
        theirs.read_refs(&header, &mut refs).expect("valid");
        assert_eq!(refs, [sink, other]);
    }

    #[test]
    fn no_references_take_one_byte() {
        let mut c = AtomCache::new();
        let mut refs = vec![Atom::from("stale")];
        assert_eq!(c.read_refs(&[0, 99], &mut refs).expect("valid"), 1);
        assert!(refs.is_empty());
    }

    #[test]
    fn new_entries_fill_slots_that_later_headers_name() {
        let mut c = AtomCache::new();
        let mut refs = Vec::new();
        // Odd and even counts put the long-atoms half byte in either half.
        for long in [false, true] {
            let first = header_for_test(
                &[(true, 1234, "sink"), (true, 7, "m"), (true, 2047, "a@host")],
                long,
            );
            let mut bytes = first.clone();
            bytes.extend_from_slice(b"body");
            assert_eq!(c.read_refs(&bytes, &mut refs).expect("valid"), first.len());
            assert_eq!(names(&refs), ["sink", "m", "a@host"]);
            let again = header_for_test(&[(false, 2047, ""), (false, 1234, "")], long);
            assert_eq!(c.read_refs(&again, &mut refs).expect("valid"), again.len());
            assert_eq!(names(&refs), ["a@host", "sink"]);
        }
        // A new entry replaces what the slot held.
        c.read_refs(&header_for_test(&[(true, 7, "ok")], false), &mut refs)
            .expect("valid");
        c.read_refs(&header_for_test(&[(false, 7, "")], false), &mut refs)
            .expect("valid");
        assert_eq!(names(&refs), ["ok"]);
    }

    #[test]
    fn a_long_atom_needs_the_long_atoms_flag() {
        let text = "é".repeat(200); // 400 bytes
        let mut c = AtomCache::new();
        let mut refs = Vec::new();
        c.read_refs(&header_for_test(&[(true, 3, &text)], true), &mut refs)
            .expect("valid");
        assert_eq!(refs[0].as_str(), text);
    }

    #[test]
    fn bad_headers_are_errors_not_guesses() {
        let mut c = AtomCache::new();
        let mut refs = Vec::new();
        // A slot no header filled.
        assert!(c
            .read_refs(&header_for_test(&[(false, 5, "")], false), &mut refs)
            .is_err());
        // Truncated anywhere.
        let whole = header_for_test(&[(true, 5, "sink"), (true, 300, "echo")], false);
        for cut in 0..whole.len() {
            assert!(
                AtomCache::new()
                    .read_refs(&whole[..cut], &mut refs)
                    .is_err(),
                "cut at {cut}"
            );
        }
        // Not UTF-8.
        let mut bytes = header_for_test(&[(true, 5, "ab")], false);
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert!(AtomCache::new().read_refs(&bytes, &mut refs).is_err());
    }
}
