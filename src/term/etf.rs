//! The external term format: every term we put on the wire or in a file is
//! encoded here, and every term we receive is decoded here.
//!
//! The encoding follows what OTP 25's
//! `term_to_binary/1` produces (UTF-8 atoms, NEW_FLOAT_EXT, NEW_PID_EXT,
//! NEWER_REFERENCE_EXT...), so the bytes also match the BEAM's for the same term.
//!
//! This module never panics on a term: sizes beyond what the format can carry
//! are reported as [`EncodeError`]. Decoding never panics on bytes and never
//! allocates more than a small multiple of its input ([`DecodeError`]).

use crate::term::{InternalFun, Term};

const VERSION: u8 = 131;
const NEW_FLOAT_EXT: u8 = 70;
const BIT_BINARY_EXT: u8 = 77;
const NEW_PID_EXT: u8 = 88;
const NEW_PORT_EXT: u8 = 89;
const NEWER_REFERENCE_EXT: u8 = 90;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const NEW_FUN_EXT: u8 = 112;
const EXPORT_EXT: u8 = 113;
const MAP_EXT: u8 = 116;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;
const V4_PORT_EXT: u8 = 120;
const FUN_EXT: u8 = 117;

/// A term the external format cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("atom longer than 255 characters: {0:?}")]
    AtomTooLong(String),
    #[error("{what} too large for the external format ({len})")]
    TooLarge { what: &'static str, len: usize },
    #[error("bitstring with {0} trailing bits (must be 1..=8)")]
    BadBitCount(u8),
    #[error("reference with {0} words (must be 1..=5)")]
    BadReference(usize),
}

/// `term_to_binary/1`: the version byte, then the term.
pub fn to_binary(term: &Term) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    encode(term, &mut out)?;
    Ok(out)
}

/// Appends the term (without the version byte) to `out`.
pub fn encode(term: &Term, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_rec(term, out, 0)
}

/// Where an encoding goes: a buffer, and a say in how binaries' contents get
/// there. A plain `Vec<u8>` copies them in; [`Detached`] leaves out the
/// contents of binaries it was given to send as they are.
trait Out {
    fn buf(&mut self) -> &mut Vec<u8>;
    /// The length to write for a binary.
    #[inline]
    fn binary_len(&self, b: &crate::term::Binary) -> usize {
        b.bytes.len()
    }
    /// Writes a binary's contents (its tag and length are already written).
    fn binary(&mut self, b: &crate::term::Binary);
    /// Writes an atom: its text, unless the encoding can refer to it.
    #[inline]
    fn atom(&mut self, a: &crate::term::Atom) -> Result<(), EncodeError> {
        atom(&a.name, self.buf())
    }
    /// Whether to stop before the next term: the encoding is no longer
    /// wanted (see [`Referencing`]).
    #[inline]
    fn stop(&mut self) -> bool {
        false
    }
}

impl Out for Vec<u8> {
    #[inline]
    fn buf(&mut self) -> &mut Vec<u8> {
        self
    }

    #[inline]
    fn binary(&mut self, b: &crate::term::Binary) {
        self.extend_from_slice(&b.bytes);
    }
}

/// Most atoms one message refers to through its distribution header (a
/// header can name 255); any further ones go as text.
pub const MAX_REFERENCED_ATOMS: usize = 255;

/// The list of atoms a distribution header names, as a [`Referencing`]
/// encoding builds it: each atom met is given its index in the list, or
/// `None` to be written as text.
pub trait AtomRefs {
    fn refer(&mut self, atom: &crate::term::Atom) -> Option<u8>;
    /// A new message starts: its list is empty.
    fn clear(&mut self);
}

/// The plainest list: the atoms in the order first met (a search per atom),
/// up to [`MAX_REFERENCED_ATOMS`]. A connection's writer uses the atom
/// cache's own (`dist::codec::OutAtomCache`).
impl AtomRefs for Vec<crate::term::Atom> {
    fn refer(&mut self, atom: &crate::term::Atom) -> Option<u8> {
        match self.iter().position(|x| x == atom) {
            Some(i) => Some(i as u8),
            None if self.len() < MAX_REFERENCED_ATOMS => {
                self.push(atom.clone());
                Some((self.len() - 1) as u8)
            }
            None => None,
        }
    }

    fn clear(&mut self) {
        Vec::clear(self)
    }
}

/// An encoding for a message after a distribution header that makes atom
/// cache references: each atom is written as `ATOM_CACHE_REF` to its place
/// in the header's list, which [`Referencing::atoms`] keeps (see
/// [`AtomRefs`]), and the caller writes a header naming those atoms in that
/// order. It is for messages that fit one frame of `max` bytes: a
/// binary of `max` bytes or more is left out, and encoding stops once the
/// body outgrows `max`, both flagged ([`Referencing::too_large`]), so a
/// large message is not encoded in full only to be encoded again the
/// usual way.
#[derive(Debug, Default)]
pub struct Referencing<R = Vec<crate::term::Atom>> {
    pub buf: Vec<u8>,
    /// The atoms referred to, in reference order.
    pub atoms: R,
    /// See [`Referencing::too_large`].
    max: usize,
    /// A binary of `max` bytes or more was left out.
    too_large: bool,
}

impl<R: AtomRefs> Referencing<R> {
    /// Starts a new message, for which binaries of `max` bytes or more are
    /// too large.
    pub fn start(&mut self, max: usize) {
        self.buf.clear();
        self.atoms.clear();
        self.max = max;
        self.too_large = false;
    }

    /// The message is larger than the `max` given to [`start`](Self::start)
    /// (a binary that large was met, or the body outgrew it): the encoding
    /// in `buf` is incomplete and must not be sent.
    pub fn too_large(&self) -> bool {
        self.too_large || self.buf.len() > self.max
    }
}

impl<R: AtomRefs> Out for Referencing<R> {
    #[inline]
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    #[inline]
    fn binary(&mut self, b: &crate::term::Binary) {
        if b.bytes.len() >= self.max {
            self.too_large = true;
        } else {
            self.buf.extend_from_slice(&b.bytes);
        }
    }

    #[inline]
    fn stop(&mut self) -> bool {
        self.too_large()
    }

    fn atom(&mut self, a: &crate::term::Atom) -> Result<(), EncodeError> {
        // The peer would refuse the header, and the connection.
        check_atom_len(&a.name)?;
        match self.atoms.refer(a) {
            Some(i) => self.buf.extend_from_slice(&[ATOM_CACHE_REF, i]),
            None => atom(&a.name, &mut self.buf)?,
        }
        Ok(())
    }
}

/// [`encode`] into a [`Referencing`] (see there).
pub fn encode_referencing<R: AtomRefs>(
    term: &Term,
    out: &mut Referencing<R>,
) -> Result<(), EncodeError> {
    encode_rec(term, out, 0)
}

/// An encoding that leaves out the contents of chosen binaries, so a large
/// binary goes to the socket from its own memory instead of being copied
/// into the encoded body.
///
/// The binaries are chosen by identity (their address in the term being
/// encoded, compared, never dereferenced): the caller takes their bytes out
/// of the term it owns ([`detach_binaries`]) and encodes the same, unmoved
/// term; each such binary, now empty, is written with its real length and
/// no contents, and its place recorded.
pub struct Detached {
    /// The encoding, without the detached contents.
    pub buf: Vec<u8>,
    /// Binaries still to be met, in the order the encoder meets them.
    pending: std::collections::VecDeque<(*const crate::term::Binary, bytes::Bytes)>,
    /// Where in `buf` each detached binary's contents belong, with them.
    pub spans: Vec<(usize, bytes::Bytes)>,
}

impl Detached {
    /// An encoding into `buf` that leaves out `binaries` (from [`detach_binaries`]).
    pub fn new(buf: Vec<u8>, binaries: Vec<(*const crate::term::Binary, bytes::Bytes)>) -> Self {
        Detached {
            buf,
            pending: binaries.into(),
            spans: Vec::new(),
        }
    }

    /// True when every detached binary was met (and its place recorded).
    pub fn complete(&self) -> bool {
        self.pending.is_empty()
    }
}

impl Out for Detached {
    #[inline]
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn binary_len(&self, b: &crate::term::Binary) -> usize {
        match self.pending.front() {
            Some((p, bytes)) if std::ptr::eq(*p, b) => bytes.len(),
            _ => b.bytes.len(),
        }
    }

    fn binary(&mut self, b: &crate::term::Binary) {
        match self.pending.front() {
            Some((p, _)) if std::ptr::eq(*p, b) => {
                if let Some((_, bytes)) = self.pending.pop_front() {
                    self.spans.push((self.buf.len(), bytes));
                }
            }
            _ => self.buf.extend_from_slice(&b.bytes),
        }
    }
}

/// Takes the bytes out of every binary of at least `min` bytes in `term`
/// (map keys excepted: they cannot be changed in place; and anything nested
/// deeper than the encoder's recursion, which is simply copied), leaving them
/// empty, and returns them with the binaries' addresses in the order
/// [`encode_detached`] meets them. Allocates nothing when there are none, so
/// every message can be offered.
pub fn detach_binaries(
    term: &mut Term,
    min: usize,
) -> Vec<(*const crate::term::Binary, bytes::Bytes)> {
    fn walk(
        t: &mut Term,
        min: usize,
        depth: u32,
        found: &mut Vec<(*const crate::term::Binary, bytes::Bytes)>,
    ) {
        if depth >= MAX_RECURSION {
            return;
        }
        match t {
            Term::Binary(b) if b.bytes.len() >= min => {
                let bytes = bytes::Bytes::from(std::mem::take(&mut b.bytes).into_vec());
                found.push((&*b as *const crate::term::Binary, bytes));
            }
            Term::List(l) => l
                .elements
                .iter_mut()
                .for_each(|e| walk(e, min, depth + 1, found)),
            Term::ImproperList(l) => {
                l.elements
                    .iter_mut()
                    .for_each(|e| walk(e, min, depth + 1, found));
                walk(&mut l.last, min, depth + 1, found);
            }
            Term::Tuple(t) => t
                .elements
                .iter_mut()
                .for_each(|e| walk(e, min, depth + 1, found)),
            Term::Map(m) => m
                .map
                .values_mut()
                .for_each(|v| walk(v, min, depth + 1, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(term, min, 0, &mut found);
    found
}

/// [`encode`] into a [`Detached`]: the binaries it holds are written as their
/// tag and real length only.
pub fn encode_detached(term: &Term, out: &mut Detached) -> Result<(), EncodeError> {
    encode_rec(term, out, 0)
}

/// Nesting encoded by plain recursion; a subterm deeper than this goes to
/// the explicit stack ([`encode_iter`]), so deeply nested terms cannot
/// exhaust the Rust stack while the common term needs no stack allocation.
const MAX_RECURSION: u32 = 64;

/// What remains to encode once a term's own header has been written.
enum Children<'a> {
    None,
    /// List elements, then the tail (`None`: `[]`).
    List(&'a [Term], Option<&'a Term>),
    Tuple(&'a [Term]),
    Map(&'a crate::term::TermMap),
}

fn encode_rec<O: Out>(term: &Term, out: &mut O, depth: u32) -> Result<(), EncodeError> {
    if depth >= MAX_RECURSION {
        return encode_iter(term, out);
    }
    match header(term, out)? {
        Children::None => {}
        Children::List(elements, tail) => {
            for e in elements {
                encode_rec(e, out, depth + 1)?;
            }
            match tail {
                None => out.buf().push(NIL_EXT),
                Some(t) => encode_rec(t, out, depth + 1)?,
            }
        }
        Children::Tuple(elements) => {
            for e in elements {
                encode_rec(e, out, depth + 1)?;
            }
        }
        Children::Map(map) => {
            for (k, v) in map {
                encode_rec(k, out, depth + 1)?;
                encode_rec(v, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// [`encode`] with an explicit stack, for arbitrarily deep terms.
fn encode_iter<O: Out>(term: &Term, out: &mut O) -> Result<(), EncodeError> {
    enum Work<'a> {
        Term(&'a Term),
        Nil,
    }
    let mut stack = vec![Work::Term(term)];
    while let Some(w) = stack.pop() {
        let t = match w {
            Work::Nil => {
                out.buf().push(NIL_EXT);
                continue;
            }
            Work::Term(t) => t,
        };
        match header(t, out)? {
            Children::None => {}
            Children::List(elements, tail) => {
                stack.push(match tail {
                    None => Work::Nil,
                    Some(t) => Work::Term(t),
                });
                stack.extend(elements.iter().rev().map(Work::Term));
            }
            Children::Tuple(elements) => stack.extend(elements.iter().rev().map(Work::Term)),
            Children::Map(map) => {
                // Pushed in reverse so pairs come out key, value, key, value...
                // in iteration order, as `encode_rec` writes them.
                let pairs: Vec<(&Term, &Term)> = map.iter().collect();
                for (k, v) in pairs.into_iter().rev() {
                    stack.push(Work::Term(v));
                    stack.push(Work::Term(k));
                }
            }
        }
    }
    Ok(())
}

/// Writes `t` itself: everything of a leaf, the header of a list, tuple or
/// map (whose elements the caller writes next).
#[inline]
fn header<'a, O: Out>(t: &'a Term, o: &mut O) -> Result<Children<'a>, EncodeError> {
    if o.stop() {
        return Err(EncodeError::TooLarge {
            what: "message for one frame",
            len: o.buf().len(),
        });
    }
    if let Term::Binary(b) = t {
        let len = o.binary_len(b);
        let out = o.buf();
        out.push(BINARY_EXT);
        out.extend_from_slice(&len32("binary", len)?.to_be_bytes());
        o.binary(b);
        return Ok(Children::None);
    }
    let out = match t {
        Term::Atom(a) => return o.atom(a).map(|()| Children::None),
        Term::Pid(p) => return pid(p, o).map(|()| Children::None),
        Term::Reference(r) => return reference(r, o).map(|()| Children::None),
        Term::ExternalFun(f) => {
            o.buf().push(EXPORT_EXT);
            o.atom(&f.module)?;
            o.atom(&f.function)?;
            o.buf().extend_from_slice(&[SMALL_INTEGER_EXT, f.arity]);
            return Ok(Children::None);
        }
        _ => o.buf(),
    };
    match t {
        Term::Atom(_) | Term::Pid(_) | Term::Reference(_) | Term::ExternalFun(_) => {} // above
        Term::FixInteger(i) => integer(i64::from(i.value), out),
        Term::BigInteger(b) => big(&b.value, out)?,
        Term::Float(f) => {
            out.push(NEW_FLOAT_EXT);
            out.extend_from_slice(&f.value.to_bits().to_be_bytes());
        }
        Term::Port(p) => {
            if let Ok(id) = u32::try_from(p.id) {
                out.push(NEW_PORT_EXT);
                atom(&p.node.name, out)?;
                out.extend_from_slice(&id.to_be_bytes());
            } else {
                out.push(V4_PORT_EXT);
                atom(&p.node.name, out)?;
                out.extend_from_slice(&p.id.to_be_bytes());
            }
            out.extend_from_slice(&p.creation.to_be_bytes());
        }
        Term::InternalFun(f) => internal_fun(f, out)?,
        Term::Binary(_) => {} // written above
        Term::BitBinary(b) => {
            if b.bytes.is_empty() {
                // `<<>>`, however the bit count was recorded.
                out.push(BINARY_EXT);
                out.extend_from_slice(&0u32.to_be_bytes());
                return Ok(Children::None);
            }
            if b.tail_bits_size == 0 || b.tail_bits_size > 8 {
                return Err(EncodeError::BadBitCount(b.tail_bits_size));
            }
            if b.tail_bits_size == 8 {
                out.push(BINARY_EXT);
                out.extend_from_slice(&len32("binary", b.bytes.len())?.to_be_bytes());
            } else {
                out.push(BIT_BINARY_EXT);
                out.extend_from_slice(&len32("bitstring", b.bytes.len())?.to_be_bytes());
                out.push(b.tail_bits_size);
            }
            // `BitBinary` keeps the trailing bits at the low end of the last
            // byte; the wire carries them at the high end.
            let (last, init) = b.bytes.split_last().unwrap_or((&0, &[]));
            out.extend_from_slice(init);
            out.push(last << (8 - b.tail_bits_size));
        }
        Term::ByteList(l) => {
            if l.bytes.is_empty() {
                out.push(NIL_EXT);
            } else if l.bytes.len() <= u16::MAX as usize {
                out.push(STRING_EXT);
                out.extend_from_slice(&(l.bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&l.bytes);
            } else {
                out.push(LIST_EXT);
                out.extend_from_slice(&len32("list", l.bytes.len())?.to_be_bytes());
                for &b in &l.bytes {
                    out.push(SMALL_INTEGER_EXT);
                    out.push(b);
                }
                out.push(NIL_EXT);
            }
        }
        Term::List(l) => {
            if l.elements.is_empty() {
                out.push(NIL_EXT);
            } else if is_string(&l.elements) {
                // What the BEAM does for a list of 0..=255 integers.
                out.push(STRING_EXT);
                out.extend_from_slice(&(l.elements.len() as u16).to_be_bytes());
                out.extend(l.elements.iter().map(|e| match e {
                    Term::FixInteger(i) => i.value as u8,
                    _ => 0, // not reached: `is_string` checked every element
                }));
            } else {
                out.push(LIST_EXT);
                out.extend_from_slice(&len32("list", l.elements.len())?.to_be_bytes());
                return Ok(Children::List(&l.elements, None));
            }
        }
        Term::ImproperList(l) => {
            out.push(LIST_EXT);
            out.extend_from_slice(&len32("list", l.elements.len())?.to_be_bytes());
            return Ok(Children::List(&l.elements, Some(&l.last)));
        }
        Term::Tuple(t) => {
            if let Ok(n) = u8::try_from(t.elements.len()) {
                out.push(SMALL_TUPLE_EXT);
                out.push(n);
            } else {
                out.push(LARGE_TUPLE_EXT);
                out.extend_from_slice(&len32("tuple", t.elements.len())?.to_be_bytes());
            }
            return Ok(Children::Tuple(&t.elements));
        }
        Term::Map(m) => {
            out.push(MAP_EXT);
            out.extend_from_slice(&len32("map", m.map.len())?.to_be_bytes());
            return Ok(Children::Map(&m.map));
        }
    }
    Ok(Children::None)
}

fn pid<O: Out>(p: &crate::term::Pid, o: &mut O) -> Result<(), EncodeError> {
    o.buf().push(NEW_PID_EXT);
    o.atom(&p.node)?;
    let out = o.buf();
    out.extend_from_slice(&p.id.to_be_bytes());
    out.extend_from_slice(&p.serial.to_be_bytes());
    out.extend_from_slice(&p.creation.to_be_bytes());
    Ok(())
}

fn reference<O: Out>(r: &crate::term::Reference, o: &mut O) -> Result<(), EncodeError> {
    if r.id.is_empty() || r.id.len() > 5 {
        return Err(EncodeError::BadReference(r.id.len()));
    }
    let out = o.buf();
    out.push(NEWER_REFERENCE_EXT);
    out.extend_from_slice(&(r.id.len() as u16).to_be_bytes());
    o.atom(&r.node)?;
    let out = o.buf();
    out.extend_from_slice(&r.creation.to_be_bytes());
    for w in &r.id {
        out.extend_from_slice(&w.to_be_bytes());
    }
    Ok(())
}

/// An element of a tuple given by reference (see
/// [`encode_tuple_then_referencing`]).
#[derive(Debug, Clone, Copy)]
pub enum Element<'a> {
    SmallInt(u8),
    Atom(&'a crate::term::Atom),
    Pid(&'a crate::term::Pid),
    Reference(&'a crate::term::Reference),
}

/// The tuple of `elements` (at most 255), then `payload`, into a
/// [`Referencing`]: the same bytes as the tuple built as a term and
/// [`encode_referencing`], for a caller that has the elements apart (the
/// distribution's sends, whose control tuple is never built).
pub fn encode_tuple_then_referencing<R: AtomRefs>(
    elements: &[Element<'_>],
    payload: &Term,
    out: &mut Referencing<R>,
) -> Result<(), EncodeError> {
    let n = u8::try_from(elements.len()).map_err(|_| EncodeError::TooLarge {
        what: "tuple of elements",
        len: elements.len(),
    })?;
    out.buf.extend_from_slice(&[SMALL_TUPLE_EXT, n]);
    for e in elements {
        match *e {
            Element::SmallInt(v) => out.buf.extend_from_slice(&[SMALL_INTEGER_EXT, v]),
            Element::Atom(a) => out.atom(a)?,
            Element::Pid(p) => pid(p, out)?,
            Element::Reference(r) => reference(r, out)?,
        }
    }
    encode_rec(payload, out, 0)
}

fn len32(what: &'static str, len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLarge { what, len })
}

/// True when `elements` can go as a `STRING_EXT`: at most 65535 integers,
/// each in 0..=255.
fn is_string(elements: &[Term]) -> bool {
    elements.len() <= u16::MAX as usize
        && elements
            .iter()
            .all(|e| matches!(e, Term::FixInteger(i) if (0..=255).contains(&i.value)))
}

/// The BEAM limits atoms to 255 characters (not bytes); a character is at
/// least one byte, so only longer texts need counting.
fn check_atom_len(name: &str) -> Result<(), EncodeError> {
    if name.len() > 255 && name.chars().count() > 255 {
        return Err(EncodeError::AtomTooLong(name.to_string()));
    }
    Ok(())
}

fn atom(name: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_atom_len(name)?;
    if let Ok(n) = u8::try_from(name.len()) {
        out.push(SMALL_ATOM_UTF8_EXT);
        out.push(n);
    } else {
        out.push(ATOM_UTF8_EXT);
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn integer(v: i64, out: &mut Vec<u8>) {
    if let Ok(b) = u8::try_from(v) {
        out.push(SMALL_INTEGER_EXT);
        out.push(b);
    } else if let Ok(i) = i32::try_from(v) {
        out.push(INTEGER_EXT);
        out.extend_from_slice(&i.to_be_bytes());
    } else {
        word_big(v, out);
    }
}

/// An integer beyond 32 bits that fits an `i64`, as `SMALL_BIG_EXT`: the
/// magnitude's significant bytes, least significant first (what
/// `BigInt::to_bytes_le` gives, without allocating).
fn word_big(v: i64, out: &mut Vec<u8>) {
    let magnitude = v.unsigned_abs();
    let n = 8 - (magnitude.leading_zeros() / 8) as usize;
    out.push(SMALL_BIG_EXT);
    out.push(n as u8);
    out.push(u8::from(v < 0));
    out.extend_from_slice(&magnitude.to_le_bytes()[..n]);
}

fn big(v: &num_bigint::BigInt, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    // The BEAM normalises: an integer that fits 32 bits is never a bignum.
    if let Ok(small) = i32::try_from(v) {
        integer(i64::from(small), out);
        return Ok(());
    }
    if let Ok(word) = i64::try_from(v) {
        word_big(word, out);
        return Ok(());
    }
    let (sign, digits) = v.to_bytes_le();
    let negative = sign == num_bigint::Sign::Minus;
    if let Ok(n) = u8::try_from(digits.len()) {
        out.push(SMALL_BIG_EXT);
        out.push(n);
    } else {
        out.push(LARGE_BIG_EXT);
        out.extend_from_slice(&len32("bignum", digits.len())?.to_be_bytes());
    }
    out.push(u8::from(negative));
    out.extend_from_slice(&digits);
    Ok(())
}

fn internal_fun(f: &InternalFun, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match f {
        InternalFun::New {
            module,
            arity,
            pid,
            free_vars,
            index,
            uniq,
            old_index,
            old_uniq,
        } => {
            let start = out.len();
            out.push(NEW_FUN_EXT);
            out.extend_from_slice(&[0, 0, 0, 0]); // size, patched below
            out.push(*arity);
            out.extend_from_slice(uniq);
            out.extend_from_slice(&index.to_be_bytes());
            out.extend_from_slice(&len32("fun environment", free_vars.len())?.to_be_bytes());
            atom(&module.name, out)?;
            integer(i64::from(*old_index), out);
            integer(i64::from(*old_uniq), out);
            encode(&Term::Pid(pid.clone()), out)?;
            for v in free_vars {
                encode(v, out)?;
            }
            // The size counts itself and what follows, not the tag.
            let size = len32("fun", out.len() - start - 1)?;
            out[start + 1..start + 5].copy_from_slice(&size.to_be_bytes());
        }
        InternalFun::Old {
            module,
            pid,
            free_vars,
            index,
            uniq,
        } => {
            out.push(FUN_EXT);
            out.extend_from_slice(&len32("fun environment", free_vars.len())?.to_be_bytes());
            encode(&Term::Pid(pid.clone()), out)?;
            atom(&module.name, out)?;
            integer(i64::from(*index), out);
            integer(i64::from(*uniq), out);
            for v in free_vars {
                encode(v, out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{self, BigInteger, Float};

    fn roundtrip(t: &Term) {
        let bytes = to_binary(t).expect("encodes");
        let back = crate::term::etf::from_binary(&bytes[..]).expect("decodes");
        match (t, &back) {
            // A STRING_EXT decodes as a ByteList.
            (Term::List(_), Term::ByteList(_)) => {
                assert_eq!(term::as_list(t), term::as_list(&back))
            }
            _ => assert_eq!(&back, t),
        }
    }

    /// `Terms::next_pid` and `next_atom` read what `next_term` reads, as a
    /// pid or an atom, and refuse any other term.
    #[test]
    fn terms_read_pids_and_atoms_as_next_term_does() {
        let pid = crate::term::Pid::new("a_node_name_longer_than_23@host", 7, 8, 9);
        let old_pid = [
            PID_EXT,
            SMALL_ATOM_UTF8_EXT,
            1,
            b'n',
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2,
            3,
        ];
        let items = [
            Term::Pid(pid),
            term::atom("sink"),
            term::atom(""),
            term::int(1),
            term::tuple(vec![term::atom("m"), term::int(2)]),
        ];
        let mut buf = Vec::new();
        for t in &items {
            buf.extend_from_slice(&to_binary(t).expect("encodes")[1..]);
        }
        buf.extend_from_slice(&old_pid);
        let mut starts = vec![0];
        let mut all = Terms::new(&buf, 0, &[]);
        let mut expected = Vec::new();
        while let Some(t) = all.next_term() {
            expected.push(t);
            starts.push(all.pos());
        }
        assert_eq!(expected.len(), items.len() + 1);
        for (i, t) in expected.iter().enumerate() {
            let mut one = Terms::new(&buf, starts[i], &[]);
            match t {
                Term::Pid(p) => assert_eq!(one.next_pid().as_ref(), Some(p)),
                _ => assert_eq!(one.next_pid(), None),
            }
            let mut one = Terms::new(&buf, starts[i], &[]);
            match t {
                Term::Pid(_) => {
                    assert_eq!(one.skip_pid(), Some(()));
                    assert_eq!(one.pos(), starts[i + 1]);
                }
                _ => assert_eq!(one.skip_pid(), None),
            }
            let mut one = Terms::new(&buf, starts[i], &[]);
            match t {
                Term::Atom(a) => {
                    assert_eq!(one.next_atom().as_ref(), Some(a));
                    assert_eq!(one.pos(), starts[i + 1]);
                }
                _ => assert_eq!(one.next_atom(), None),
            }
        }
        // An atom cache reference: to a slot the header named, or refused.
        let atoms = [crate::term::Atom::from("a@host")];
        let mut cached = vec![NEW_PID_EXT, ATOM_CACHE_REF, 0];
        cached.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        let mut skip = Terms::new(&cached, 0, &atoms);
        assert_eq!((skip.skip_pid(), skip.pos()), (Some(()), cached.len()));
        let pid = Terms::new(&cached, 0, &atoms).next_pid();
        assert_eq!(pid, Some(crate::term::Pid::new("a@host", 1, 2, 3)));
        cached[2] = 1;
        assert_eq!(Terms::new(&cached, 0, &atoms).skip_pid(), None);
        assert_eq!(Terms::new(&cached, 0, &atoms).next_pid(), None);
        // Truncated: refused, not a panic.
        for end in 0..buf.len() {
            let mut skip = Terms::new(&buf[..end], 0, &[]);
            let skipped = skip.skip_pid().map(|()| skip.pos());
            let mut read = Terms::new(&buf[..end], 0, &[]);
            assert_eq!(skipped, read.next_pid().map(|_| read.pos()));
            let _ = Terms::new(&buf[..end], 0, &[]).next_pid();
            let _ = Terms::new(&buf[..end], 0, &[]).next_atom();
        }
    }

    #[test]
    fn negative_small_integers_in_lists_stay_negative() {
        let t = term::list(vec![term::int(-1), term::int(200), term::int(0)]);
        let bytes = to_binary(&t).expect("encodes");
        assert_eq!(bytes[1], LIST_EXT, "not a STRING_EXT");
        let back = crate::term::etf::from_binary(&bytes[..]).expect("decodes");
        assert_eq!(back, t);
        let s = term::list(vec![term::int(104), term::int(105)]);
        assert_eq!(
            to_binary(&s).expect("encodes"),
            vec![131, STRING_EXT, 0, 2, 104, 105]
        );
    }

    #[test]
    fn integers_take_the_smallest_form() {
        assert_eq!(to_binary(&term::int(5)).unwrap(), vec![131, 97, 5]);
        assert_eq!(
            to_binary(&term::int(-5)).unwrap(),
            vec![131, 98, 255, 255, 255, 251]
        );
        assert_eq!(
            to_binary(&term::int(1 << 40)).unwrap(),
            vec![131, 110, 6, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            to_binary(&Term::BigInteger(BigInteger::from(-3i64))).unwrap(),
            vec![131, 98, 255, 255, 255, 253]
        );
    }

    #[test]
    fn recursion_and_the_work_stack_agree() {
        let mut rng = crate::term::testgen::Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..3000 {
            let t = crate::term::testgen::term(&mut rng, 4);
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let a = encode(&t, &mut fast);
            let b = encode_iter(&t, &mut slow);
            assert_eq!(a, b, "{t}");
            assert_eq!(fast, slow, "{t}");
            if a.is_ok() && crate::term::depth_within(&t, MAX_DEPTH) {
                assert_eq!(from_binary(&fast).map(|_| ()), Ok(()), "{t}");
            }
        }
    }

    #[test]
    fn detached_binaries_put_back_give_the_plain_encoding() {
        let mut rng = crate::term::testgen::Rng(0x9e37_79b9_7f4a_7c15);
        let mut detached_some = 0;
        for _ in 0..3000 {
            let original = crate::term::testgen::term(&mut rng, 4);
            let mut plain = Vec::new();
            if encode(&original, &mut plain).is_err() {
                continue;
            }
            let mut t = original.clone();
            let binaries = detach_binaries(&mut t, 5);
            let expected: usize = binaries.iter().map(|(_, b)| b.len()).sum();
            let mut d = Detached::new(vec![7], binaries);
            encode_detached(&t, &mut d).expect("encodes as before");
            assert!(d.complete(), "{original}");
            assert_eq!(
                d.spans.iter().map(|(_, b)| b.len()).sum::<usize>(),
                expected
            );
            detached_some += usize::from(!d.spans.is_empty());
            let mut joined = Vec::new();
            let mut at = 0;
            for (offset, bytes) in &d.spans {
                joined.extend_from_slice(&d.buf[at..*offset]);
                joined.extend_from_slice(bytes);
                at = *offset;
            }
            joined.extend_from_slice(&d.buf[at..]);
            assert_eq!(joined[1..], plain[..], "{original}");
        }
        assert!(detached_some > 300, "{detached_some}");
    }

    #[test]
    fn word_bignums_match_the_general_encoding() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![i64::MIN, i64::MAX, i64::MIN + 1, 1 << 31, -(1 << 31) - 1];
        for shift in 31..64 {
            values.push(1i64 << shift.min(62));
            values.push(-(1i64 << shift.min(62)));
        }
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x as i64) >> (x % 40));
        }
        for v in values {
            let wide = num_bigint::BigInt::from(v);
            let mut general = Vec::new();
            if i32::try_from(v).is_ok() {
                integer(v, &mut general);
            } else {
                let (sign, digits) = wide.to_bytes_le();
                general.extend_from_slice(&[SMALL_BIG_EXT, digits.len() as u8]);
                general.push(u8::from(sign == num_bigint::Sign::Minus));
                general.extend_from_slice(&digits);
            }
            let (mut fast, mut via_big) = (Vec::new(), Vec::new());
            integer(v, &mut fast);
            big(&wide, &mut via_big).expect("encodes");
            assert_eq!(fast, general, "{v}");
            assert_eq!(via_big, general, "{v}");
        }
    }

    #[test]
    fn short_binaries_decode_into_the_term_and_long_ones_onto_the_heap() {
        use crate::term::Binary;
        for (n, inline) in [
            (0, true),
            (Binary::INLINE, true),
            (Binary::INLINE + 1, false),
        ] {
            let bytes = to_binary(&term::binary(vec![7u8; n])).expect("encodes");
            match from_binary(&bytes).expect("decodes") {
                Term::Binary(b) => {
                    assert_eq!(b.bytes.as_slice(), vec![7u8; n].as_slice());
                    assert_eq!(!b.bytes.spilled(), inline, "{n} bytes");
                }
                other => panic!("{other}"),
            }
        }
        // The room is there already: inline bytes do not make a term larger.
        assert!(std::mem::size_of::<Term>() <= 48);
    }

    #[test]
    fn terms_round_trip() {
        for t in [
            term::atom("héllo"),
            term::atom(""),
            Term::Float(Float { value: -0.0 }),
            crate::tup![term::atom("a"), term::binary(vec![1, 2, 3]), term::nil()],
            Term::ImproperList(term::ImproperList::from((
                vec![term::atom("alias")],
                Term::Reference(Box::new(term::Reference {
                    node: "n@h".into(),
                    id: vec![1, 2, 3],
                    creation: 9,
                })),
            ))),
            Term::Pid(term::Pid::new("a@b", 1, 2, 3)),
            Term::Map(term::Map::from([(term::atom("k"), term::int(1 << 33))])),
        ] {
            roundtrip(&t);
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut t = term::nil();
        for _ in 0..200_000 {
            t = term::list(vec![t]);
        }
        let bytes = to_binary(&t).expect("encodes");
        assert!(bytes.len() > 200_000 * 5);
        // Drop iteratively too: a 200,000-deep Term would overflow in Drop.
        let mut cur = t;
        loop {
            match cur {
                Term::List(mut l) if !l.elements.is_empty() => cur = l.elements.remove(0),
                _ => break,
            }
        }
    }
}

// ------------------------------------------------------------------ decoding

/// Why bytes are not a term we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("term truncated at byte {0}")]
    Truncated(usize),
    #[error("unsupported term tag {tag} at byte {at}")]
    UnknownTag { tag: u8, at: usize },
    #[error("term nested too deep at byte {0}")]
    TooDeep(usize),
    #[error("invalid {what} at byte {at}")]
    Invalid { what: &'static str, at: usize },
}

/// Deepest nesting accepted: `Term` is dropped recursively, so this bounds the
/// stack any received term can need.
pub const MAX_DEPTH: usize = 256;

/// `binary_to_term/1` for one term: the version byte is optional.
/// Returns the term and the offset just past it.
///
/// Never panics, and never allocates more than a small multiple of the input:
/// every element count is checked against the bytes that remain before any
/// vector is sized.
pub fn decode_at(buf: &[u8], pos: usize) -> Result<(Term, usize), DecodeError> {
    decode_inner(buf, pos, MAX_DEPTH, &mut None, &[])
}

/// [`decode_at`] of a term that follows a distribution header with atom
/// cache references: `ATOM_CACHE_REF` `i` stands for `atoms[i]` (the
/// header's `i`th reference, resolved against the connection's cache).
pub fn decode_at_cached(
    buf: &[u8],
    pos: usize,
    atoms: &[crate::term::Atom],
) -> Result<(Term, usize), DecodeError> {
    decode_inner(buf, pos, MAX_DEPTH, &mut None, atoms)
}

/// Terms decoded one after another by one decoder, for a caller that takes
/// a term apart as it goes (the distribution's control tuples, element by
/// element, without the tuple built first). Atom cache references as for
/// [`decode_at_cached`]; no version bytes, no compressed terms.
pub struct Terms<'a> {
    d: Decoder<'a>,
}

impl<'a> Terms<'a> {
    pub fn new(buf: &'a [u8], pos: usize, atoms: &'a [crate::term::Atom]) -> Self {
        let mut d = Decoder::new(buf, pos, MAX_DEPTH, None);
        d.atoms = atoms;
        Terms { d }
    }

    /// Where the next term starts.
    pub fn pos(&self) -> usize {
        self.d.pos
    }

    /// The next term, counted one level deep (it is an element); `None`
    /// when it does not decode (the caller's general path says why).
    pub fn next_term(&mut self) -> Option<Term> {
        self.d.one(1).ok()
    }

    /// The next term when it is a pid (as [`next_term`](Self::next_term)
    /// decodes it, without the `Term` around it); `None` for anything
    /// else, or a pid that does not decode (after which the position is
    /// unspecified: the caller gives these terms up).
    #[inline]
    pub fn next_pid(&mut self) -> Option<crate::term::Pid> {
        let tag = *self.d.buf.get(self.d.pos)?;
        if tag != NEW_PID_EXT && tag != PID_EXT {
            return None;
        }
        self.d.pos += 1;
        self.d.pid_after(tag).ok()
    }

    /// Passes the next term when it is a pid that [`next_pid`](Self::next_pid)
    /// would decode, without decoding it (no atom cloned, nothing to drop);
    /// `None` as `next_pid`.
    #[inline]
    pub fn skip_pid(&mut self) -> Option<()> {
        let d = &mut self.d;
        let tag = *d.buf.get(d.pos)?;
        if tag != NEW_PID_EXT && tag != PID_EXT {
            return None;
        }
        d.pos += 1;
        let atom_tag = d.u8().ok()?;
        match atom_tag {
            ATOM_CACHE_REF => {
                let i = usize::from(d.u8().ok()?);
                if i >= d.atoms.len() {
                    return None;
                }
            }
            // Latin-1 text is any bytes.
            SMALL_ATOM_EXT => {
                let n = usize::from(d.u8().ok()?);
                d.bytes(n).ok()?;
            }
            ATOM_EXT => {
                let n = usize::from(d.u16().ok()?);
                d.bytes(n).ok()?;
            }
            // UTF-8 text is checked as when it is decoded.
            SMALL_ATOM_UTF8_EXT => {
                let n = usize::from(d.u8().ok()?);
                std::str::from_utf8(d.bytes(n).ok()?).ok()?;
            }
            ATOM_UTF8_EXT => {
                let n = usize::from(d.u16().ok()?);
                std::str::from_utf8(d.bytes(n).ok()?).ok()?;
            }
            _ => return None,
        }
        d.bytes(if tag == NEW_PID_EXT { 12 } else { 9 }).ok()?;
        Some(())
    }

    /// The next term when it is an atom (see [`next_pid`](Self::next_pid)).
    #[inline]
    pub fn next_atom(&mut self) -> Option<crate::term::Atom> {
        let at = self.d.pos;
        let tag = self.d.u8().ok()?;
        self.d.atom_after(tag, at).ok()
    }
}

/// Where the term at `pos` starts once its optional version byte is passed,
/// and whether it is `term_to_binary(T, [compressed])`.
fn term_start(buf: &[u8], pos: usize) -> (usize, bool) {
    let versioned = buf.get(pos) == Some(&VERSION);
    let start = if versioned { pos + 1 } else { pos };
    (start, versioned && buf.get(start) == Some(&COMPRESSED))
}

/// What every entry point runs: a compressed term is inflated (and keeps
/// [`MAX_DEPTH`]); any other is decoded with `max_depth`, offering `hole`
/// to its binaries and leaving it in place when none takes it.
#[inline]
fn decode_inner(
    buf: &[u8],
    pos: usize,
    max_depth: usize,
    hole: &mut Option<Hole>,
    atoms: &[crate::term::Atom],
) -> Result<(Term, usize), DecodeError> {
    let (start, compressed) = term_start(buf, pos);
    if compressed {
        let t = decompress(buf, start + 1, MAX_INFLATED)?;
        return Ok((t, buf.len()));
    }
    let mut d = Decoder::new(buf, start, max_depth, hole.take());
    d.atoms = atoms;
    let r = d.term(0);
    *hole = d.hole.take();
    Ok((r?, d.pos))
}

/// A binary's contents held apart from the bytes being decoded: `buf` has
/// the binary's tag and length, the contents (`bytes`) belong at `at`.
/// Reassembly fills such a buffer as fragments arrive, so a large binary is
/// not copied out of the joined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    pub at: usize,
    pub bytes: Vec<u8>,
}

/// [`decode_at_cached`] of bytes that leave out one binary's contents, given
/// in `hole`: the binary whose contents belong at `hole.at` gets them (taken
/// out of `hole`, which is `None` afterwards) without a copy. A term that
/// does not meet the hole leaves it in place.
pub fn decode_at_with_hole(
    buf: &[u8],
    pos: usize,
    hole: &mut Option<Hole>,
    atoms: &[crate::term::Atom],
) -> Result<(Term, usize), DecodeError> {
    let (start, compressed) = term_start(buf, pos);
    if compressed {
        return Err(DecodeError::Invalid {
            what: "compressed term around a held-apart binary",
            at: start,
        });
    }
    decode_inner(buf, pos, MAX_DEPTH, hole, atoms)
}

const COMPRESSED: u8 = 80;

/// The largest term we inflate: the declared size is checked before any
/// buffer is sized, and inflating stops there.
pub const MAX_INFLATED: usize = 256 << 20;

fn decompress(buf: &[u8], pos: usize, max: usize) -> Result<Term, DecodeError> {
    use std::io::Read;
    let header = buf.get(pos..pos + 4).ok_or(DecodeError::Truncated(pos))?;
    let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let input = &buf[pos + 4..];
    // zlib cannot expand data by more than about 1032:1, so a declared size
    // beyond that for this input is a lie, refused before allocating for it.
    if size > max || size > input.len().saturating_mul(1032) + 64 {
        return Err(DecodeError::Invalid {
            what: "compressed term size",
            at: pos,
        });
    }
    let mut inflated = Vec::with_capacity(size);
    let mut reader = flate2::read::ZlibDecoder::new(input).take(size as u64 + 1);
    reader
        .read_to_end(&mut inflated)
        .map_err(|_| DecodeError::Invalid {
            what: "zlib data",
            at: pos + 4,
        })?;
    if inflated.len() != size {
        return Err(DecodeError::Invalid {
            what: "compressed term size",
            at: pos,
        });
    }
    let mut d = Decoder::new(&inflated, 0, MAX_DEPTH, None);
    let t = d.term(0)?;
    if d.pos != inflated.len() {
        return Err(DecodeError::Invalid {
            what: "trailing bytes in compressed term",
            at: pos,
        });
    }
    Ok(t)
}

/// Decodes exactly one term filling `buf` (version byte optional).
#[inline]
pub fn from_binary(buf: &[u8]) -> Result<Term, DecodeError> {
    from_binary_nested(buf, MAX_DEPTH)
}

/// [`from_binary`] admitting nesting up to `max_depth` rather than
/// [`MAX_DEPTH`], for our own files whose wrapping adds levels.
/// Compressed terms keep the default.
#[inline]
pub fn from_binary_nested(buf: &[u8], max_depth: usize) -> Result<Term, DecodeError> {
    whole(buf, max_depth, &[])
}

/// [`from_binary`] of a term after a distribution header with atom cache
/// references (see [`decode_at_cached`]).
pub fn from_binary_cached(buf: &[u8], atoms: &[crate::term::Atom]) -> Result<Term, DecodeError> {
    whole(buf, MAX_DEPTH, atoms)
}

/// Exactly one term filling `buf`.
#[inline]
fn whole(buf: &[u8], max_depth: usize, atoms: &[crate::term::Atom]) -> Result<Term, DecodeError> {
    let (t, end) = decode_inner(buf, 0, max_depth, &mut None, atoms)?;
    if end != buf.len() {
        return Err(DecodeError::Invalid {
            what: "trailing bytes",
            at: end,
        });
    }
    Ok(t)
}

/// Where a decoded term goes: the element vector of the container being
/// decoded, or a single slot. Each term is put straight into its place;
/// returning a 48-byte `Term` up the recursion instead costs a copy at every
/// level, and the copy's wide loads of a value just written by narrower
/// stores stall (about a third of a small tuple's decoding time).
trait Put {
    fn put(&mut self, term: Term);
}

impl Put for Vec<Term> {
    #[inline(always)]
    fn put(&mut self, term: Term) {
        self.push(term);
    }
}

impl Put for Option<Term> {
    #[inline(always)]
    fn put(&mut self, term: Term) {
        *self = Some(term);
    }
}

/// Decoding stopped; why is in [`Decoder::error`]. Zero-sized, so the
/// recursion's result fits a register.
struct Stop;

type Step<T> = Result<T, Stop>;

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// See [`decode_at_with_hole`].
    hole: Option<Hole>,
    max_depth: usize,
    /// What `ATOM_CACHE_REF`s stand for (see [`decode_at_cached`]); empty
    /// outside the distribution, where the tag is invalid.
    atoms: &'a [crate::term::Atom],
    /// Why decoding stopped, once it has.
    error: Option<DecodeError>,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], pos: usize, max_depth: usize, hole: Option<Hole>) -> Self {
        Decoder {
            buf,
            pos,
            hole,
            max_depth,
            atoms: &[],
            error: None,
        }
    }

    /// The whole term at the current position.
    #[inline]
    fn term(&mut self, depth: usize) -> Result<Term, DecodeError> {
        let at = self.pos;
        match self.one(depth) {
            Ok(t) => Ok(t),
            Err(Stop) => Err(self
                .error
                .take()
                .unwrap_or(DecodeError::Invalid { what: "term", at })),
        }
    }

    #[cold]
    fn fail<T>(&mut self, error: DecodeError) -> Step<T> {
        self.error = Some(error);
        Err(Stop)
    }

    #[cold]
    fn truncated<T>(&mut self) -> Step<T> {
        let at = self.pos;
        self.fail(DecodeError::Truncated(at))
    }

    #[cold]
    fn invalid<T>(&mut self, what: &'static str, at: usize) -> Step<T> {
        self.fail(DecodeError::Invalid { what, at })
    }

    #[inline]
    fn bytes(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => self.truncated(),
        }
    }

    /// The next `N` bytes as an array (bounds checked once, no slice
    /// arithmetic that could overflow).
    #[inline]
    fn array<const N: usize>(&mut self) -> Step<[u8; N]> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.first_chunk::<N>() {
            Some(a) => {
                self.pos += N;
                Ok(*a)
            }
            None => self.truncated(),
        }
    }

    #[inline]
    fn u8(&mut self) -> Step<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.truncated(),
        }
    }

    #[inline]
    fn u16(&mut self) -> Step<u16> {
        self.array().map(u16::from_be_bytes)
    }

    #[inline]
    fn u32(&mut self) -> Step<u32> {
        self.array().map(u32::from_be_bytes)
    }

    #[inline]
    fn u64(&mut self) -> Step<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// An element count, refused when the remaining bytes cannot hold that many
    /// elements of at least `min_size` bytes each.
    #[inline]
    fn count(&mut self, n: usize, min_size: usize) -> Step<usize> {
        let remaining = self.buf.len() - self.pos;
        if n.saturating_mul(min_size) > remaining {
            return self.truncated();
        }
        Ok(n)
    }

    /// The atom's text, inline in the `SmolStr` (no allocation) when it is
    /// 23 bytes or shorter, as nearly every atom is.
    #[inline]
    fn atom_text(&mut self, len: usize, utf8: bool) -> Step<smol_str::SmolStr> {
        let at = self.pos;
        let b = self.bytes(len)?;
        if utf8 || b.is_ascii() {
            match std::str::from_utf8(b) {
                Ok(text) => Ok(smol_str::SmolStr::new(text)),
                Err(_) => self.invalid("UTF-8 atom", at),
            }
        } else {
            Ok(b.iter().map(|&c| char::from(c)).collect())
        }
    }

    fn atom(&mut self) -> Step<crate::term::Atom> {
        let at = self.pos;
        let tag = self.u8()?;
        self.atom_after(tag, at)
    }

    /// The atom whose tag, read at `at`, was `tag`.
    #[inline]
    fn atom_after(&mut self, tag: u8, at: usize) -> Step<crate::term::Atom> {
        let name = match tag {
            SMALL_ATOM_UTF8_EXT => {
                let n = usize::from(self.u8()?);
                self.atom_text(n, true)?
            }
            ATOM_UTF8_EXT => {
                let n = usize::from(self.u16()?);
                self.atom_text(n, true)?
            }
            SMALL_ATOM_EXT => {
                let n = usize::from(self.u8()?);
                self.atom_text(n, false)?
            }
            ATOM_EXT => {
                let n = usize::from(self.u16()?);
                self.atom_text(n, false)?
            }
            ATOM_CACHE_REF => {
                let i = usize::from(self.u8()?);
                return match self.atoms.get(i) {
                    Some(a) => Ok(a.clone()),
                    None => self.invalid("atom cache reference", at),
                };
            }
            _ => return self.invalid("atom", at),
        };
        Ok(crate::term::Atom::from(name))
    }

    /// The pid whose tag (`NEW_PID_EXT` or `PID_EXT`) was `tag`.
    #[inline]
    fn pid_after(&mut self, tag: u8) -> Step<crate::term::Pid> {
        let node = self.atom()?;
        let id = self.u32()?;
        let serial = self.u32()?;
        let creation = if tag == NEW_PID_EXT {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        Ok(crate::term::Pid {
            node,
            id,
            serial,
            creation,
        })
    }

    /// One term, returned rather than put in a container.
    #[inline]
    fn one(&mut self, depth: usize) -> Step<Term> {
        let at = self.pos;
        let mut slot = None;
        self.term_to(depth, &mut slot)?;
        match slot {
            Some(t) => Ok(t),
            None => self.invalid("term", at),
        }
    }

    fn small_int(&mut self, depth: usize) -> Step<i64> {
        let at = self.pos;
        match self.one(depth + 1)? {
            Term::FixInteger(i) => Ok(i64::from(i.value)),
            _ => self.invalid("integer", at),
        }
    }

    fn pid_term(&mut self, depth: usize) -> Step<crate::term::Pid> {
        let at = self.pos;
        match self.one(depth + 1)? {
            Term::Pid(p) => Ok(p),
            _ => self.invalid("pid", at),
        }
    }

    /// `n` terms, each put straight into a new vector.
    #[inline]
    fn elements(&mut self, n: usize, depth: usize) -> Step<Vec<Term>> {
        let mut elements = Vec::with_capacity(n);
        for _ in 0..n {
            self.term_to(depth + 1, &mut elements)?;
        }
        Ok(elements)
    }

    /// Decodes one term into `out`.
    fn term_to<P: Put>(&mut self, depth: usize, out: &mut P) -> Step<()> {
        use crate::term::{
            BigInteger, Binary, BitBinary, ByteList, ExternalFun, FixInteger, Float, ImproperList,
            List, Map, Port, Reference, Tuple,
        };
        let at = self.pos;
        if depth > self.max_depth {
            return self.fail(DecodeError::TooDeep(at));
        }
        let tag = self.u8()?;
        match tag {
            SMALL_INTEGER_EXT => {
                let v = self.u8()?;
                out.put(Term::FixInteger(FixInteger::from(i32::from(v))));
            }
            INTEGER_EXT => {
                let v = self.u32()?;
                out.put(Term::FixInteger(FixInteger::from(v as i32)));
            }
            NEW_FLOAT_EXT => {
                let v = f64::from_bits(self.u64()?);
                if !v.is_finite() {
                    return self.invalid("float", at);
                }
                out.put(Term::Float(Float { value: v }));
            }
            FLOAT_EXT => {
                let b = self.bytes(31)?;
                let text = std::str::from_utf8(b)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').trim());
                match text.and_then(|s| s.parse::<f64>().ok()) {
                    Some(v) if v.is_finite() => out.put(Term::Float(Float { value: v })),
                    _ => return self.invalid("float", at),
                }
            }
            SMALL_ATOM_UTF8_EXT | ATOM_UTF8_EXT | SMALL_ATOM_EXT | ATOM_EXT | ATOM_CACHE_REF => {
                let a = self.atom_after(tag, at)?;
                out.put(Term::Atom(a));
            }
            SMALL_TUPLE_EXT | LARGE_TUPLE_EXT => {
                let n = if tag == SMALL_TUPLE_EXT {
                    usize::from(self.u8()?)
                } else {
                    self.u32()? as usize
                };
                let n = self.count(n, 1)?;
                let elements = self.elements(n, depth)?;
                out.put(Term::Tuple(Tuple { elements }));
            }
            NIL_EXT => out.put(Term::List(List::nil())),
            STRING_EXT => {
                let n = usize::from(self.u16()?);
                let bytes = self.bytes(n)?.to_vec();
                out.put(Term::ByteList(ByteList::from(bytes)));
            }
            LIST_EXT => {
                let n = self.u32()? as usize;
                let n = self.count(n, 1)?;
                let mut elements = self.elements(n, depth)?;
                let tail = self.one(depth + 1)?;
                // Whatever cells the tail adds join these, as on the BEAM: no
                // cells here is just the tail, a list tail makes one longer list.
                if elements.is_empty() {
                    out.put(tail);
                    return Ok(());
                }
                out.put(match tail {
                    Term::List(mut l) => {
                        elements.append(&mut l.elements);
                        Term::List(List { elements })
                    }
                    Term::ByteList(b) => {
                        elements.extend(b.bytes.iter().map(|&x| Term::FixInteger(x.into())));
                        Term::List(List { elements })
                    }
                    Term::ImproperList(mut l) => {
                        elements.append(&mut l.elements);
                        Term::ImproperList(ImproperList {
                            elements,
                            last: l.last,
                        })
                    }
                    last => Term::ImproperList(ImproperList {
                        elements,
                        last: Box::new(last),
                    }),
                });
            }
            BINARY_EXT => {
                let n = self.u32()? as usize;
                match self.hole.take() {
                    Some(h) if h.at == self.pos && h.bytes.len() == n => {
                        out.put(Term::Binary(Binary::from(h.bytes)))
                    }
                    other => {
                        self.hole = other;
                        // Up to `Binary::INLINE` bytes are copied into the
                        // term itself, with no allocation.
                        let bytes = self.bytes(n)?;
                        out.put(Term::Binary(Binary::from(bytes)));
                    }
                }
            }
            BIT_BINARY_EXT => {
                let n = self.u32()? as usize;
                let bits = self.u8()?;
                // As `binary_to_term`: no bits exactly when no bytes.
                if (bits == 0) != (n == 0) || bits > 8 {
                    return self.invalid("bit count", at);
                }
                let mut bytes = self.bytes(n)?.to_vec();
                if let Some(last) = bytes.last_mut() {
                    // Low end, as `BitBinary` keeps them (see `encode`).
                    *last >>= 8 - bits;
                }
                out.put(if bits == 8 {
                    Term::Binary(Binary::from(bytes))
                } else {
                    Term::BitBinary(BitBinary {
                        bytes,
                        tail_bits_size: bits,
                    })
                });
            }
            SMALL_BIG_EXT | LARGE_BIG_EXT => {
                let n = if tag == SMALL_BIG_EXT {
                    usize::from(self.u8()?)
                } else {
                    self.u32()? as usize
                };
                let sign = self.u8()?;
                let digits = self.bytes(n)?;
                let sign = match sign {
                    0 => num_bigint::Sign::Plus,
                    1 => num_bigint::Sign::Minus,
                    _ => return self.invalid("bignum sign", at),
                };
                if let Some(word) = word_of(digits) {
                    // Up to 64 bits: no BigInt arithmetic to find the value.
                    let v = if sign == num_bigint::Sign::Minus {
                        -i128::from(word)
                    } else {
                        i128::from(word)
                    };
                    out.put(match i32::try_from(v) {
                        Ok(small) => Term::FixInteger(FixInteger::from(small)),
                        Err(_) => Term::BigInteger(BigInteger {
                            value: num_bigint::BigInt::from(v),
                        }),
                    });
                    return Ok(());
                }
                let v = num_bigint::BigInt::from_bytes_le(sign, digits);
                // The BEAM's own terms never carry a 32-bit value as a bignum,
                // but normalise so equal integers compare equal.
                out.put(match i32::try_from(&v) {
                    Ok(small) => Term::FixInteger(FixInteger::from(small)),
                    Err(_) => Term::BigInteger(BigInteger { value: v }),
                });
            }
            NEW_PID_EXT | PID_EXT => {
                let pid = self.pid_after(tag)?;
                out.put(Term::Pid(pid));
            }
            NEW_PORT_EXT | PORT_EXT | V4_PORT_EXT => {
                let node = self.atom()?;
                let id = if tag == V4_PORT_EXT {
                    self.u64()?
                } else {
                    u64::from(self.u32()?)
                };
                let creation = if tag == PORT_EXT {
                    u32::from(self.u8()?)
                } else {
                    self.u32()?
                };
                out.put(Term::Port(Port { node, id, creation }));
            }
            NEWER_REFERENCE_EXT | NEW_REFERENCE_EXT => {
                let n = usize::from(self.u16()?);
                if n == 0 || n > 5 {
                    return self.invalid("reference", at);
                }
                let node = self.atom()?;
                let creation = if tag == NEWER_REFERENCE_EXT {
                    self.u32()?
                } else {
                    u32::from(self.u8()?)
                };
                let mut id = Vec::with_capacity(n);
                for _ in 0..n {
                    id.push(self.u32()?);
                }
                out.put(Term::Reference(Box::new(Reference { node, id, creation })));
            }
            REFERENCE_EXT => {
                let node = self.atom()?;
                let id = vec![self.u32()?];
                let creation = u32::from(self.u8()?);
                out.put(Term::Reference(Box::new(Reference { node, id, creation })));
            }
            EXPORT_EXT => {
                let module = self.atom()?;
                let function = self.atom()?;
                let arity = self.small_int(depth)?;
                let Ok(arity) = u8::try_from(arity) else {
                    return self.invalid("arity", at);
                };
                out.put(Term::ExternalFun(Box::new(ExternalFun {
                    module,
                    function,
                    arity,
                })));
            }
            NEW_FUN_EXT => {
                // The size counts itself and what follows, not the tag.
                let size = self.u32()? as usize;
                let end = (at + 1).checked_add(size).filter(|&e| e <= self.buf.len());
                let Some(end) = end else {
                    return self.fail(DecodeError::Truncated(at));
                };
                let arity = self.u8()?;
                let mut uniq = [0u8; 16];
                uniq.copy_from_slice(self.bytes(16)?);
                let index = self.u32()?;
                let num_free = self.u32()? as usize;
                let num_free = self.count(num_free, 1)?;
                let module = self.atom()?;
                let old_index = self.small_int(depth)? as i32;
                let old_uniq = self.small_int(depth)? as i32;
                let pid = self.pid_term(depth)?;
                let free_vars = self.elements(num_free, depth)?;
                if self.pos != end {
                    return self.invalid("fun size", at);
                }
                out.put(Term::InternalFun(Box::new(InternalFun::New {
                    module,
                    arity,
                    pid,
                    free_vars,
                    index,
                    uniq,
                    old_index,
                    old_uniq,
                })));
            }
            FUN_EXT => {
                let num_free = self.u32()? as usize;
                let num_free = self.count(num_free, 1)?;
                let pid = self.pid_term(depth)?;
                let module = self.atom()?;
                let index = self.small_int(depth)? as i32;
                let uniq = self.small_int(depth)? as i32;
                let free_vars = self.elements(num_free, depth)?;
                out.put(Term::InternalFun(Box::new(InternalFun::Old {
                    module,
                    pid,
                    free_vars,
                    index,
                    uniq,
                })));
            }
            MAP_EXT => {
                let n = self.u32()? as usize;
                let n = self.count(n, 2)?;
                let mut map = crate::term::TermMap::with_capacity(n);
                for _ in 0..n {
                    let k = self.one(depth + 1)?;
                    let v = self.one(depth + 1)?;
                    map.insert(k, v);
                }
                out.put(Term::Map(Map { map }));
            }
            _ => return self.fail(DecodeError::UnknownTag { tag, at }),
        }
        Ok(())
    }
}

/// The value of little-endian bignum digits when they fit 64 bits.
#[inline]
fn word_of(digits: &[u8]) -> Option<u64> {
    let mut w = [0u8; 8];
    w.get_mut(..digits.len())?.copy_from_slice(digits);
    Some(u64::from_le_bytes(w))
}

const ATOM_EXT: u8 = 100;
const ATOM_CACHE_REF: u8 = 82;
const SMALL_ATOM_EXT: u8 = 115;
const FLOAT_EXT: u8 = 99;
const PID_EXT: u8 = 103;
const PORT_EXT: u8 = 102;
const REFERENCE_EXT: u8 = 101;
const NEW_REFERENCE_EXT: u8 = 114;

#[cfg(test)]
mod decode_tests {
    use super::*;
    use crate::term;

    #[test]
    fn a_referencing_encoding_decodes_with_its_atoms() {
        let many: Vec<Term> = (0..100).map(|i| term::atom(&format!("a{i}"))).collect();
        let t = crate::tup![
            term::atom("ok"),
            Term::Pid(term::Pid::new("a@host", 1, 2, 3)),
            Term::from(term::ExternalFun::from(("m", "f", 2))),
            term::list(many),
            term::atom("ok")
        ];
        let mut r: Referencing = Referencing::default();
        r.start(1 << 20);
        encode_referencing(&t, &mut r).expect("encodes");
        assert!(!r.too_large());
        assert_eq!(r.atoms.len(), 1 + 1 + 2 + 100, "each distinct atom once");
        assert_eq!(
            r.atoms[..2],
            [term::Atom::from("ok"), term::Atom::from("a@host")]
        );
        let (back, end) = decode_at_cached(&r.buf, 0, &r.atoms).expect("decodes");
        assert_eq!((back, end), (t, r.buf.len()));
        // Refused as text would be: an atom the BEAM cannot hold.
        r.start(1 << 20);
        let long = term::atom(&"x".repeat(256));
        assert!(matches!(
            encode_referencing(&long, &mut r),
            Err(EncodeError::AtomTooLong(_))
        ));
        // A binary of the size given or more is left out and flagged.
        r.start(10);
        encode_referencing(&term::binary(vec![0; 10]), &mut r).expect("encodes");
        assert!(r.too_large());
        // A body that outgrows it stops encoding, flagged.
        r.start(10);
        let long = term::list((0..1000).map(term::int).collect());
        assert!(encode_referencing(&long, &mut r).is_err());
        assert!(r.too_large() && r.buf.len() < 20);
    }

    #[test]
    fn atom_cache_references_stand_for_their_atoms_wherever_an_atom_goes() {
        let atoms = [term::Atom::from("a@host"), term::Atom::from("ok")];
        // {ok, <a@host.1.2.3>, fun ok:ok/1} with every atom a reference.
        let bytes = [
            104, 3, 82, 1, 88, 82, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 113, 82, 1, 82, 1, 97, 1,
        ];
        let (t, end) = decode_at_cached(&bytes, 0, &atoms).expect("decodes");
        assert_eq!(end, bytes.len());
        assert_eq!(
            t,
            crate::tup![
                term::atom("ok"),
                Term::Pid(term::Pid::new("a@host", 1, 2, 3)),
                Term::from(term::ExternalFun::from(("ok", "ok", 1)))
            ]
        );
    }

    #[test]
    fn compressed_terms_decode_and_lies_are_refused() {
        let t = term::list(
            (0..100)
                .map(|_| crate::tup![term::atom("a"), term::binary("xyz")])
                .collect(),
        );
        let plain = to_binary(&t).expect("encode");
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &plain[1..]).expect("deflate");
        let deflated = z.finish().expect("deflate");
        let mut bytes = vec![131, 80];
        bytes.extend_from_slice(&((plain.len() - 1) as u32).to_be_bytes());
        bytes.extend_from_slice(&deflated);
        assert_eq!(from_binary(&bytes).expect("decode"), t);
        // A declared size the data cannot back is refused without allocating it.
        let mut lie = vec![131, 80, 0x0f, 0xff, 0xff, 0xff];
        lie.extend_from_slice(&deflated);
        assert!(from_binary(&lie).is_err());
    }

    #[test]
    fn decodes_what_we_encode() {
        let t = crate::tup![
            term::atom("héllo"),
            term::list(vec![term::int(-1), term::int(1 << 40), term::nil()]),
            term::binary(vec![1, 2, 3]),
            Term::Pid(term::Pid::new("a@b", 1, 2, 3)),
            Term::Map(term::Map::from([(term::atom("k"), term::int(-7))])),
            Term::ImproperList(term::ImproperList::from((
                vec![term::atom("alias")],
                term::int(5)
            ))),
        ];
        let bytes = to_binary(&t).expect("encode");
        assert_eq!(from_binary(&bytes).expect("decode"), t);
    }

    #[test]
    fn word_sized_bignums_decode_like_the_general_path() {
        let mut rng = crate::term::testgen::Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000u64 {
            let n = (i % 10) as usize; // 0..=9 digit bytes: both paths
            let sign = (rng.next() % 2) as u8;
            let digits: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let mut bytes = vec![131, SMALL_BIG_EXT, n as u8, sign];
            bytes.extend_from_slice(&digits);
            let s = if sign == 1 {
                num_bigint::Sign::Minus
            } else {
                num_bigint::Sign::Plus
            };
            let v = num_bigint::BigInt::from_bytes_le(s, &digits);
            let expected = match i32::try_from(&v) {
                Ok(small) => term::int(i64::from(small)),
                Err(_) => Term::BigInteger(term::BigInteger { value: v }),
            };
            assert_eq!(from_binary(&bytes), Ok(expected), "{bytes:?}");
        }
        // Cut short: refused, never a panic.
        assert!(from_binary(&[131, SMALL_BIG_EXT, 8, 0, 1, 2]).is_err());
        assert!(from_binary(&[131, NEW_FLOAT_EXT, 1, 2, 3]).is_err());
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        // LIST_EXT claiming 2^32-1 elements, then nothing.
        assert!(matches!(
            from_binary(&[131, 108, 255, 255, 255, 255]),
            Err(DecodeError::Truncated(_))
        ));
        assert!(matches!(
            from_binary(&[131, 116, 255, 255, 255, 255, 106]),
            Err(DecodeError::Truncated(_))
        ));
        // An atom cache reference outside a distribution header's message,
        // and one past the header's references.
        assert!(matches!(
            from_binary(&[131, 82, 0]),
            Err(DecodeError::Invalid {
                what: "atom cache reference",
                ..
            })
        ));
        let atoms = [crate::term::Atom::from("sink")];
        assert!(matches!(
            decode_at_cached(&[131, 82, 1], 0, &atoms),
            Err(DecodeError::Invalid {
                what: "atom cache reference",
                ..
            })
        ));
        let mut deep = vec![131];
        for _ in 0..1000 {
            deep.extend_from_slice(&[104, 1]);
        }
        deep.push(106);
        assert!(matches!(from_binary(&deep), Err(DecodeError::TooDeep(_))));
    }
}
