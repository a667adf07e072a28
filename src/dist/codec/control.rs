//! Control-message bodies <-> `erl_dist::message::Message`.

use std::io::Read;

use bytes::Bytes;
use eetf::Term;
use erl_dist::message::{Message, RecvError, SendError};

use super::scan::{check_term, TermError, VERSION_MAGIC};

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
    /// An operation `erl_dist` has no variant for. `control` is the decoded
    /// control tuple, for logging.
    #[error("unknown distribution operation {op}: {control}")]
    UnknownOp { op: i32, control: Term },
    /// `erl_dist` rejected the terms (wrong arity or element types for `op`).
    #[error("cannot decode control message (op {op:?}): {source}")]
    Decode {
        op: Option<i32>,
        #[source]
        source: RecvError,
    },
    /// Encoding failed.
    #[error("cannot encode control message: {0}")]
    Encode(#[from] SendError),
    /// A term in the message cannot be put in the external format.
    #[error("cannot encode a term of the control message: {0}")]
    Term(crate::term::etf::EncodeError),
    /// `Message::Tick` has no body: send [`TICK`](super::TICK) instead.
    #[error("a tick has no body; send TICK")]
    TickHasNoBody,
}

/// Operations `erl_dist` 0.8 `Message::read_from` has a variant for.
fn erl_dist_knows(op: i32) -> bool {
    matches!(op, 1..=8 | 12 | 13 | 16 | 18..=36)
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

fn split(body: &[u8]) -> Result<Parts<'_>, ControlError> {
    if body.is_empty() {
        return Err(ControlError::Empty);
    }
    let (magic, ctrl_end) = check_term(body, 0)?;
    let ctrl = &body[usize::from(magic)..ctrl_end];
    if ctrl_end == body.len() {
        return Ok(Parts {
            ctrl,
            payload: None,
        });
    }
    let (magic, end) = check_term(body, ctrl_end)?;
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

/// A reader presenting `term` (validated, version byte stripped) as a
/// stand-alone external term, without copying it.
fn versioned(term: &[u8]) -> impl Read + '_ {
    const MAGIC: &[u8] = &[VERSION_MAGIC];
    MAGIC.chain(term)
}

fn decode_term(term: &[u8]) -> Result<Term, ControlError> {
    Term::decode(versioned(term)).map_err(|e| ControlError::Decode {
        op: None,
        source: RecvError::Decode(e),
    })
}

/// Decodes a [`Frame::Message`](super::Frame::Message) body into an
/// `erl_dist` control message.
///
/// Accepts terms with and without the 131 version byte (pass-through vs.
/// dist-header frames). The body is validated first (see `scan`), so hostile
/// length fields cannot make `eetf` over-allocate or panic. An op `erl_dist`
/// does not know yields [`ControlError::UnknownOp`] with the control tuple.
///
/// Two shapes OTP sends that `erl_dist` 0.8 misreads are decoded here
/// instead: `SEND_TT` (erl_dist swaps ToPid and TraceToken) and
/// `SPAWN_REQUEST(_TT)` whose argument list is a `STRING_EXT` (e.g. `[1, 10]`).
pub fn decode_control(body: &[u8]) -> Result<Message, ControlError> {
    let parts = split(body)?;
    let op = peek_op(parts.ctrl);
    if let Some(op) = op.filter(|op| !erl_dist_knows(*op)) {
        let control = decode_term(parts.ctrl)?;
        return Err(ControlError::UnknownOp { op, control });
    }
    if let Some(msg) = workaround(op, &parts)? {
        return Ok(msg);
    }
    let empty: &[u8] = &[];
    let mut reader = versioned(parts.ctrl).chain(match parts.payload {
        Some(p) => Box::new(versioned(p)) as Box<dyn Read>,
        None => Box::new(empty),
    });
    match Message::read_from(&mut reader) {
        Ok(msg) => Ok(msg),
        Err(RecvError::UnsupportedOp { op }) => Err(ControlError::UnknownOp {
            op,
            control: decode_term(parts.ctrl)?,
        }),
        Err(source) => Err(ControlError::Decode { op, source }),
    }
}

/// Decodes the ops `erl_dist` 0.8 gets wrong; `None` for everything else.
fn workaround(op: Option<i32>, parts: &Parts<'_>) -> Result<Option<Message>, ControlError> {
    let shape_err = |what: &str| ControlError::Decode {
        op,
        source: RecvError::Decode(eetf::DecodeError::UnexpectedType {
            value: Term::from(eetf::Atom::from("control")),
            expected: what.to_owned(),
        }),
    };
    match op {
        // {12, Unused, ToPid, TraceToken} + Message
        Some(12) => {
            let Some(payload) = parts.payload else {
                return Err(shape_err("SEND_TT followed by a message"));
            };
            let ctrl = decode_term(parts.ctrl)?;
            let Term::Tuple(t) = ctrl else {
                return Err(shape_err("tuple"));
            };
            let mut e = t.elements.into_iter();
            let (Some(_), Some(_), Some(Term::Pid(to)), Some(token), None) =
                (e.next(), e.next(), e.next(), e.next(), e.next())
            else {
                return Err(shape_err("{12, Unused, ToPid, TraceToken}"));
            };
            Ok(Some(Message::send_tt(to, decode_term(payload)?, token)))
        }
        // SPAWN_REQUEST(_TT) whose ArgList is a STRING_EXT: erl_dist only
        // accepts LIST_EXT/NIL_EXT there.
        Some(29 | 30) if parts.payload.is_some_and(|p| p.first() == Some(&107)) => {
            let Some(payload) = parts.payload else {
                return Ok(None);
            };
            let Term::ByteList(bl) = decode_term(payload)? else {
                return Ok(None);
            };
            let args = eetf::List::from(
                bl.bytes
                    .iter()
                    .map(|b| Term::from(eetf::FixInteger::from(i32::from(*b))))
                    .collect::<Vec<_>>(),
            );
            // Re-encoding would not help (eetf writes such a list as
            // STRING_EXT again), so build the message from the tuple.
            let Term::Tuple(t) = decode_term(parts.ctrl)? else {
                return Err(shape_err("tuple"));
            };
            let mut e = t.elements.into_iter().skip(1);
            let (
                Some(Term::Reference(req_id)),
                Some(Term::Pid(from)),
                Some(Term::Pid(gl)),
                Some(Term::Tuple(mfa)),
                Some(opts),
            ) = (e.next(), e.next(), e.next(), e.next(), e.next())
            else {
                return Err(shape_err(
                    "{29, ReqId, From, GroupLeader, {M, F, A}, OptList}",
                ));
            };
            let mfa = match <[Term; 3]>::try_from(mfa.elements) {
                Ok([Term::Atom(module), Term::Atom(function), Term::FixInteger(arity)]) => {
                    erl_dist::term::Mfa {
                        module,
                        function,
                        arity,
                    }
                }
                _ => return Err(shape_err("{Module, Function, Arity}")),
            };
            let opts = match opts {
                Term::List(l) => l,
                _ => return Err(shape_err("option list")),
            };
            match (op, e.next(), e.next()) {
                (Some(29), None, _) => Ok(Some(Message::spawn_request(
                    *req_id, from, gl, mfa, opts, args,
                ))),
                (Some(30), Some(token), None) => Ok(Some(Message::spawn_request_tt(
                    *req_id, from, gl, mfa, opts, args, token,
                ))),
                _ => Err(shape_err("SPAWN_REQUEST arity")),
            }
        }
        _ => Ok(None),
    }
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
    let (ctrl, payload) = control_terms(msg)?;
    let mut out = Vec::with_capacity(128);
    for t in std::iter::once(&ctrl).chain(payload.as_ref()) {
        if version_bytes {
            out.push(131);
        }
        crate::term::etf::encode(t, &mut out).map_err(ControlError::Term)?;
    }
    Ok(Bytes::from(out))
}

/// The control tuple and the optional payload term of a control message, as
/// the distribution protocol lays them out. We encode these ourselves (see
/// `term::etf` for why eetf's encoder is not used).
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
    let parts = split(body)?;
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(parts.ctrl);
    if let Some(p) = parts.payload {
        out.extend_from_slice(p);
    }
    Ok(Bytes::from(out))
}
