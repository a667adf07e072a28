//! Length-prefixed frames: decoding (with fragment reassembly) and encoding.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::atom_cache::AtomCache;
use super::scan;
use crate::term::etf::Hole;
use crate::term::Atom;

/// A tick: a frame of length zero, sent to keep the connection alive.
pub const TICK: [u8; 4] = [0, 0, 0, 0];

/// First byte of a frame without distribution header.
pub const PASS_THROUGH: u8 = 112;
const VERSION_MAGIC: u8 = 131;
const DIST_HEADER: u8 = 68;
const DIST_FRAG_HEADER: u8 = 69;
const DIST_FRAG_CONT: u8 = 70;

/// `131, 68, NumberOfAtomCacheRefs` without references.
const NORMAL_HEADER_LEN: usize = 3;
/// The most a header's atom cache references can take: the count, the flag
/// bytes, and 255 new entries of the longest atom (255 characters of up to
/// four bytes, with a two-byte length).
const MAX_ATOM_REFS_LEN: usize = 1 + 128 + 255 * (1 + 2 + 255 * 4);
/// The normal distribution header without atom cache references, what
/// [`dist_header_frame`] puts after the length prefix.
pub const NORMAL_DIST_HEADER: [u8; NORMAL_HEADER_LEN] = [VERSION_MAGIC, DIST_HEADER, 0];
/// `131, 69, SequenceId, FragmentId, NumberOfAtomCacheRefs` without
/// references.
const FRAG_HEADER_LEN: usize = 2 + 8 + 8 + 1;
/// `131, 70, SequenceId, FragmentId`.
const FRAG_CONT_LEN: usize = 2 + 8 + 8;

/// Default bound on one (reassembled) message: 1 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;
/// Default bound on fragment sequences open at once. OTP uses the sending
/// process as the sequence id, so this is "processes concurrently sending us
/// large messages".
pub const DEFAULT_MAX_OPEN_SEQUENCES: usize = 1024;
/// The fragment payload size OTP itself uses (`ERTS_DIST_FRAGMENT_SIZE`).
pub const DEFAULT_FRAGMENT_SIZE: usize = 64 * 1024;
/// How much a connection's reader asks for at a time. Frames split off a read
/// buffer keep it alive until they are dropped, so a new buffer is started
/// (and only the unfinished frame copied into it) once this is used up.
pub const READ_CHUNK: usize = 256 * 1024;

/// Binaries at least this large that run on past a message's first fragment
/// are gathered apart during reassembly (see [`Frame::Split`]).
const MIN_HELD_APART: usize = 64 * 1024;

/// A framing-level protocol violation. Every variant means the byte stream can
/// no longer be trusted: the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limits allow.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// The first two bytes of a frame are no header we know.
    #[error("unknown frame header {0}, {1}")]
    UnknownHeader(u8, u8),
    /// A header is truncated or inconsistent (out-of-order fragment, unknown
    /// or duplicate sequence, zero fragment id).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// More fragment sequences open at once than allowed.
    #[error("too many fragment sequences open at once")]
    TooManyOpenSequences,
    /// A sequence grew past the message limit, or all open sequences together
    /// past the reassembly limit.
    #[error("fragment reassembly exceeds its size limit")]
    ReassemblyTooLarge,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A keep-alive (length 0) frame.
    Tick,
    /// The body of one complete control message (control term followed by the
    /// optional message term), with any dist header removed and fragments
    /// reassembled.
    ///
    /// Terms from a pass-through (112) frame start with the version byte 131;
    /// terms after a distribution header do not (OTP rejects them if they do).
    /// [`decode_control`](super::decode_control) accepts both.
    Message(Bytes),
    /// A fragmented message whose largest binary's contents were gathered
    /// in a buffer of their own: `body` is the message without them, they
    /// belong at `hole.at`. Decode with
    /// [`decode_control_with_hole`](super::decode_control_with_hole), which
    /// gives them to the binary without a copy; [`Frame::joined`] is the
    /// plain body.
    Split { body: Bytes, hole: Hole },
}

/// What [`FrameDecoder::decode_in_place`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InPlace {
    /// A whole message, its body at this range of the buffer (the terms as
    /// in [`Frame::Message`]); the frame ends where the range does.
    Body(std::ops::Range<usize>),
    /// Anything else, as [`FrameDecoder::decode`] returns it.
    Frame(Frame),
}

impl Frame {
    /// A message's body as one buffer (`None` for a tick); copies a split one.
    pub fn joined(&self) -> Option<Bytes> {
        match self {
            Frame::Tick => None,
            Frame::Message(b) => Some(b.clone()),
            Frame::Split { body, hole } => Some(join_at(body, hole.at, &hole.bytes).freeze()),
        }
    }
}

/// `body` with `bytes` put back at `at` (clamped to its end): a split body
/// made whole, in one copy.
pub(super) fn join_at(body: &[u8], at: usize, bytes: &[u8]) -> BytesMut {
    let at = at.min(body.len());
    let mut out = BytesMut::with_capacity(body.len() + bytes.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&body[at..]);
    out
}

/// A fragment sequence being reassembled.
#[derive(Debug)]
struct Partial {
    /// The `FragmentId` the next continuation must carry.
    next_id: u64,
    /// The message so far, but for the contents of `hole`.
    data: BytesMut,
    /// A large binary's contents, gathered apart (see `FrameDecoder::start`).
    hole: Option<HeldApart>,
    /// Capacity reserved up front for this sequence (see `FrameDecoder::reserved`).
    reserved: usize,
    /// What the first fragment's atom cache references stand for.
    atoms: Vec<Atom>,
}

/// The contents of a binary that belong at `at` in a [`Partial`]'s data.
#[derive(Debug)]
struct HeldApart {
    at: usize,
    len: usize,
    bytes: Vec<u8>,
}

impl HeldApart {
    /// Bytes of the binary still to come.
    fn missing(&self) -> usize {
        self.len - self.bytes.len()
    }
}

impl Partial {
    /// Bytes received so far.
    fn len(&self) -> usize {
        self.data.len() + self.hole.as_ref().map_or(0, |h| h.bytes.len())
    }

    /// Appends a fragment's payload: up to the hole into `data`, then into
    /// the hole until it is full, the rest into `data` again.
    fn push(&mut self, mut p: &[u8]) {
        if let Some(h) = &mut self.hole {
            if self.data.len() < h.at {
                let k = (h.at - self.data.len()).min(p.len());
                self.data.extend_from_slice(&p[..k]);
                p = &p[k..];
            }
            if self.data.len() == h.at {
                let k = h.missing().min(p.len());
                h.bytes.extend_from_slice(&p[..k]);
                p = &p[k..];
            }
        }
        self.data.extend_from_slice(p);
    }

    /// The whole message: split when its hole was filled; joined (one copy)
    /// when the message ended before it was, which decoding then reports.
    fn finish(self) -> Frame {
        match self.hole {
            None => Frame::Message(self.data.freeze()),
            Some(h) if h.missing() == 0 => Frame::Split {
                body: self.data.freeze(),
                hole: Hole {
                    at: h.at,
                    bytes: h.bytes,
                },
            },
            Some(h) => Frame::Message(join_at(&self.data, h.at, &h.bytes).freeze()),
        }
    }
}

/// Sans-I/O decoder for the frames of an established distribution connection.
///
/// Feed it the connection's read buffer; it consumes whole frames only, so a
/// partial frame stays in the buffer until more bytes arrive. State (open
/// fragment sequences) lives across calls.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_size: usize,
    max_open_sequences: usize,
    max_reassembly_bytes: usize,
    open: HashMap<u64, Partial>,
    /// Bytes held by all of `open` together.
    buffered: usize,
    /// Capacity reserved up front for all of `open` together. Each sequence
    /// reserves what its first fragment announces (fragment size times
    /// count), so a message is copied once, into a buffer that never grows;
    /// the count is peer input, so reservations together stay within
    /// `max_reassembly_bytes`, and a sequence that outgrows its reservation
    /// grows as its bytes arrive.
    reserved: usize,
    /// A continuation fragment whose header has been taken from the stream
    /// and whose payload is still arriving (see [`FrameDecoder::direct_target`]).
    in_flight: Option<InFlight>,
    /// The atoms the peer's headers have put in our cache.
    atom_cache: AtomCache,
    /// See [`FrameDecoder::atoms`].
    atoms: Vec<Atom>,
    /// The atom cache part of the last normal header when it made no new
    /// entries and `atoms` still holds what it stood for; empty otherwise.
    /// A stream of like messages repeats its header byte for byte: the same
    /// slots, which no header has changed since, so the same atoms, and
    /// `atoms` is kept as it is instead of read again.
    last_refs: Vec<u8>,
}

/// The rest of one continuation fragment, still to come from the stream:
/// already admitted against the limits and checked for order.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    frag: u64,
    remaining: usize,
}

/// A continuation fragment is taken before all of it has arrived only when at
/// least this much of its payload is still missing: below that, waiting for
/// the whole frame and copying it costs less than the bookkeeping.
const MIN_IN_FLIGHT: usize = 4 * 1024;

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl FrameDecoder {
    /// A decoder accepting messages of up to `max_message_size` body bytes,
    /// [`DEFAULT_MAX_OPEN_SEQUENCES`] concurrent fragment sequences and, across
    /// all of them, `2 * max_message_size` buffered bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self::with_limits(
            max_message_size,
            DEFAULT_MAX_OPEN_SEQUENCES,
            max_message_size.saturating_mul(2),
        )
    }

    /// A decoder with every limit explicit. `max_reassembly_bytes` bounds the
    /// bytes buffered across all open fragment sequences.
    pub fn with_limits(
        max_message_size: usize,
        max_open_sequences: usize,
        max_reassembly_bytes: usize,
    ) -> Self {
        Self {
            max_message_size,
            max_open_sequences,
            max_reassembly_bytes,
            open: HashMap::new(),
            buffered: 0,
            reserved: 0,
            in_flight: None,
            atom_cache: AtomCache::new(),
            atoms: Vec::new(),
            last_refs: Vec::new(),
        }
    }

    /// What the `ATOM_CACHE_REF`s in the message [`decode`](Self::decode)
    /// returned last stand for: its distribution header's references, in
    /// order, resolved against the connection's atom cache. Decode that
    /// message with them ([`decode_control_cached`](super::decode_control_cached))
    /// before decoding the next frame, whose header replaces them.
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }

    /// Number of fragment sequences currently being reassembled.
    pub fn open_sequences(&self) -> usize {
        self.open.len()
    }

    /// Bytes currently held for unfinished fragment sequences.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Bytes `buf` must hold before the frame at its start is complete: the
    /// length prefix, then the announced frame when within the limits (a
    /// frame beyond them is an error [`decode`](Self::decode) reports).
    /// Lets the reader size its buffer so a large frame arrives in one piece
    /// instead of being copied each time the buffer fills.
    pub fn bytes_needed(&self, buf: &[u8]) -> usize {
        match buf.first_chunk::<4>() {
            Some(h) => {
                let len = u32::from_be_bytes(*h) as usize;
                4 + len.min(self.max_frame_len())
            }
            None => 4,
        }
    }

    /// Largest frame length accepted: a whole message plus the largest header.
    fn max_frame_len(&self) -> usize {
        self.max_message_size
            .saturating_add(FRAG_HEADER_LEN + MAX_ATOM_REFS_LEN)
    }

    /// Consumes whole frames from `buf` (4-byte big-endian length prefix;
    /// length 0 = tick). Returns `Ok(None)` when more bytes are needed.
    ///
    /// Fragments that do not complete a message are absorbed and decoding
    /// goes on with the next frame, so `Ok(None)` always means "buffer holds
    /// no complete frame". Pass-through and unfragmented frames are returned
    /// without copying (`split_to().freeze()`); a fragmented message is copied
    /// once, into its reassembly buffer, but for what the reader put straight
    /// into a large binary's own buffer ([`direct_target`](Self::direct_target)).
    /// A continuation fragment running into such a binary may be taken before
    /// all of it has arrived: its header is checked then, and its payload
    /// is taken as it comes.
    ///
    /// An error means the stream is corrupt; the offending frame has been
    /// consumed, but the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if let Some(f) = self.in_flight {
                let k = f.remaining.min(buf.len());
                if k > 0 {
                    let part = buf.split_to(k);
                    self.append(f.seq, &part);
                }
                let remaining = f.remaining - k;
                if remaining > 0 {
                    self.in_flight = Some(InFlight { remaining, ..f });
                    return Ok(None);
                }
                self.in_flight = None;
                if let Some(message) = self.fragment_done(f.seq, f.frag) {
                    return Ok(Some(message));
                }
                continue;
            }
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len == 0 {
                buf.advance(4);
                return Ok(Some(Frame::Tick));
            }
            // Checked before waiting for the bytes, so a hostile length can
            // never make the caller buffer more than the limits allow.
            let max = self.max_frame_len();
            if len > max {
                return Err(FrameError::TooLarge { len, max });
            }
            if buf.len() - 4 < len {
                if self.take_in_flight(buf, len)? {
                    continue;
                }
                return Ok(None);
            }
            let mut frame = buf.split_to(4 + len);
            frame.advance(4);
            if let Some(message) = self.frame(frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// [`decode`](Self::decode) that leaves a whole message where it is: a
    /// frame that is one message (pass-through or a normal header) comes
    /// back as [`InPlace::Body`], the range of `buf` its body is at, to be
    /// decoded from there and then let go with [`consume`](Self::consume).
    /// Nearly every frame is such a one, and this way none costs splitting
    /// and freezing a shared buffer (two reference count updates, and a
    /// read buffer that can be reused instead of replaced while frames split
    /// off it live). Anything else (ticks, fragments) is
    /// [`InPlace::Frame`], as `decode` returns it.
    ///
    /// Call `consume` before the next call: until then the next call finds
    /// the same frame again, with its header's atoms already taken.
    pub fn decode_in_place(&mut self, buf: &mut BytesMut) -> Result<Option<InPlace>, FrameError> {
        if self.in_flight.is_none() {
            if let Some(&[a, b, c, d, first, second]) = buf.first_chunk::<6>() {
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                // A tick (length 0) has no header: the bytes after its
                // length are the next frame's.
                let whole = (first == PASS_THROUGH && len >= 1)
                    || (first == VERSION_MAGIC && second == DIST_HEADER && len >= 2);
                if whole && len <= self.max_frame_len() && buf.len() - 4 >= len {
                    let at = self.message_header(&buf[4..4 + len])?;
                    self.check_size(len - at)?;
                    return Ok(Some(InPlace::Body(4 + at..4 + len)));
                }
            }
        }
        Ok(self.decode(buf)?.map(InPlace::Frame))
    }

    /// Lets go of the frame whose body [`decode_in_place`](Self::decode_in_place)
    /// returned as `body`.
    pub fn consume(buf: &mut BytesMut, body: &std::ops::Range<usize>) {
        buf.advance(body.end);
    }

    /// The header of a frame that is one message (pass-through, or a normal
    /// distribution header, whose atom cache part is read here): where its
    /// body starts within `frame`.
    fn message_header(&mut self, frame: &[u8]) -> Result<usize, FrameError> {
        if frame.first() == Some(&PASS_THROUGH) {
            self.atoms.clear();
            self.last_refs.clear();
            return Ok(1);
        }
        if frame.len() < NORMAL_HEADER_LEN {
            return Err(FrameError::Malformed(
                "truncated distribution header".into(),
            ));
        }
        let part = &frame[2..];
        if !self.last_refs.is_empty() && part.starts_with(&self.last_refs) {
            return Ok(2 + self.last_refs.len());
        }
        self.last_refs.clear();
        let refs = self.atom_cache.read_refs(part, &mut self.atoms)?;
        // Without new entries the part is the count, the flags and
        // one slot byte per reference.
        let n = usize::from(part[0]);
        let flag_bytes = if n > 0 { n / 2 + 1 } else { 0 };
        if refs == 1 + flag_bytes + n {
            self.last_refs.extend_from_slice(&part[..refs]);
        }
        Ok(2 + refs)
    }

    /// Handles one frame's contents; `None` when it was a non-final fragment.
    fn frame(&mut self, mut frame: BytesMut) -> Result<Option<Frame>, FrameError> {
        let first = frame[0];
        let second = frame.get(1).copied().unwrap_or(0);
        if first != PASS_THROUGH && first != VERSION_MAGIC {
            return Err(FrameError::UnknownHeader(first, second));
        }
        if first == PASS_THROUGH || second == DIST_HEADER {
            let at = self.message_header(&frame)?;
            frame.advance(at);
            return self.whole(frame).map(Some);
        }
        match second {
            DIST_FRAG_HEADER => {
                if frame.len() < FRAG_HEADER_LEN {
                    return Err(FrameError::Malformed("truncated fragment header".into()));
                }
                let seq = be_u64(&frame[2..10]);
                let frag = be_u64(&frame[10..18]);
                // Read now, in stream order, however long the message takes
                // to arrive: later messages may name the slots it fills.
                let mut atoms = Vec::new();
                // May fill slots the last header named.
                self.last_refs.clear();
                let refs = self.atom_cache.read_refs(&frame[18..], &mut atoms)?;
                frame.advance(18 + refs);
                self.start(seq, frag, frame, atoms)
            }
            DIST_FRAG_CONT => {
                if frame.len() < FRAG_CONT_LEN {
                    return Err(FrameError::Malformed(
                        "truncated fragment continuation".into(),
                    ));
                }
                let seq = be_u64(&frame[2..10]);
                let frag = be_u64(&frame[10..18]);
                frame.advance(FRAG_CONT_LEN);
                self.cont(seq, frag, &frame)
            }
            _ => Err(FrameError::UnknownHeader(first, second)),
        }
    }

    /// An unfragmented body: checked against the message limit, then handed
    /// out without copying.
    fn whole(&self, body: BytesMut) -> Result<Frame, FrameError> {
        self.check_size(body.len())?;
        Ok(Frame::Message(body.freeze()))
    }

    /// A whole message's body of `len` bytes is within the message limit.
    fn check_size(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_message_size {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    fn start(
        &mut self,
        seq: u64,
        frag: u64,
        payload: BytesMut,
        atoms: Vec<Atom>,
    ) -> Result<Option<Frame>, FrameError> {
        if frag == 0 {
            return Err(FrameError::Malformed(format!(
                "fragment header with FragmentId 0 (sequence {seq})"
            )));
        }
        if self.open.contains_key(&seq) {
            return Err(FrameError::Malformed(format!(
                "fragment header for already open sequence {seq}"
            )));
        }
        if frag == 1 {
            // A one-fragment "sequence" is just a message: no copy needed.
            self.atoms = atoms;
            self.last_refs.clear();
            return self.whole(payload).map(Some);
        }
        if self.open.len() >= self.max_open_sequences {
            return Err(FrameError::TooManyOpenSequences);
        }
        self.admit(payload.len(), payload.len())?;
        let announced = (payload.len() as u64).saturating_mul(frag);
        let reserve = announced
            .min(self.max_message_size as u64)
            .min(self.max_reassembly_bytes.saturating_sub(self.reserved) as u64)
            .max(payload.len() as u64) as usize;
        // A large binary whose contents run on past this first fragment
        // gets a buffer of its own, filled as they arrive: decoding then
        // takes it as it is instead of copying it out of the joined message.
        // Its length is peer input: it must fit what the sequence announced
        // and the limits.
        let budget = self.max_reassembly_bytes.saturating_sub(self.reserved);
        let cut = scan::cut_binary(&payload, MIN_HELD_APART).filter(|&(at, len)| {
            at <= payload.len()
                && len as u64 <= announced
                && len <= self.max_message_size
                && len <= budget
        });
        let (data, hole, reserve) = match cut {
            Some((at, len)) => {
                let around = reserve.saturating_sub(len).min(at + 64 * 1024);
                let hole = HeldApart {
                    at,
                    len,
                    bytes: Vec::with_capacity(len),
                };
                (BytesMut::with_capacity(around), Some(hole), around + len)
            }
            None => (BytesMut::with_capacity(reserve), None, reserve),
        };
        let mut partial = Partial {
            next_id: frag - 1,
            data,
            hole,
            reserved: reserve,
            atoms,
        };
        partial.push(&payload);
        self.buffered += payload.len();
        self.reserved += reserve;
        self.open.insert(seq, partial);
        Ok(None)
    }

    fn cont(&mut self, seq: u64, frag: u64, payload: &[u8]) -> Result<Option<Frame>, FrameError> {
        self.admit_continuation(seq, frag, payload.len())?;
        self.append(seq, payload);
        Ok(self.fragment_done(seq, frag))
    }

    /// Adds admitted payload bytes to sequence `seq`.
    fn append(&mut self, seq: u64, payload: &[u8]) {
        if let Some(partial) = self.open.get_mut(&seq) {
            partial.push(payload);
        }
        self.buffered += payload.len();
    }

    /// Checks that continuation `frag` of `seq`, `payload_len` bytes, may
    /// come next, against the order and the limits; the error closes the
    /// connection. On success the sequence is open.
    fn admit_continuation(
        &mut self,
        seq: u64,
        frag: u64,
        payload_len: usize,
    ) -> Result<(), FrameError> {
        let Some(partial) = self.open.get(&seq) else {
            return Err(FrameError::Malformed(format!(
                "continuation for unknown sequence {seq}"
            )));
        };
        if frag != partial.next_id {
            return Err(FrameError::Malformed(format!(
                "sequence {seq}: got FragmentId {frag}, expected {}",
                partial.next_id
            )));
        }
        let admitted = self.admit(partial.len().saturating_add(payload_len), payload_len);
        if admitted.is_err() {
            // Free the sequence now; the connection is going down anyway.
            self.drop_sequence(seq);
        }
        admitted
    }

    /// Continuation `frag` of `seq` has been pushed whole: the message when
    /// it was the last one.
    fn fragment_done(&mut self, seq: u64, frag: u64) -> Option<Frame> {
        if frag > 1 {
            if let Some(p) = self.open.get_mut(&seq) {
                p.next_id = frag - 1;
            }
            return None;
        }
        let mut done = self.open.remove(&seq)?;
        self.buffered -= done.len();
        self.reserved -= done.reserved;
        self.atoms = std::mem::take(&mut done.atoms);
        self.last_refs.clear();
        Some(done.finish())
    }

    /// `buf` starts with an incomplete frame of `len` bytes. When it is a
    /// continuation whose payload runs into a binary gathered apart, takes
    /// its header and the payload there is, so the rest can be read
    /// straight into that binary ([`direct_target`](Self::direct_target)).
    /// `Ok(false)` leaves `buf` as it was.
    fn take_in_flight(&mut self, buf: &mut BytesMut, len: usize) -> Result<bool, FrameError> {
        if buf.len() < 4 + FRAG_CONT_LEN
            || len < FRAG_CONT_LEN
            || buf[4] != VERSION_MAGIC
            || buf[5] != DIST_FRAG_CONT
            || 4 + len - buf.len() < MIN_IN_FLIGHT
        {
            return Ok(false);
        }
        let seq = be_u64(&buf[6..14]);
        let payload_len = len - FRAG_CONT_LEN;
        let gathering = self.open.get(&seq).is_some_and(|p| {
            p.hole
                .as_ref()
                .is_some_and(|h| h.missing() > 0 && p.data.len() + payload_len > h.at)
        });
        if !gathering {
            return Ok(false);
        }
        let frag = be_u64(&buf[14..22]);
        self.admit_continuation(seq, frag, payload_len)?;
        buf.advance(4 + FRAG_CONT_LEN);
        self.in_flight = Some(InFlight {
            seq,
            frag,
            remaining: payload_len,
        });
        Ok(true)
    }

    /// Where the next bytes from the stream may go without passing through
    /// the read buffer: the buffer of the large binary being gathered apart,
    /// and how many of its bytes may be read into it at most. `None` when the
    /// next bytes belong elsewhere (read them into the buffer given to
    /// [`decode`](Self::decode)). After reading into it, report the count
    /// with [`direct_filled`](Self::direct_filled).
    pub fn direct_target(&mut self) -> Option<(&mut Vec<u8>, usize)> {
        let f = self.in_flight?;
        let p = self.open.get_mut(&f.seq)?;
        let at = p.data.len();
        let h = p.hole.as_mut()?;
        if at != h.at || h.missing() == 0 {
            return None;
        }
        let n = f.remaining.min(h.missing());
        Some((&mut h.bytes, n))
    }

    /// How many bytes to read into `buf` next, when fewer than a reader
    /// would take: while a large binary is being gathered, only up to the
    /// end of the next frame's header, so that when the frame is a
    /// continuation of that binary its payload can be read straight in
    /// ([`direct_target`](Self::direct_target)) instead of arriving in `buf`
    /// with the header and being copied out. One more read per fragment
    /// saves copying its 64 KiB.
    pub fn read_limit(&self, buf: &[u8]) -> Option<usize> {
        let gathering = self
            .open
            .values()
            .any(|p| p.hole.as_ref().is_some_and(|h| h.missing() > 0));
        if self.in_flight.is_some() || !gathering {
            return None;
        }
        // `buf` holds at most the start of one frame (`decode` took every
        // whole one): read the rest of it, then the next frame's header.
        let header = 4 + FRAG_CONT_LEN;
        Some(match buf.first_chunk::<4>() {
            Some(h) => (4 + u32::from_be_bytes(*h) as usize).saturating_sub(buf.len()) + header,
            None => header - buf.len(),
        })
    }

    /// `n` bytes were read into [`direct_target`](Self::direct_target)'s
    /// buffer. The next [`decode`](Self::decode) hands out the message they
    /// completed, if any.
    pub fn direct_filled(&mut self, n: usize) {
        if let Some(f) = &mut self.in_flight {
            debug_assert!(n <= f.remaining);
            let n = n.min(f.remaining);
            f.remaining -= n;
            self.buffered += n;
        }
    }

    /// Checks that a sequence of `seq_len` bytes, `added` of them new, fits.
    fn admit(&self, seq_len: usize, added: usize) -> Result<(), FrameError> {
        if seq_len > self.max_message_size
            || self.buffered.saturating_add(added) > self.max_reassembly_bytes
        {
            return Err(FrameError::ReassemblyTooLarge);
        }
        Ok(())
    }

    fn drop_sequence(&mut self, seq: u64) {
        if let Some(p) = self.open.remove(&seq) {
            self.buffered -= p.len();
            self.reserved -= p.reserved;
        }
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// `u32` frame length for `n` bytes of frame contents.
///
/// # Panics
/// If `n` does not fit the 4-byte length prefix; bodies that large must be
/// sent through a [`Fragmenter`].
fn frame_len(n: usize) -> u32 {
    u32::try_from(n).expect("distribution frame larger than 4 GiB; fragment it")
}

/// One unfragmented frame without distribution header: length prefix + 112 +
/// body. `body` must be in pass-through form (every term starts with 131, as
/// [`encode_control`](super::encode_control) produces). Only valid on a
/// connection that negotiated neither `DFLAG_FRAGMENTS` nor
/// `DFLAG_DIST_HDR_ATOM_CACHE`: OTP rejects 112 frames otherwise.
///
/// # Panics
/// If the body exceeds 4 GiB - 2 bytes.
pub fn pass_through_frame(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + 1 + body.len());
    out.put_u32(frame_len(1 + body.len()));
    out.put_u8(PASS_THROUGH);
    out.put_slice(body);
    out.freeze()
}

/// One unfragmented frame with a normal distribution header (`131, 68, 0`):
/// what OTP requires once `DFLAG_FRAGMENTS` is negotiated. `body` must be in
/// header form: terms without the 131 version byte, as
/// [`encode_control_headered`](super::encode_control_headered) produces.
///
/// # Panics
/// If the body exceeds 4 GiB - 4 bytes.
pub fn dist_header_frame(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + NORMAL_HEADER_LEN + body.len());
    out.put_u32(frame_len(NORMAL_HEADER_LEN + body.len()));
    out.put_slice(&[VERSION_MAGIC, DIST_HEADER, 0]);
    out.put_slice(body);
    out.freeze()
}

/// Splits one body into fragment frames (`131, 69` first, with 0 atom cache
/// refs, then `131, 70`), lazily, so a writer can interleave other messages
/// between fragments.
///
/// The body must be in header form (terms without the 131 version byte; see
/// [`encode_control_headered`](super::encode_control_headered)). OTP uses the
/// sending process's pid as `sequence_id`; any id unique among this
/// connection's unfinished sequences works.
#[derive(Debug, Clone)]
pub struct Fragmenter {
    sequence_id: u64,
    /// The body still to send, as one or more pieces (see [`Fragmenter::from_parts`]).
    body: std::collections::VecDeque<Bytes>,
    fragment_size: usize,
    total: u64,
    sent: u64,
}

impl Fragmenter {
    /// `fragment_size` is the payload bytes per frame (clamped to 1..=4 GiB
    /// minus the header). An empty body still yields one frame.
    pub fn new(sequence_id: u64, body: Bytes, fragment_size: usize) -> Self {
        Self::from_parts(sequence_id, vec![body], fragment_size)
    }

    /// A body given in pieces, sent as if joined: lets a large binary go out
    /// from its own memory between the encoded bytes around it.
    pub fn from_parts(sequence_id: u64, parts: Vec<Bytes>, fragment_size: usize) -> Self {
        let fragment_size = fragment_size.clamp(1, u32::MAX as usize - FRAG_HEADER_LEN);
        let len: usize = parts.iter().map(Bytes::len).sum();
        let total = len.div_ceil(fragment_size).max(1) as u64;
        Self {
            sequence_id,
            body: parts.into_iter().filter(|p| !p.is_empty()).collect(),
            fragment_size,
            total,
            sent: 0,
        }
    }

    /// The next frame, length prefix included; `None` once all are out.
    /// Copies the fragment's payload once, next to its header; a writer that
    /// can write several buffers at once uses [`next_frame_parts`](Self::next_frame_parts).
    pub fn next_frame(&mut self) -> Option<Bytes> {
        let (head, payload) = self.next_frame_parts()?;
        let len = payload.iter().map(Bytes::len).sum::<usize>();
        let mut out = BytesMut::with_capacity(head.as_ref().len() + len);
        out.put_slice(head.as_ref());
        for p in &payload {
            out.put_slice(p);
        }
        Some(out.freeze())
    }

    /// The next frame as its header (length prefix included) and its payload,
    /// slices of the body (more than one where the fragment spans pieces):
    /// nothing is copied, so a 10 MB message is not copied again on its way out.
    pub fn next_frame_parts(&mut self) -> Option<(FragmentHead, Vec<Bytes>)> {
        if self.sent == self.total {
            return None;
        }
        let mut payload = Vec::with_capacity(1);
        let mut want = self.fragment_size;
        while want > 0 {
            let Some(front) = self.body.front_mut() else {
                break;
            };
            if front.len() <= want {
                want -= front.len();
                payload.extend(self.body.pop_front());
            } else {
                payload.push(front.split_to(want));
                want = 0;
            }
        }
        let payload_len = self.fragment_size - want;
        // FragmentId counts down to 1, which marks the last fragment.
        let fragment_id = self.total - self.sent;
        let first = self.sent == 0;
        let header_len = if first {
            FRAG_HEADER_LEN
        } else {
            FRAG_CONT_LEN
        };
        let mut head = FragmentHead {
            bytes: [0; 4 + FRAG_HEADER_LEN],
            len: 4 + header_len,
        };
        let mut h = &mut head.bytes[..];
        h.put_u32(frame_len(header_len + payload_len));
        h.put_u8(VERSION_MAGIC);
        h.put_u8(if first {
            DIST_FRAG_HEADER
        } else {
            DIST_FRAG_CONT
        });
        h.put_u64(self.sequence_id);
        h.put_u64(fragment_id);
        // With `first`, the last byte is NumberOfAtomCacheRefs: 0.
        self.sent += 1;
        Some((head, payload))
    }

    /// The body's bytes not yet returned in a frame.
    pub fn remaining_bytes(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    /// Frames not yet returned by [`next_frame`](Self::next_frame).
    pub fn remaining_frames(&self) -> u64 {
        self.total - self.sent
    }
}

/// A fragment frame's length prefix and header, as
/// [`Fragmenter::next_frame_parts`] returns it.
#[derive(Debug, Clone, Copy)]
pub struct FragmentHead {
    bytes: [u8; 4 + FRAG_HEADER_LEN],
    len: usize,
}

impl AsRef<[u8]> for FragmentHead {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
