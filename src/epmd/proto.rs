//! Sans-I/O codec for the EPMD wire protocol.
//!
//! Owns the byte layout of every message the client and the embedded EPMD
//! exchange: `ALIVE2_REQ` / `ALIVE2_X_RESP` (and the pre-OTP-23 `ALIVE2_RESP`),
//! `PORT_PLEASE2_REQ` / `PORT2_RESP`, `NAMES_REQ` / `NAMES_RESP`, in both
//! directions.
//!
//! It must never do I/O, log, block, or panic. Decoders take whatever bytes
//! have arrived so far and return `Ok(None)` when more are needed; they only
//! allocate for bytes that are already in the buffer, never from a length
//! field read off the wire.
//!
//! Framing: every request is a 2-byte big-endian length followed by that many
//! bytes whose first byte is the request tag. Replies are not length-framed;
//! their size follows from their tag and fields, except `NAMES_RESP`, which
//! runs until the EPMD closes the connection.

use super::NodeEntry;

/// `ALIVE2_REQ`: register a node.
pub const ALIVE2_REQ: u8 = b'x';
/// `ALIVE2_RESP`: registration reply with a 16-bit creation (before OTP 23).
pub const ALIVE2_RESP: u8 = b'y';
/// `ALIVE2_X_RESP`: registration reply with a 32-bit creation (OTP 23+).
pub const ALIVE2_X_RESP: u8 = b'v';
/// `PORT_PLEASE2_REQ`: look up one node by name.
pub const PORT_PLEASE2_REQ: u8 = b'z';
/// `PORT2_RESP`: reply to `PORT_PLEASE2_REQ`.
pub const PORT2_RESP: u8 = b'w';
/// `NAMES_REQ`: list registered nodes.
pub const NAMES_REQ: u8 = b'n';

/// Node type byte of a normal Erlang node.
pub const NODE_TYPE_NORMAL: u8 = 77; // 'M'
/// Node type byte of a hidden node (C nodes, `-hidden`).
pub const NODE_TYPE_HIDDEN: u8 = 72; // 'H'
/// Pre-R6 spelling of a normal node; accepted on decode only.
const NODE_TYPE_NORMAL_LEGACY: u8 = 110; // 'n'
/// Pre-R6 spelling of a hidden node; accepted on decode only.
const NODE_TYPE_HIDDEN_LEGACY: u8 = 104; // 'h'

/// Longest node name in characters (names are atoms).
pub const MAX_NAME_CHARS: usize = 255;
/// Longest node name in bytes (255 characters of up to 4 UTF-8 bytes each).
pub const MAX_NAME_BYTES: usize = 255 * 4;
/// Longest `Extra` field, the same bound the real epmd applies.
pub const MAX_EXTRA_LEN: usize = 255 * 4;
/// Longest request body accepted. The largest valid request is an
/// `ALIVE2_REQ` with a maximal name and extra (13 + 2 * 1020 bytes); the real
/// epmd uses a 3060-byte input buffer. Anything longer is rejected from the
/// length header alone, before the body is read.
pub const MAX_REQUEST_LEN: usize = 4096;

/// Why bytes could not be decoded or a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("empty EPMD request (length 0)")]
    EmptyRequest,
    #[error("EPMD request length {0} exceeds the limit of {MAX_REQUEST_LEN} bytes")]
    RequestTooLong(usize),
    #[error("unknown EPMD request tag {0}")]
    UnknownRequest(u8),
    #[error("unexpected EPMD reply tag {0}")]
    UnexpectedReply(u8),
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("invalid node name: {0}")]
    InvalidName(&'static str),
    #[error("extra data is {0} bytes; the limit is {MAX_EXTRA_LEN}")]
    ExtraTooLong(usize),
    #[error("unknown node type byte {0}")]
    UnknownNodeType(u8),
}

fn malformed(what: &'static str, why: &'static str) -> ProtoError {
    ProtoError::Malformed { what, why }
}

/// A request as the EPMD receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ALIVE2_REQ`: register this node for as long as the connection lives.
    Alive2(NodeEntry),
    /// `PORT_PLEASE2_REQ`: where does node `name` listen?
    PortPlease2 { name: String },
    /// `NAMES_REQ`: list registered names.
    Names,
}

/// Reply to `ALIVE2_REQ`. `result == 0` means registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alive2Resp {
    /// `ALIVE2_X_RESP` (OTP 23+), sent when the request's highest version is >= 6.
    X { result: u8, creation: u32 },
    /// `ALIVE2_RESP`, sent to nodes that announce highest version < 6.
    Old { result: u8, creation: u16 },
}

impl Alive2Resp {
    pub fn result(&self) -> u8 {
        match *self {
            Alive2Resp::X { result, .. } | Alive2Resp::Old { result, .. } => result,
        }
    }

    pub fn creation(&self) -> u32 {
        match *self {
            Alive2Resp::X { creation, .. } => creation,
            Alive2Resp::Old { creation, .. } => u32::from(creation),
        }
    }
}

/// Reply to `PORT_PLEASE2_REQ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port2Resp {
    /// Result 0: the node is registered.
    Found(NodeEntry),
    /// Non-zero result (epmd uses 1): no such node.
    NotFound { result: u8 },
}

/// Reply to `NAMES_REQ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesResp {
    /// The port the EPMD itself listens on. `erl` rejects the whole reply if
    /// this differs from the port it connected to.
    pub epmd_port: u32,
    /// `(name, port)` in the order the EPMD listed them.
    pub nodes: Vec<(String, u16)>,
}

// ---------------------------------------------------------------------------
// Validation shared by encoders and decoders.

/// Checks a node name the way epmd does (non-empty, no NUL, at most 255
/// characters), and also refuses `'\n'`, which would corrupt `NAMES_RESP`.
pub fn validate_name(name: &str) -> Result<(), ProtoError> {
    if name.is_empty() {
        return Err(ProtoError::InvalidName("empty"));
    }
    if name.len() > MAX_NAME_BYTES || name.chars().count() > MAX_NAME_CHARS {
        return Err(ProtoError::InvalidName("longer than 255 characters"));
    }
    if name.bytes().any(|b| b == 0 || b == b'\n') {
        return Err(ProtoError::InvalidName("contains NUL or newline"));
    }
    Ok(())
}

fn validate_entry(entry: &NodeEntry) -> Result<(), ProtoError> {
    validate_name(&entry.name)?;
    if entry.extra.len() > MAX_EXTRA_LEN {
        return Err(ProtoError::ExtraTooLong(entry.extra.len()));
    }
    Ok(())
}

fn name_from_bytes(bytes: &[u8]) -> Result<String, ProtoError> {
    let name =
        std::str::from_utf8(bytes).map_err(|_| ProtoError::InvalidName("not valid UTF-8"))?;
    validate_name(name)?;
    Ok(name.to_owned())
}

fn node_type_byte(hidden: bool) -> u8 {
    if hidden {
        NODE_TYPE_HIDDEN
    } else {
        NODE_TYPE_NORMAL
    }
}

fn hidden_from_node_type(b: u8) -> Result<bool, ProtoError> {
    match b {
        NODE_TYPE_NORMAL | NODE_TYPE_NORMAL_LEGACY => Ok(false),
        NODE_TYPE_HIDDEN | NODE_TYPE_HIDDEN_LEGACY => Ok(true),
        other => Err(ProtoError::UnknownNodeType(other)),
    }
}

// ---------------------------------------------------------------------------
// A tiny bounds-checked reader so decoders cannot index out of range.

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Reads the node fields shared by `ALIVE2_REQ` and `PORT2_RESP`: port, type,
/// protocol, versions, name and extra. `None` means the input ended early.
fn read_entry_fields(r: &mut Reader<'_>) -> Option<Result<NodeEntry, ProtoError>> {
    let port = r.u16()?;
    let node_type = r.u8()?;
    let protocol = r.u8()?;
    let highest_version = r.u16()?;
    let lowest_version = r.u16()?;
    let name_len = usize::from(r.u16()?);
    // Check the announced sizes before waiting for bytes that a valid message
    // could never contain.
    if name_len > MAX_NAME_BYTES {
        return Some(Err(ProtoError::InvalidName("longer than 255 characters")));
    }
    let name = r.take(name_len)?;
    let extra_len = usize::from(r.u16()?);
    if extra_len > MAX_EXTRA_LEN {
        return Some(Err(ProtoError::ExtraTooLong(extra_len)));
    }
    let extra = r.take(extra_len)?;
    Some((|| {
        Ok(NodeEntry {
            name: name_from_bytes(name)?,
            port,
            hidden: hidden_from_node_type(node_type)?,
            protocol,
            highest_version,
            lowest_version,
            extra: extra.to_vec(),
        })
    })())
}

fn write_entry_fields(entry: &NodeEntry, out: &mut Vec<u8>) {
    // Lengths fit in u16: validate_entry bounds them far below 65536.
    out.extend_from_slice(&entry.port.to_be_bytes());
    out.push(node_type_byte(entry.hidden));
    out.push(entry.protocol);
    out.extend_from_slice(&entry.highest_version.to_be_bytes());
    out.extend_from_slice(&entry.lowest_version.to_be_bytes());
    out.extend_from_slice(&(entry.name.len() as u16).to_be_bytes());
    out.extend_from_slice(entry.name.as_bytes());
    out.extend_from_slice(&(entry.extra.len() as u16).to_be_bytes());
    out.extend_from_slice(&entry.extra);
}

// ---------------------------------------------------------------------------
// Requests (client encodes, server decodes).

/// Appends a framed request (length header included) to `out`.
pub fn encode_request(req: &Request, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    let mut body = Vec::new();
    match req {
        Request::Alive2(entry) => {
            validate_entry(entry)?;
            body.push(ALIVE2_REQ);
            write_entry_fields(entry, &mut body);
        }
        Request::PortPlease2 { name } => {
            validate_name(name)?;
            body.push(PORT_PLEASE2_REQ);
            body.extend_from_slice(name.as_bytes());
        }
        Request::Names => body.push(NAMES_REQ),
    }
    debug_assert!(body.len() <= MAX_REQUEST_LEN);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Decodes one framed request from the start of `buf`.
///
/// Returns the request and the number of bytes it used, `Ok(None)` if the
/// frame is not complete yet, or an error as soon as the header or body is
/// known to be invalid (an oversized length is refused before its body
/// arrives).
pub fn decode_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProtoError> {
    let Some(header) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([header[0], header[1]]));
    if len == 0 {
        return Err(ProtoError::EmptyRequest);
    }
    if len > MAX_REQUEST_LEN {
        return Err(ProtoError::RequestTooLong(len));
    }
    let Some(body) = buf.get(2..2 + len) else {
        return Ok(None);
    };
    let req = match body[0] {
        ALIVE2_REQ => {
            let mut r = Reader::new(&body[1..]);
            let entry = match read_entry_fields(&mut r) {
                None => return Err(malformed("ALIVE2_REQ", "shorter than its fields")),
                Some(entry) => entry?,
            };
            if r.remaining() != 0 {
                return Err(malformed("ALIVE2_REQ", "trailing bytes"));
            }
            Request::Alive2(entry)
        }
        PORT_PLEASE2_REQ => {
            let mut name = &body[1..];
            // Very old clients NUL-terminate the name; epmd strips one NUL.
            if let Some((&0, rest)) = name.split_last() {
                name = rest;
            }
            Request::PortPlease2 {
                name: name_from_bytes(name)?,
            }
        }
        NAMES_REQ => {
            if len != 1 {
                return Err(malformed("NAMES_REQ", "trailing bytes"));
            }
            Request::Names
        }
        other => return Err(ProtoError::UnknownRequest(other)),
    };
    Ok(Some((req, 2 + len)))
}

// ---------------------------------------------------------------------------
// ALIVE2 replies (server encodes, client decodes).

pub fn encode_alive2_resp(resp: &Alive2Resp, out: &mut Vec<u8>) {
    match *resp {
        Alive2Resp::X { result, creation } => {
            out.push(ALIVE2_X_RESP);
            out.push(result);
            out.extend_from_slice(&creation.to_be_bytes());
        }
        Alive2Resp::Old { result, creation } => {
            out.push(ALIVE2_RESP);
            out.push(result);
            out.extend_from_slice(&creation.to_be_bytes());
        }
    }
}

/// Decodes `ALIVE2_X_RESP` or `ALIVE2_RESP`; returns the reply and bytes used.
pub fn decode_alive2_resp(buf: &[u8]) -> Result<Option<(Alive2Resp, usize)>, ProtoError> {
    let mut r = Reader::new(buf);
    let Some(tag) = r.u8() else {
        return Ok(None);
    };
    let resp = match tag {
        ALIVE2_X_RESP => {
            let (Some(result), Some(creation)) = (r.u8(), r.u32()) else {
                return Ok(None);
            };
            Alive2Resp::X { result, creation }
        }
        ALIVE2_RESP => {
            let (Some(result), Some(creation)) = (r.u8(), r.u16()) else {
                return Ok(None);
            };
            Alive2Resp::Old { result, creation }
        }
        other => return Err(ProtoError::UnexpectedReply(other)),
    };
    Ok(Some((resp, r.pos)))
}

// ---------------------------------------------------------------------------
// PORT2 replies.

pub fn encode_port2_resp(resp: &Port2Resp, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    match resp {
        Port2Resp::Found(entry) => {
            validate_entry(entry)?;
            out.push(PORT2_RESP);
            out.push(0);
            write_entry_fields(entry, out);
        }
        Port2Resp::NotFound { result } => {
            // A zero result would announce fields that do not follow.
            if *result == 0 {
                return Err(malformed("PORT2_RESP", "not-found reply with result 0"));
            }
            out.push(PORT2_RESP);
            out.push(*result);
        }
    }
    Ok(())
}

/// Decodes `PORT2_RESP`; returns the reply and bytes used.
pub fn decode_port2_resp(buf: &[u8]) -> Result<Option<(Port2Resp, usize)>, ProtoError> {
    let mut r = Reader::new(buf);
    let Some(tag) = r.u8() else {
        return Ok(None);
    };
    if tag != PORT2_RESP {
        return Err(ProtoError::UnexpectedReply(tag));
    }
    let Some(result) = r.u8() else {
        return Ok(None);
    };
    if result != 0 {
        return Ok(Some((Port2Resp::NotFound { result }, r.pos)));
    }
    match read_entry_fields(&mut r) {
        None => Ok(None),
        Some(entry) => Ok(Some((Port2Resp::Found(entry?), r.pos))),
    }
}

// ---------------------------------------------------------------------------
// NAMES replies.

/// Encodes the whole `NAMES_RESP`: the EPMD's own port as u32, then one
/// `name NAME at port PORT\n` line per node, byte for byte what epmd sends.
/// The EPMD closes the connection afterwards; that is what ends the reply.
pub fn encode_names_resp<'a>(
    epmd_port: u32,
    nodes: impl IntoIterator<Item = (&'a str, u16)>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&epmd_port.to_be_bytes());
    for (name, port) in nodes {
        out.extend_from_slice(b"name ");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b" at port ");
        out.extend_from_slice(port.to_string().as_bytes());
        out.push(b'\n');
    }
}

/// Decodes a complete `NAMES_RESP`: `buf` must hold every byte received up
/// to the EPMD closing the connection. `Ok(None)` only if the 4-byte port is
/// not all there.
///
/// Like `erl_epmd`, lines that do not parse (and an unterminated last line)
/// are skipped rather than failing the whole listing.
pub fn decode_names_resp(buf: &[u8]) -> Result<Option<NamesResp>, ProtoError> {
    let mut r = Reader::new(buf);
    let Some(epmd_port) = r.u32() else {
        return Ok(None);
    };
    let text = &buf[r.pos..];
    let mut nodes = Vec::new();
    let mut lines = text.split(|&b| b == b'\n');
    // `split` yields the part after the last '\n' too; that part is either
    // empty or an unterminated line, and is dropped either way.
    let _unterminated = lines.next_back();
    for line in lines {
        if let Some(entry) = parse_names_line(line) {
            nodes.push(entry);
        }
    }
    Ok(Some(NamesResp { epmd_port, nodes }))
}

fn parse_names_line(line: &[u8]) -> Option<(String, u16)> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("name ")?;
    // rsplit: the port is always last, whatever the name contains.
    let (name, port) = rest.rsplit_once(" at port ")?;
    let port = port.parse::<u16>().ok()?;
    if name.is_empty() {
        return None;
    }
    Some((name.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured from OTP 25 (erts 13.1.5) through a logging TCP proxy placed
    // between `erl -name capa@127.0.0.1 -start_epmd false` and
    // `epmd -port 14369`. Request from erl:
    const ERL_ALIVE2_REQ: [u8; 19] = [
        0x00, 0x11, 0x78, 0xa8, 0xe9, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00, 0x04, b'c', b'a',
        b'p', b'a', 0x00, 0x00,
    ];
    // ... and epmd's reply (ALIVE2_X_RESP, creation 0x6b03fe09).
    const EPMD_ALIVE2_X_RESP: [u8; 6] = [0x76, 0x00, 0x6b, 0x03, 0xfe, 0x09];
    // epmd's reply when `capa` registered a second time (result 1, creation 99).
    const EPMD_ALIVE2_X_RESP_TAKEN: [u8; 6] = [0x76, 0x01, 0x00, 0x00, 0x00, 0x63];
    // Same capture: `erl_epmd:port_please("capa", ...)` request and reply.
    const ERL_PORT_PLEASE2_REQ: [u8; 7] = [0x00, 0x05, 0x7a, b'c', b'a', b'p', b'a'];
    const EPMD_PORT2_RESP: [u8; 18] = [
        0x77, 0x00, 0xa8, 0xe9, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00, 0x04, b'c', b'a', b'p',
        b'a', 0x00, 0x00,
    ];
    // Unknown name ("nosuch"): epmd sends two bytes and closes.
    const EPMD_PORT2_RESP_UNKNOWN: [u8; 2] = [0x77, 0x01];
    // `net_adm:names()` request and the reply of epmd on port 14369 (0x3821).
    const ERL_NAMES_REQ: [u8; 3] = [0x00, 0x01, 0x6e];
    const EPMD_NAMES_RESP: &[u8] =
        b"\x00\x00\x38\x21name capb at port 42659\nname capa at port 43241\n";
    // Hand-crafted with a Python client against the same epmd: an ALIVE2_REQ
    // with highest version 5 gets the old 4-byte ALIVE2_RESP (creation 1).
    const EPMD_ALIVE2_RESP_OLD: [u8; 4] = [0x79, 0x00, 0x00, 0x01];
    // A hidden node registered with extra b"xy", looked up by PORT_PLEASE2.
    const EPMD_PORT2_RESP_HIDDEN_EXTRA: [u8; 21] = [
        0x77, 0x00, 0x09, 0x29, 0x48, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00, 0x03, b'h', b'i', b'd',
        0x00, 0x02, b'x', b'y', // then epmd closed the connection
        0, 0, // (not part of the capture: trailing bytes to check `used`)
    ];

    fn capa() -> NodeEntry {
        NodeEntry::new("capa", 43241, false)
    }

    #[test]
    fn decodes_erl_alive2_req() {
        let (req, used) = decode_request(&ERL_ALIVE2_REQ).unwrap().unwrap();
        assert_eq!(used, ERL_ALIVE2_REQ.len());
        assert_eq!(req, Request::Alive2(capa()));
    }

    #[test]
    fn encodes_alive2_req_like_erl() {
        let mut out = Vec::new();
        encode_request(&Request::Alive2(capa()), &mut out).unwrap();
        assert_eq!(out, ERL_ALIVE2_REQ);
    }

    #[test]
    fn alive2_replies_from_epmd() {
        let mut out = Vec::new();
        let ok = Alive2Resp::X {
            result: 0,
            creation: 0x6b03fe09,
        };
        encode_alive2_resp(&ok, &mut out);
        assert_eq!(out, EPMD_ALIVE2_X_RESP);
        assert_eq!(
            decode_alive2_resp(&EPMD_ALIVE2_X_RESP).unwrap(),
            Some((ok, 6))
        );

        let (taken, _) = decode_alive2_resp(&EPMD_ALIVE2_X_RESP_TAKEN)
            .unwrap()
            .unwrap();
        assert_eq!(taken.result(), 1);
        assert_eq!(taken.creation(), 99);

        let (old, used) = decode_alive2_resp(&EPMD_ALIVE2_RESP_OLD).unwrap().unwrap();
        assert_eq!(used, 4);
        assert_eq!(
            old,
            Alive2Resp::Old {
                result: 0,
                creation: 1
            }
        );
    }

    #[test]
    fn alive2_resp_needs_all_bytes() {
        for n in 0..EPMD_ALIVE2_X_RESP.len() {
            assert_eq!(decode_alive2_resp(&EPMD_ALIVE2_X_RESP[..n]).unwrap(), None);
        }
        assert_eq!(
            decode_alive2_resp(b"w\x00"),
            Err(ProtoError::UnexpectedReply(b'w'))
        );
    }

    #[test]
    fn port_please2_from_erl_and_epmd() {
        let (req, used) = decode_request(&ERL_PORT_PLEASE2_REQ).unwrap().unwrap();
        assert_eq!(used, 7);
        assert_eq!(
            req,
            Request::PortPlease2 {
                name: "capa".into()
            }
        );
        let mut out = Vec::new();
        encode_request(&req, &mut out).unwrap();
        assert_eq!(out, ERL_PORT_PLEASE2_REQ);

        let (resp, used) = decode_port2_resp(&EPMD_PORT2_RESP).unwrap().unwrap();
        assert_eq!(used, EPMD_PORT2_RESP.len());
        assert_eq!(resp, Port2Resp::Found(capa()));
        let mut out = Vec::new();
        encode_port2_resp(&resp, &mut out).unwrap();
        assert_eq!(out, EPMD_PORT2_RESP);

        let (resp, used) = decode_port2_resp(&EPMD_PORT2_RESP_UNKNOWN)
            .unwrap()
            .unwrap();
        assert_eq!((resp, used), (Port2Resp::NotFound { result: 1 }, 2));

        let (resp, used) = decode_port2_resp(&EPMD_PORT2_RESP_HIDDEN_EXTRA)
            .unwrap()
            .unwrap();
        assert_eq!(used, 19);
        let mut hid = NodeEntry::new("hid", 2345, true);
        hid.extra = b"xy".to_vec();
        assert_eq!(resp, Port2Resp::Found(hid));
    }

    #[test]
    fn port_please2_nul_terminated_name() {
        let (req, _) = decode_request(b"\x00\x05zhid\x00").unwrap().unwrap();
        assert_eq!(req, Request::PortPlease2 { name: "hid".into() });
    }

    #[test]
    fn port2_resp_partial() {
        for n in 0..EPMD_PORT2_RESP.len() {
            assert_eq!(
                decode_port2_resp(&EPMD_PORT2_RESP[..n]).unwrap(),
                None,
                "{n}"
            );
        }
    }

    #[test]
    fn names_from_epmd() {
        let (req, used) = decode_request(&ERL_NAMES_REQ).unwrap().unwrap();
        assert_eq!((req, used), (Request::Names, 3));

        let resp = decode_names_resp(EPMD_NAMES_RESP).unwrap().unwrap();
        assert_eq!(resp.epmd_port, 14369);
        assert_eq!(
            resp.nodes,
            vec![("capb".to_string(), 42659), ("capa".to_string(), 43241)]
        );
        let mut out = Vec::new();
        encode_names_resp(14369, [("capb", 42659), ("capa", 43241)], &mut out);
        assert_eq!(out, EPMD_NAMES_RESP);
    }

    #[test]
    fn names_skips_bad_and_unterminated_lines() {
        let buf =
            b"\x00\x00\x11\x11garbage\nname a at port 99999\nname b c at port 7\nname d at port 8";
        let resp = decode_names_resp(buf).unwrap().unwrap();
        assert_eq!(resp.nodes, vec![("b c".to_string(), 7)]);
        assert_eq!(decode_names_resp(b"\x00\x00\x11").unwrap(), None);
    }

    #[test]
    fn rejects_bad_requests() {
        assert_eq!(decode_request(b"\x00"), Ok(None));
        assert_eq!(decode_request(b"\x00\x00"), Err(ProtoError::EmptyRequest));
        assert_eq!(
            decode_request(b"\xff\xff"),
            Err(ProtoError::RequestTooLong(65535))
        );
        assert_eq!(
            decode_request(b"\x00\x03\xff\x01\x02"),
            Err(ProtoError::UnknownRequest(0xff))
        );
        // Announced name length runs past the frame.
        assert!(decode_request(b"\x00\x0dx\x00\x01M\x00\x00\x06\x00\x05\x00\x09ab").is_err());
        // NUL inside a name.
        assert!(decode_request(b"\x00\x04za\x00b").is_err());
        assert!(decode_request(b"\x00\x01z").is_err());
        assert!(decode_request(b"\x00\x02nn").is_err());
        // Partial body.
        assert_eq!(decode_request(&ERL_ALIVE2_REQ[..10]), Ok(None));
    }

    #[test]
    fn encoders_validate() {
        let mut out = Vec::new();
        assert!(encode_request(&Request::Alive2(NodeEntry::new("", 1, false)), &mut out).is_err());
        let long = "a".repeat(256);
        assert!(encode_request(&Request::PortPlease2 { name: long }, &mut out).is_err());
        let mut e = NodeEntry::new("x", 1, false);
        e.extra = vec![0; MAX_EXTRA_LEN + 1];
        assert!(encode_request(&Request::Alive2(e), &mut out).is_err());
        assert!(encode_port2_resp(&Port2Resp::NotFound { result: 0 }, &mut out).is_err());
        assert!(out.is_empty(), "failed encodes must not write");
    }

    fn arb_name() -> impl Strategy<Value = String> {
        // Any characters but NUL and newline, 1..=255 of them.
        proptest::collection::vec(
            any::<char>().prop_filter("no NUL/newline", |c| *c != '\0' && *c != '\n'),
            1..=MAX_NAME_CHARS,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn arb_entry() -> impl Strategy<Value = NodeEntry> {
        (
            arb_name(),
            any::<u16>(),
            any::<bool>(),
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_EXTRA_LEN),
        )
            .prop_map(|(name, port, hidden, protocol, hi, lo, extra)| NodeEntry {
                name,
                port,
                hidden,
                protocol,
                highest_version: hi,
                lowest_version: lo,
                extra,
            })
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            arb_entry().prop_map(Request::Alive2),
            arb_name().prop_map(|name| Request::PortPlease2 { name }),
            Just(Request::Names),
        ]
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = decode_request(&bytes);
            let _ = decode_alive2_resp(&bytes);
            let _ = decode_port2_resp(&bytes);
            let _ = decode_names_resp(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_plausible_prefixes(
            tag in prop_oneof![Just(ALIVE2_REQ), Just(PORT_PLEASE2_REQ), Just(NAMES_REQ),
                               Just(PORT2_RESP), Just(ALIVE2_X_RESP), Just(ALIVE2_RESP)],
            rest in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut framed = ((rest.len() + 1) as u16).to_be_bytes().to_vec();
            framed.push(tag);
            framed.extend_from_slice(&rest);
            let _ = decode_request(&framed);
            let _ = decode_port2_resp(&framed[2..]);
            let _ = decode_alive2_resp(&framed[2..]);
        }

        #[test]
        fn request_round_trip(req in arb_request(), split in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode_request(&req, &mut buf).unwrap();
            // Any strict prefix asks for more bytes.
            let cut = split.index(buf.len());
            prop_assert_eq!(decode_request(&buf[..cut]).unwrap(), None);
            buf.extend_from_slice(b"next");
            let (back, used) = decode_request(&buf).unwrap().unwrap();
            prop_assert_eq!(used, buf.len() - 4);
            prop_assert_eq!(back, req);
        }

        #[test]
        fn alive2_resp_round_trip(result in any::<u8>(), creation in any::<u32>(), old in any::<bool>()) {
            let resp = if old {
                Alive2Resp::Old { result, creation: creation as u16 }
            } else {
                Alive2Resp::X { result, creation }
            };
            let mut buf = Vec::new();
            encode_alive2_resp(&resp, &mut buf);
            prop_assert_eq!(decode_alive2_resp(&buf).unwrap(), Some((resp, buf.len())));
        }

        #[test]
        fn port2_resp_round_trip(entry in arb_entry(), result in 1u8.., found in any::<bool>()) {
            let resp = if found { Port2Resp::Found(entry) } else { Port2Resp::NotFound { result } };
            let mut buf = Vec::new();
            encode_port2_resp(&resp, &mut buf).unwrap();
            prop_assert_eq!(decode_port2_resp(&buf[..buf.len() - 1]).unwrap(), None);
            prop_assert_eq!(decode_port2_resp(&buf).unwrap(), Some((resp, buf.len())));
        }

        #[test]
        fn names_resp_round_trip(
            port in any::<u32>(),
            nodes in proptest::collection::vec((arb_name(), any::<u16>()), 0..8),
        ) {
            let mut buf = Vec::new();
            encode_names_resp(port, nodes.iter().map(|(n, p)| (n.as_str(), *p)), &mut buf);
            let back = decode_names_resp(&buf).unwrap().unwrap();
            prop_assert_eq!(back.epmd_port, port);
            prop_assert_eq!(back.nodes, nodes);
        }
    }
}
