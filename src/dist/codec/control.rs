//! Control-message bodies <-> `crate::dist::message::Message`.

use crate::dist::message::Message;
use crate::dist::message::{Mfa, PidOrAtom};
use crate::term::{Atom, FixInteger, List, Term};
use bytes::Bytes;

use super::scan::{check_term, TermError};

/// Why one control message could not be decoded or encoded. Unlike
/// [`FrameError`](super::FrameError), these concern a single message: the
/// caller can log it and drop just that message.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The body is empty.
    #[error("empty control message body")]
    Empty,
    /// The body is not a term sequence we are willing to decode.
    #[error("invalid term in control message: {0}")]
    InvalidTerm(#[from] TermError),
    /// Bytes left after the control term and the one optional message term.
    #[error("{extra} unexpected bytes after the control message")]
    TrailingBytes { extra: usize },
    /// An operation [`Message`] has no variant for. `control` is the decoded
    /// control tuple, for logging.
    #[error("unknown distribution operation {op}: {control}")]
    UnknownOp { op: i32, control: Term },
    /// The terms do not have the shape the protocol defines for `op`.
    #[error("cannot decode control message (op {op:?}): {reason}")]
    Decode { op: Option<i32>, reason: String },
    /// A term in the message cannot be put in the external format.
    #[error("cannot encode a term of the control message: {0}")]
    Term(crate::term::etf::EncodeError),
    /// `Message::Tick` has no body: send [`TICK`](super::TICK) instead.
    #[error("a tick has no body; send TICK")]
    TickHasNoBody,
    /// A binary taken out to be sent from its own memory was not met by the
    /// encoder (a bug: the message is dropped rather than sent wrong).
    #[error("a detached binary was not met by the encoder")]
    DetachedBinaryLost,
}

/// The op of a control tuple, read straight from its first bytes when it has
/// the usual shape (`SMALL_TUPLE_EXT` whose first element is an integer).
fn peek_op(ctrl: &[u8]) -> Option<i32> {
    match ctrl {
        [104, n, 97, op, ..] if *n >= 1 => Some(i32::from(*op)),
        [104, n, 98, a, b, c, d, ..] if *n >= 1 => Some(i32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// A body split into its (already validated) terms, version bytes excluded.
struct Parts<'a> {
    ctrl: &'a [u8],
    payload: Option<&'a [u8]>,
}

fn split(body: &[u8], atom_refs: usize) -> Result<Parts<'_>, ControlError> {
    if body.is_empty() {
        return Err(ControlError::Empty);
    }
    let (magic, ctrl_end) = check_term(body, 0, atom_refs)?;
    let ctrl = &body[usize::from(magic)..ctrl_end];
    if ctrl_end == body.len() {
        return Ok(Parts {
            ctrl,
            payload: None,
        });
    }
    let (magic, end) = check_term(body, ctrl_end, atom_refs)?;
    if end != body.len() {
        return Err(ControlError::TrailingBytes {
            extra: body.len() - end,
        });
    }
    Ok(Parts {
        ctrl,
        payload: Some(&body[ctrl_end + usize::from(magic)..end]),
    })
}

/// Decodes a [`Frame::Message`](super::Frame::Message) body into a control
/// message.
///
/// Accepts terms with and without the 131 version byte (pass-through vs.
/// dist-header frames). The body is validated first (see `scan`), then decoded
/// by our own decoder (`term::etf`) and laid out by op as the distribution
/// protocol defines it. An op we do not know yields
/// [`ControlError::UnknownOp`] with the control tuple, so the caller can log
/// and drop that one message.
pub fn decode_control(body: &[u8]) -> Result<Message, ControlError> {
    decode_control_cached(body, &[])
}

/// [`decode_control`] of a body whose distribution header made atom cache
/// references: `atoms` are what they stand for, in the header's order (see
/// [`FrameDecoder::atoms`](super::FrameDecoder::atoms)).
pub fn decode_control_cached(body: &[u8], atoms: &[Atom]) -> Result<Message, ControlError> {
    if let Some(msg) = decode_send(body, atoms) {
        return Ok(msg);
    }
    decode_other_cached(body, atoms)
}

/// Who a received send is for: the part of a `SEND`, `REG_SEND`,
/// `SEND_SENDER` or `ALIAS_SEND` the receiving node acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipient {
    Pid(crate::term::Pid),
    Name(Atom),
    Alias(Box<crate::term::Reference>),
}

/// A send's recipient and message, decoded as [`decode_control_cached`]
/// decodes it, without the [`Message`] around them: `None` for any other
/// body (decode it with [`decode_other_cached`]). A reader that delivers
/// the message at once has no use for the sender, and moving a `Message`
/// (the size of its largest variant) twice costs more than decoding the
/// message `{m, 1}`.
pub fn decode_send_cached(body: &[u8], atoms: &[Atom]) -> Option<(Recipient, Term)> {
    let (_, to, message) = decode_send_parts(body, atoms, false)?;
    Some((
        match to {
            To::Pid(to) | To::Sender(to) => Recipient::Pid(to),
            To::Name(name) => Recipient::Name(name),
            To::Alias(alias) => Recipient::Alias(alias),
        },
        message,
    ))
}

/// [`decode_control_cached`] of a body [`decode_send_cached`] refused.
pub fn decode_other_cached(body: &[u8], atoms: &[Atom]) -> Result<Message, ControlError> {
    if let Some(msg) = decode_monitor(body, atoms) {
        return Ok(msg);
    }
    if let Some((ctrl, payload)) = decode_terms_directly(body, |pos| {
        crate::term::etf::decode_at_cached(body, pos, atoms)
    }) {
        return message_from_terms(ctrl, payload);
    }
    decode_control_checked(body, atoms)
}

/// The sends nearly all traffic is (`SEND`, `REG_SEND`, `SEND_SENDER`,
/// `ALIAS_SEND`), decoded element by element into the [`Message`]: the
/// control tuple is never built as a term only to be taken apart. `None`
/// for anything else, or anything unusual about these (a term that is
/// compressed or not of its element's type, bytes left over): the general
/// path decodes those, or says what is wrong with them.
fn decode_send(body: &[u8], atoms: &[Atom]) -> Option<Message> {
    Some(match decode_send_parts(body, atoms, true)? {
        (None, To::Pid(to), message) => Message::send(to, message),
        (Some(from), To::Name(name), message) => Message::reg_send(from, name, message),
        (Some(from), To::Sender(to), message) => Message::send_sender(from, to, message),
        (Some(from), To::Alias(alias), message) => Message::alias_send(from, *alias, message),
        _ => return None,
    })
}

/// `MONITOR_P` and `DEMONITOR_P`, decoded element by element as
/// [`decode_send`] decodes sends: a remote `gen_server:call` from a BEAM
/// brings one of each besides its request. `None` for anything else or
/// anything unusual (the general path decodes it, or says what is wrong).
pub(super) fn decode_monitor(body: &[u8], atoms: &[Atom]) -> Option<Message> {
    let pos = usize::from(body.first() == Some(&131));
    let (&[104, 4, 97, op @ (19 | 20)], _) = body.get(pos..)?.split_first_chunk::<4>()? else {
        return None;
    };
    let mut terms = crate::term::etf::Terms::new(body, pos + 4, atoms);
    let from = terms.next_pid()?;
    let to = match terms.next_term()? {
        Term::Pid(p) => PidOrAtom::Pid(p),
        Term::Atom(a) => PidOrAtom::Atom(a),
        _ => return None,
    };
    let Term::Reference(reference) = terms.next_term()? else {
        return None;
    };
    // No payload follows either.
    if terms.pos() != body.len() {
        return None;
    }
    Some(if op == 19 {
        Message::monitor_p(from, to, *reference)
    } else {
        Message::demonitor_p(from, to, *reference)
    })
}

/// Who a send is for, by its op: `SEND`'s pid, `REG_SEND`'s name,
/// `SEND_SENDER`'s pid or `ALIAS_SEND`'s alias.
enum To {
    Pid(crate::term::Pid),
    Name(Atom),
    Sender(crate::term::Pid),
    Alias(Box<crate::term::Reference>),
}

/// What [`decode_send`] decodes: the sending pid when `with_sender` and
/// the op names one, the recipient, and the message after the control
/// tuple. Without `with_sender` the sending pid is checked but not decoded.
#[inline]
fn decode_send_parts(
    body: &[u8],
    atoms: &[Atom],
    with_sender: bool,
) -> Option<(Option<crate::term::Pid>, To, Term)> {
    let pos = usize::from(body.first() == Some(&131));
    let (&[104, n, 97, op], _) = body.get(pos..)?.split_first_chunk::<4>()? else {
        return None;
    };
    // The version byte never starts an element, so no element is a
    // compressed term (the general path refuses one on the wire).
    let mut terms = crate::term::etf::Terms::new(body, pos + 4, atoms);
    // Pids and atoms are read as such: no `Term` built around them to be
    // matched and taken apart again.
    let sender = |terms: &mut crate::term::etf::Terms<'_>| {
        if with_sender {
            terms.next_pid().map(Some)
        } else {
            terms.skip_pid().map(|()| None)
        }
    };
    let (from, to) = match (op, n) {
        (2, 3) => {
            terms.next_term()?;
            (None, To::Pid(terms.next_pid()?))
        }
        (6, 4) => {
            let from = sender(&mut terms)?;
            // The unused element: '' from the BEAM.
            terms.next_term()?;
            (from, To::Name(terms.next_atom()?))
        }
        (22, 3) => (sender(&mut terms)?, To::Sender(terms.next_pid()?)),
        (33, 3) => {
            let from = sender(&mut terms)?;
            match terms.next_term()? {
                Term::Reference(alias) => (from, To::Alias(alias)),
                _ => return None,
            }
        }
        _ => return None,
    };
    // The message: its version byte (a pass-through frame's) passed; a
    // compressed one is refused on the wire (see `scan`), which the general
    // path says.
    let mut pos = terms.pos();
    match body.get(pos..pos + 2) {
        Some([131, 80]) => return None,
        Some([131, _]) => pos += 1,
        _ => {}
    }
    let mut terms = crate::term::etf::Terms::new(body, pos, atoms);
    let message = terms.next_term()?;
    if terms.pos() != body.len() {
        return None;
    }
    Some((from, to, message))
}

/// [`decode_control`] of a body whose largest binary's contents are held
/// apart (as reassembly gathers a large message: see
/// [`Frame::Split`](super::Frame::Split)): the binary gets them without a copy.
pub fn decode_control_with_hole(
    body: &[u8],
    hole: crate::term::etf::Hole,
    atoms: &[Atom],
) -> Result<Message, ControlError> {
    use crate::term::etf::decode_at_with_hole;
    let mut hole = Some(hole);
    let decoded =
        decode_terms_directly(body, |pos| decode_at_with_hole(body, pos, &mut hole, atoms));
    match (decoded, hole) {
        (Some((ctrl, payload)), None) => message_from_terms(ctrl, payload),
        // Something is wrong: joined, the body goes down the usual path,
        // which says what.
        (_, Some(hole)) => {
            decode_control_cached(&super::frame::join_at(body, hole.at, &hole.bytes), atoms)
        }
        (None, None) => Err(ControlError::Decode {
            op: peek_op(
                body.get(usize::from(body.first() == Some(&131))..)
                    .unwrap_or_default(),
            ),
            reason: "malformed terms after a large binary".into(),
        }),
    }
}

/// [`decode_control`] with the validating walk first: the path for bodies the
/// direct decoding refused, so the error says what is wrong with them.
pub(crate) fn decode_control_checked(body: &[u8], atoms: &[Atom]) -> Result<Message, ControlError> {
    let parts = split(body, atoms.len())?;
    let op = peek_op(parts.ctrl);
    let ctrl = decode_term(parts.ctrl, op, atoms)?;
    let payload = match parts.payload {
        Some(p) => Some(decode_term(p, op, atoms)?),
        None => None,
    };
    message_from_terms(ctrl, payload)
}

/// The control term and the optional payload decoded without the validating
/// walk first: `term::etf` bounds its own allocations and nesting, so on a
/// well-formed body (every body, in practice) the walk would only read the
/// bytes a second time. `None` sends the body down the checked path, which
/// says precisely what is wrong: any decoding error, bytes after the payload,
/// or a compressed term (accepted by `term::etf`, refused on the wire: see
/// `scan`). `decode_at` decodes the term at a position of `body`.
fn decode_terms_directly<E>(
    body: &[u8],
    mut decode_at: impl FnMut(usize) -> Result<(Term, usize), E>,
) -> Option<(Term, Option<Term>)> {
    let compressed = |pos: usize| body.get(pos..pos + 2) == Some(&[131, 80][..]);
    if compressed(0) {
        return None;
    }
    let (ctrl, end) = decode_at(0).ok()?;
    if end == body.len() {
        return Some((ctrl, None));
    }
    if compressed(end) {
        return None;
    }
    match decode_at(end) {
        Ok((payload, end)) if end == body.len() => Some((ctrl, Some(payload))),
        _ => None,
    }
}

fn decode_term(term: &[u8], op: Option<i32>, atoms: &[Atom]) -> Result<Term, ControlError> {
    crate::term::etf::from_binary_cached(term, atoms).map_err(|e| ControlError::Decode {
        op,
        reason: e.to_string(),
    })
}

/// Builds a control message from its control tuple and optional payload,
/// checking every element's type. Elements are moved out of the tuple, not
/// cloned (a pid or an atom clone is an allocation, for every message).
pub fn message_from_terms(ctrl: Term, payload: Option<Term>) -> Result<Message, ControlError> {
    let Term::Tuple(t) = ctrl else {
        return Err(ControlError::Decode {
            op: None,
            reason: "control message is not a tuple".into(),
        });
    };
    let op = match t.elements.first() {
        Some(Term::FixInteger(i)) => i.value,
        _ => {
            return Err(ControlError::Decode {
                op: None,
                reason: "control tuple does not start with an op".into(),
            })
        }
    };
    // Unknown ops are refused before anything is taken out of the tuple, so
    // the error can carry it whole, for logging.
    if !matches!(op, 1..=8 | 12 | 13 | 16 | 18..=36) {
        return Err(ControlError::UnknownOp {
            op,
            control: Term::Tuple(t),
        });
    }
    let bad = |what: &str| ControlError::Decode {
        op: Some(op),
        reason: format!("expected {what}"),
    };
    let mut elements = t.elements;
    let e = elements.get_mut(1..).unwrap_or_default();
    // Each element is taken at most once; what is left behind is `[]`, which
    // costs no allocation.
    let e = std::cell::RefCell::new(e);
    let take = |i: usize| {
        e.borrow_mut()
            .get_mut(i)
            .map(|t| std::mem::replace(t, Term::List(List::nil())))
    };
    let len = e.borrow().len();
    let pid = |i: usize| match take(i) {
        Some(Term::Pid(p)) => Ok(p),
        _ => Err(bad("a pid")),
    };
    let reference = |i: usize| match take(i) {
        Some(Term::Reference(r)) => Ok(*r),
        _ => Err(bad("a reference")),
    };
    let atom = |i: usize| match take(i) {
        Some(Term::Atom(a)) => Ok(a),
        _ => Err(bad("an atom")),
    };
    let any = |i: usize| take(i).ok_or_else(|| bad("more elements"));
    let pid_or_atom = |i: usize| match take(i) {
        Some(Term::Pid(p)) => Ok(PidOrAtom::Pid(p)),
        Some(Term::Atom(a)) => Ok(PidOrAtom::Atom(a)),
        _ => Err(bad("a pid or an atom")),
    };
    let arity = |n: usize| {
        if len == n {
            Ok(())
        } else {
            Err(bad(&format!("{} elements", n + 1)))
        }
    };
    let mut payload = payload;
    let mut body = |what: &str| payload.take().ok_or_else(|| bad(what));
    let list = |t: Term| match t {
        Term::List(l) => Ok(l),
        Term::ByteList(b) => Ok(List::from(
            b.bytes
                .iter()
                .map(|&x| Term::from(FixInteger::from(i32::from(x))))
                .collect::<Vec<_>>(),
        )),
        _ => Err(bad("a list")),
    };
    let msg = match op {
        1 => {
            arity(2)?;
            Message::link(pid(0)?, pid(1)?)
        }
        2 => {
            arity(2)?;
            Message::send(pid(1)?, body("a message")?)
        }
        3 => {
            arity(3)?;
            Message::exit(pid(0)?, pid(1)?, any(2)?)
        }
        4 => {
            arity(2)?;
            Message::unlink(pid(0)?, pid(1)?)
        }
        5 => Message::node_link(),
        6 => {
            arity(3)?;
            Message::reg_send(pid(0)?, atom(2)?, body("a message")?)
        }
        7 => {
            arity(2)?;
            Message::group_leader(pid(0)?, pid(1)?)
        }
        8 => {
            arity(3)?;
            Message::exit2(pid(0)?, pid(1)?, any(2)?)
        }
        12 => {
            arity(3)?;
            Message::send_tt(pid(1)?, body("a message")?, any(2)?)
        }
        13 => {
            arity(4)?;
            Message::exit_tt(pid(0)?, pid(1)?, any(3)?, any(2)?)
        }
        16 => {
            arity(4)?;
            Message::reg_send_tt(pid(0)?, atom(2)?, body("a message")?, any(3)?)
        }
        18 => {
            arity(4)?;
            Message::exit2_tt(pid(0)?, pid(1)?, any(3)?, any(2)?)
        }
        19 => {
            arity(3)?;
            Message::monitor_p(pid(0)?, pid_or_atom(1)?, reference(2)?)
        }
        20 => {
            arity(3)?;
            Message::demonitor_p(pid(0)?, pid_or_atom(1)?, reference(2)?)
        }
        21 => {
            arity(4)?;
            Message::monitor_p_exit(pid_or_atom(0)?, pid(1)?, reference(2)?, any(3)?)
        }
        22 => {
            arity(2)?;
            Message::send_sender(pid(0)?, pid(1)?, body("a message")?)
        }
        23 => {
            arity(3)?;
            Message::send_sender_tt(pid(0)?, pid(1)?, body("a message")?, any(2)?)
        }
        24 => {
            arity(2)?;
            Message::payload_exit(pid(0)?, pid(1)?, body("a reason")?)
        }
        25 => {
            arity(3)?;
            Message::payload_exit_tt(pid(0)?, pid(1)?, body("a reason")?, any(2)?)
        }
        26 => {
            arity(2)?;
            Message::payload_exit2(pid(0)?, pid(1)?, body("a reason")?)
        }
        27 => {
            arity(3)?;
            Message::payload_exit2_tt(pid(0)?, pid(1)?, body("a reason")?, any(2)?)
        }
        28 => {
            arity(3)?;
            Message::payload_monitor_p_exit(
                pid_or_atom(0)?,
                pid(1)?,
                reference(2)?,
                body("a reason")?,
            )
        }
        29 | 30 => {
            arity(if op == 29 { 5 } else { 6 })?;
            let mfa = match take(3) {
                Some(Term::Tuple(m)) => match <[Term; 3]>::try_from(m.elements) {
                    Ok([Term::Atom(module), Term::Atom(function), Term::FixInteger(arity)]) => {
                        Mfa {
                            module,
                            function,
                            arity,
                        }
                    }
                    _ => return Err(bad("{Module, Function, Arity}")),
                },
                _ => return Err(bad("{Module, Function, Arity}")),
            };
            let opts = list(any(4)?)?;
            let args = list(body("an argument list")?)?;
            if op == 29 {
                Message::spawn_request(reference(0)?, pid(1)?, pid(2)?, mfa, opts, args)
            } else {
                Message::spawn_request_tt(reference(0)?, pid(1)?, pid(2)?, mfa, opts, args, any(5)?)
            }
        }
        31 | 32 => {
            arity(if op == 31 { 4 } else { 5 })?;
            let flags = match take(2) {
                Some(Term::FixInteger(f)) => f,
                _ => return Err(bad("integer flags")),
            };
            if op == 31 {
                Message::spawn_reply(reference(0)?, pid(1)?, flags, pid_or_atom(3)?)
            } else {
                Message::spawn_reply_tt(reference(0)?, pid(1)?, flags, pid_or_atom(3)?, any(4)?)
            }
        }
        33 => {
            arity(2)?;
            Message::alias_send(pid(0)?, reference(1)?, body("a message")?)
        }
        34 => {
            arity(3)?;
            Message::alias_send_tt(pid(0)?, reference(1)?, body("a message")?, any(2)?)
        }
        35 => {
            arity(3)?;
            Message::unlink_id(any(0)?, pid(1)?, pid(2)?)
        }
        36 => {
            arity(3)?;
            Message::unlink_id_ack(any(0)?, pid(1)?, pid(2)?)
        }
        // Not reached: unknown ops were refused above.
        _ => return Err(bad("a known operation")),
    };
    if payload.is_some() {
        return Err(bad("no payload after this control tuple"));
    }
    Ok(msg)
}

/// Encodes a control message into a pass-through body (each term starts with
/// 131), for [`pass_through_frame`](super::pass_through_frame).
pub fn encode_control(msg: Message) -> Result<Bytes, ControlError> {
    encode_with(msg, true)
}

/// Encodes a control message into a dist-header body (terms without the 131
/// version byte), for [`dist_header_frame`](super::dist_header_frame) and
/// [`Fragmenter`](super::Fragmenter): the form OTP requires once
/// `DFLAG_FRAGMENTS` is negotiated.
pub fn encode_control_headered(msg: Message) -> Result<Bytes, ControlError> {
    encode_with(msg, false)
}

fn encode_with(msg: Message, version_bytes: bool) -> Result<Bytes, ControlError> {
    let mut out = Vec::with_capacity(128);
    encode_control_into(msg, version_bytes, &mut out)?;
    Ok(Bytes::from(out))
}

/// Appends a control message's body to `out`: pass-through form (each term
/// starts with 131) with `version_bytes`, dist-header form without. Lets a
/// writer encode straight into its batch buffer, after a frame header it
/// fills in once the length is known. On error `out` may hold part of the
/// body: the caller truncates it.
pub fn encode_control_into(
    msg: Message,
    version_bytes: bool,
    out: &mut Vec<u8>,
) -> Result<(), ControlError> {
    let (ctrl, payload) = control_terms(msg)?;
    for t in std::iter::once(&ctrl).chain(payload.as_ref()) {
        if version_bytes {
            out.push(131);
        }
        crate::term::etf::encode(t, out).map_err(ControlError::Term)?;
    }
    Ok(())
}

/// [`encode_control_into`] of a message already laid out as its terms
/// ([`control_terms`]), leaving out the contents of every binary of at
/// least `min` bytes (map keys and fun environments excepted): returns where
/// in `out` each one's contents belong, with them, in order. The caller sends
/// `out` with those pieces put back between its bytes (see
/// [`Fragmenter::from_parts`](super::Fragmenter::from_parts)), so a 10 MB
/// binary is never copied on its way to the socket.
pub fn encode_terms_into_detached(
    mut ctrl: Term,
    mut payload: Option<Term>,
    version_bytes: bool,
    out: &mut Vec<u8>,
    min: usize,
) -> Result<Vec<(usize, Bytes)>, ControlError> {
    use crate::term::etf;
    let mut spans = Vec::new();
    for t in std::iter::once(&mut ctrl).chain(payload.as_mut()) {
        if version_bytes {
            out.push(131);
        }
        let binaries = etf::detach_binaries(t, min);
        if binaries.is_empty() {
            etf::encode(t, out).map_err(ControlError::Term)?;
            continue;
        }
        // `t` is not moved between taking its binaries and encoding it: the
        // encoder recognises them by address.
        let mut d = etf::Detached::new(std::mem::take(out), binaries);
        let encoded = etf::encode_detached(t, &mut d);
        *out = std::mem::take(&mut d.buf);
        encoded.map_err(ControlError::Term)?;
        if !d.complete() {
            return Err(ControlError::DetachedBinaryLost);
        }
        spans.append(&mut d.spans);
    }
    Ok(spans)
}

/// Encodes a message's terms ([`control_terms`]) for a distribution header
/// that makes atom cache references (see [`etf::Referencing`](crate::term::etf::Referencing)):
/// the header to write before `out.buf` names `out.atoms`.
pub fn encode_terms_referencing<R: crate::term::etf::AtomRefs>(
    ctrl: &Term,
    payload: Option<&Term>,
    out: &mut crate::term::etf::Referencing<R>,
) -> Result<(), ControlError> {
    for t in std::iter::once(ctrl).chain(payload) {
        crate::term::etf::encode_referencing(t, out).map_err(ControlError::Term)?;
    }
    Ok(())
}

/// [`encode_terms_referencing`] of a send (`SEND`, `REG_SEND`,
/// `SEND_SENDER`, `ALIAS_SEND`: nearly all traffic) straight from the
/// message's fields, without its control tuple built as a term (same
/// bytes). `None` for any other message.
pub fn encode_send_referencing<R: crate::term::etf::AtomRefs>(
    msg: &Message,
    out: &mut crate::term::etf::Referencing<R>,
) -> Option<Result<(), ControlError>> {
    use crate::term::etf::{encode_tuple_then_referencing as encode, Element as E};
    let unused = Atom::from("");
    let encoded = match msg {
        Message::Send(m) => encode(
            &[E::SmallInt(2), E::Atom(&unused), E::Pid(&m.to_pid)],
            &m.message,
            out,
        ),
        Message::RegSend(m) => encode(
            &[
                E::SmallInt(6),
                E::Pid(&m.from_pid),
                E::Atom(&unused),
                E::Atom(&m.to_name),
            ],
            &m.message,
            out,
        ),
        Message::SendSender(m) => encode(
            &[E::SmallInt(22), E::Pid(&m.from_pid), E::Pid(&m.to_pid)],
            &m.message,
            out,
        ),
        Message::AliasSend(m) => encode(
            &[E::SmallInt(33), E::Pid(&m.from_pid), E::Reference(&m.alias)],
            &m.message,
            out,
        ),
        _ => return None,
    };
    Some(encoded.map_err(ControlError::Term))
}

/// The control tuple and the optional payload term of a control message, as
/// the distribution protocol lays them out, for our encoder (`term::etf`).
pub fn control_terms(msg: Message) -> Result<(Term, Option<Term>), ControlError> {
    use crate::term::{atom, FixInteger};
    fn op(n: i32) -> Term {
        Term::FixInteger(FixInteger::from(n))
    }
    fn tup(v: Vec<Term>) -> Term {
        Term::Tuple(crate::term::Tuple::from(v))
    }
    fn pid(p: crate::term::Pid) -> Term {
        Term::Pid(p)
    }
    fn r(x: crate::term::Reference) -> Term {
        Term::Reference(Box::new(x))
    }
    let unused = || atom("");
    Ok(match msg {
        Message::Link(m) => (tup(vec![op(1), pid(m.from_pid), pid(m.to_pid)]), None),
        Message::Send(m) => (tup(vec![op(2), unused(), pid(m.to_pid)]), Some(m.message)),
        Message::Exit(m) => (
            tup(vec![op(3), pid(m.from_pid), pid(m.to_pid), m.reason]),
            None,
        ),
        Message::Unlink(m) => (tup(vec![op(4), pid(m.from_pid), pid(m.to_pid)]), None),
        Message::NodeLink(_) => (tup(vec![op(5)]), None),
        Message::RegSend(m) => (
            tup(vec![
                op(6),
                pid(m.from_pid),
                unused(),
                Term::Atom(m.to_name),
            ]),
            Some(m.message),
        ),
        Message::GroupLeader(m) => (tup(vec![op(7), pid(m.from_pid), pid(m.to_pid)]), None),
        Message::Exit2(m) => (
            tup(vec![op(8), pid(m.from_pid), pid(m.to_pid), m.reason]),
            None,
        ),
        Message::SendTt(m) => (
            tup(vec![op(12), unused(), pid(m.to_pid), m.trace_token]),
            Some(m.message),
        ),
        Message::ExitTt(m) => (
            tup(vec![
                op(13),
                pid(m.from_pid),
                pid(m.to_pid),
                m.trace_token,
                m.reason,
            ]),
            None,
        ),
        Message::RegSendTt(m) => (
            tup(vec![
                op(16),
                pid(m.from_pid),
                unused(),
                Term::Atom(m.to_name),
                m.trace_token,
            ]),
            Some(m.message),
        ),
        Message::Exit2Tt(m) => (
            tup(vec![
                op(18),
                pid(m.from_pid),
                pid(m.to_pid),
                m.trace_token,
                m.reason,
            ]),
            None,
        ),
        Message::MonitorP(m) => (
            tup(vec![
                op(19),
                pid(m.from_pid),
                Term::from(m.to_proc),
                r(m.reference),
            ]),
            None,
        ),
        Message::DemonitorP(m) => (
            tup(vec![
                op(20),
                pid(m.from_pid),
                Term::from(m.to_proc),
                r(m.reference),
            ]),
            None,
        ),
        Message::MonitorPExit(m) => (
            tup(vec![
                op(21),
                Term::from(m.from_proc),
                pid(m.to_pid),
                r(m.reference),
                m.reason,
            ]),
            None,
        ),
        Message::SendSender(m) => (
            tup(vec![op(22), pid(m.from_pid), pid(m.to_pid)]),
            Some(m.message),
        ),
        Message::SendSenderTt(m) => (
            tup(vec![op(23), pid(m.from_pid), pid(m.to_pid), m.trace_token]),
            Some(m.message),
        ),
        Message::PayloadExit(m) => (
            tup(vec![op(24), pid(m.from_pid), pid(m.to_pid)]),
            Some(m.reason),
        ),
        Message::PayloadExitTt(m) => (
            tup(vec![op(25), pid(m.from_pid), pid(m.to_pid), m.trace_token]),
            Some(m.reason),
        ),
        Message::PayloadExit2(m) => (
            tup(vec![op(26), pid(m.from_pid), pid(m.to_pid)]),
            Some(m.reason),
        ),
        Message::PayloadExit2Tt(m) => (
            tup(vec![op(27), pid(m.from_pid), pid(m.to_pid), m.trace_token]),
            Some(m.reason),
        ),
        Message::PayloadMonitorPExit(m) => (
            tup(vec![
                op(28),
                Term::from(m.from_proc),
                pid(m.to_pid),
                r(m.reference),
            ]),
            Some(m.reason),
        ),
        Message::SpawnRequest(m) => (
            tup(vec![
                op(29),
                r(m.req_id),
                pid(m.from_pid),
                pid(m.group_leader),
                Term::from(m.mfa),
                Term::List(m.opt_list),
            ]),
            Some(Term::List(m.arg_list)),
        ),
        Message::SpawnRequestTt(m) => (
            tup(vec![
                op(30),
                r(m.req_id),
                pid(m.from_pid),
                pid(m.group_leader),
                Term::from(m.mfa),
                Term::List(m.opt_list),
                m.trace_token,
            ]),
            Some(Term::List(m.arg_list)),
        ),
        Message::SpawnReply(m) => (
            tup(vec![
                op(31),
                r(m.req_id),
                pid(m.to_pid),
                Term::FixInteger(m.flags),
                Term::from(m.result),
            ]),
            None,
        ),
        Message::SpawnReplyTt(m) => (
            tup(vec![
                op(32),
                r(m.req_id),
                pid(m.to_pid),
                Term::FixInteger(m.flags),
                Term::from(m.result),
                m.trace_token,
            ]),
            None,
        ),
        Message::AliasSend(m) => (
            tup(vec![op(33), pid(m.from_pid), r(m.alias)]),
            Some(m.message),
        ),
        Message::AliasSendTt(m) => (
            tup(vec![op(34), pid(m.from_pid), r(m.alias), m.trace_token]),
            Some(m.message),
        ),
        Message::UnlinkId(m) => (
            tup(vec![op(35), m.id, pid(m.from_pid), pid(m.to_pid)]),
            None,
        ),
        Message::UnlinkIdAck(m) => (
            tup(vec![op(36), m.id, pid(m.from_pid), pid(m.to_pid)]),
            None,
        ),
        Message::Tick => return Err(ControlError::TickHasNoBody),
    })
}

/// Converts a pass-through body into a dist-header body by dropping the
/// version byte in front of each term.
pub fn strip_version_bytes(body: &[u8]) -> Result<Bytes, ControlError> {
    let parts = split(body, 0)?;
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(parts.ctrl);
    if let Some(p) = parts.payload {
        out.extend_from_slice(p);
    }
    Ok(Bytes::from(out))
}
