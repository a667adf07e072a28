//! The distribution handshake as a sans-I/O state machine (client and server side).
//!
//! This module owns the bytes of the handshake: the 2-byte length-prefixed
//! messages `send_name` (`'N'` or the old `'n'`), `status` (`'s'`), `challenge`
//! (`'N'`/`'n'`), `complement` (`'c'`), `challenge_reply` (`'r'`) and
//! `challenge_ack` (`'a'`), the cookie digests, and the checks on what the peer
//! sends (lengths, names, mandatory flags, digests).
//!
//! It never touches sockets, clocks or randomness: the owner feeds received
//! bytes to [`Handshake::receive`], writes what [`Handshake::take_output`]
//! returns, and reacts to [`Handshake::poll_event`]. Challenges are passed in
//! so tests are deterministic. It does not time out (the owner does), does not
//! decide simultaneous-connect races (the owner answers
//! [`HandshakeEvent::PeerNamed`] with [`Handshake::set_status`]), and does not
//! parse anything after the handshake: bytes that follow the last handshake
//! message are handed back untouched in [`HandshakeEvent::Completed`].
//!
//! Protocol versions: 6 is the OTP 23+ handshake (`DFLAG_HANDSHAKE_23`, 64-bit
//! flags and creation in the `'N'` messages); 5 is the older one with `'n'`
//! messages. A client that sent an old `'n'` name but is answered with a new
//! `'N'` challenge sends a `'c'` complement carrying its high flag word and
//! creation. Note that OTP 25 itself only accepts `'N'` names (it closes the
//! connection on `'n'`), so version 5 matters for talking to older nodes and
//! for being a server to them.

use std::collections::VecDeque;

use super::flags;

/// Largest handshake message body: the length prefix is 16 bits.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;

/// Node names are atoms, and atoms hold at most 255 characters.
const MAX_NAME_LEN: usize = 255;

/// Version field we put in old-style `'n'` messages.
const OLD_VERSION: u16 = 5;

/// Who we are in the handshake.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Our full node name, `"node@host"`.
    pub name: String,
    /// Our creation (from EPMD's ALIVE2 answer).
    pub creation: u32,
    /// The flags we advertise, normally [`flags::offered`].
    pub flags: u64,
    /// The cookie, used both as in-cookie and out-cookie.
    pub cookie: String,
}

/// What we learned about the peer once the handshake completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's full node name.
    pub name: String,
    /// The peer's flags as it sent them, with `DFLAG_MANDATORY_25_DIGEST`
    /// expanded into the flags it stands for. The flags in force on the
    /// connection are `ours & peer.flags` (see [`PeerInfo::common_flags`]).
    pub flags: u64,
    /// The peer's creation; 0 when a protocol-5 peer never told us.
    pub creation: u32,
    /// 6 when the peer spoke the OTP 23 handshake (64-bit flags and creation
    /// exchanged), 5 for the old one.
    pub version: u16,
}

impl PeerInfo {
    /// The flags both sides support, which is what governs the connection.
    pub fn common_flags(&self, ours: u64) -> u64 {
        ours & self.flags
    }

    /// Whether the peer is a hidden node (does not set `DFLAG_PUBLISHED`).
    pub fn is_hidden(&self) -> bool {
        self.flags & flags::PUBLISHED == 0
    }
}

/// The server's answer to a named peer (the `send_status` step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus {
    /// Go on.
    Ok,
    /// Go on; our own pending attempt towards the peer will be dropped.
    OkSimultaneous,
    /// Stop: our own pending attempt towards the peer wins.
    Nok,
    /// Stop: the peer is not welcome.
    NotAllowed,
    /// We already have a connection to that name; the peer answers whether to
    /// continue (and the owner must then drop the old connection).
    Alive,
}

impl ServerStatus {
    /// The status text on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Ok => "ok",
            ServerStatus::OkSimultaneous => "ok_simultaneous",
            ServerStatus::Nok => "nok",
            ServerStatus::NotAllowed => "not_allowed",
            ServerStatus::Alive => "alive",
        }
    }
}

/// What the owner has to react to.
#[derive(Debug)]
pub enum HandshakeEvent {
    /// Server side only: the peer told us its name; the owner must call `set_status`
    /// (this is where simultaneous-connect resolution happens).
    PeerNamed {
        name: String,
        flags: u64,
        creation: Option<u32>,
    },
    /// The handshake completed; frames follow. `leftover` = bytes received after the last handshake message.
    Completed { peer: PeerInfo, leftover: Vec<u8> },
}

/// Why a handshake failed. Every failure is final: the owner closes the socket
/// (after writing whatever [`Handshake::take_output`] still holds, which is at
/// most a refusing status).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's digest does not match our cookie, or it hung up right after
    /// seeing ours (which is how a real node reports a wrong cookie).
    #[error("cookie mismatch with {peer}: {detail}; both nodes must use the same cookie")]
    CookieMismatch { peer: String, detail: &'static str },
    /// The server refused the connection with this status (`nok`,
    /// `not_allowed`), or a client answered `false` to our `alive`.
    #[error("connection refused by the peer (status {0:?})")]
    Refused(String),
    /// A message that cannot be parsed.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// The peer speaks a protocol version other than 5 or 6.
    #[error("unsupported distribution protocol version (only 5 and 6 are spoken)")]
    UnsupportedVersion,
    /// The peer lacks flags we require (OTP 25's mandatory set by default).
    #[error("peer lacks mandatory distribution flags {missing:#x} ({})", flag_names(*.missing))]
    MissingMandatoryFlags { missing: u64 },
    /// A well-formed message that has no place at this point of the handshake.
    #[error("unexpected handshake message: {0}")]
    UnexpectedMessage(String),
    /// A node name that is not `name@host`, too long, or not UTF-8.
    #[error("invalid node name: {0}")]
    NameInvalid(String),
    /// The peer closed the connection before the handshake completed.
    #[error("connection closed during the handshake: {0}")]
    ConnectionClosed(String),
}

/// `md5(cookie ++ decimal(challenge))`, the proof of knowing the cookie.
pub fn digest(challenge: u32, cookie: &str) -> [u8; 16] {
    let mut ctx = md5::Context::new();
    ctx.consume(cookie.as_bytes());
    ctx.consume(challenge.to_string().as_bytes());
    ctx.finalize().0
}

/// Compare digests without an early exit, so timing does not leak how many
/// leading bytes of a guess were right.
fn digest_eq(a: &[u8; 16], b: &[u8]) -> bool {
    b.len() == 16 && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Names of the `DFLAG_*` bits set in `bits`, for error messages.
fn flag_names(bits: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (flags::EXTENDED_REFERENCES, "EXTENDED_REFERENCES"),
        (flags::FUN_TAGS, "FUN_TAGS"),
        (flags::NEW_FUN_TAGS, "NEW_FUN_TAGS"),
        (flags::EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS"),
        (flags::EXPORT_PTR_TAG, "EXPORT_PTR_TAG"),
        (flags::BIT_BINARIES, "BIT_BINARIES"),
        (flags::NEW_FLOATS, "NEW_FLOATS"),
        (flags::UTF8_ATOMS, "UTF8_ATOMS"),
        (flags::MAP_TAG, "MAP_TAG"),
        (flags::BIG_CREATION, "BIG_CREATION"),
        (flags::HANDSHAKE_23, "HANDSHAKE_23"),
        (flags::UNLINK_ID, "UNLINK_ID"),
        (flags::V4_NC, "V4_NC"),
        (flags::SPAWN, "SPAWN"),
        (flags::ALIAS, "ALIAS"),
    ];
    let mut names: Vec<String> = Vec::new();
    let mut rest = bits;
    for (bit, name) in NAMES {
        if rest & bit != 0 {
            names.push((*name).to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names.join(", ")
}

/// OTP 25 lets `DFLAG_MANDATORY_25_DIGEST` (`flags::MANDATORY_25_DIGEST` here) stand for the whole OTP 25
/// mandatory set (and OTP 27 relies on it), so it must be expanded before any
/// check.
fn expand_flags(f: u64) -> u64 {
    if f & flags::MANDATORY_25_DIGEST != 0 {
        f | flags::MANDATORY_OTP25
    } else {
        f
    }
}

/// `name@host`, both parts non-empty, one `@`, at most 255 bytes, UTF-8.
fn parse_node_name(bytes: &[u8]) -> Result<String, HandshakeError> {
    let name = std::str::from_utf8(bytes)
        .map_err(|_| HandshakeError::NameInvalid(format!("not UTF-8: {bytes:?}")))?;
    check_node_name(name)?;
    Ok(name.to_string())
}

fn check_node_name(name: &str) -> Result<(), HandshakeError> {
    if name.len() > MAX_NAME_LEN {
        return Err(HandshakeError::NameInvalid(format!(
            "{} bytes long, at most {MAX_NAME_LEN} allowed",
            name.len()
        )));
    }
    let mut parts = name.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(alive), Some(host), None) if !alive.is_empty() && !host.is_empty() => Ok(()),
        _ => Err(HandshakeError::NameInvalid(format!(
            "{name:?} is not of the form name@host"
        ))),
    }
}

/// Big-endian reads over a message body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], HandshakeError> {
        if self.buf.len() < n {
            return Err(HandshakeError::Malformed(format!(
                "{} truncated: needed {n} more bytes, {} left",
                self.what,
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, HandshakeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, HandshakeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, HandshakeError> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Ok(hi << 32 | lo)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// A peer the server has heard from but not yet accepted.
#[derive(Debug, Clone)]
struct Pending {
    name: String,
    flags: u64,
    creation: Option<u32>,
    /// It sent the new `'N'` name.
    new_name: bool,
    /// It will send (or sent) the `'c'` complement, which makes it version 6.
    complement: bool,
}

impl Pending {
    fn into_peer(self) -> PeerInfo {
        let version = if self.new_name || self.complement {
            6
        } else {
            5
        };
        PeerInfo {
            name: self.name,
            flags: self.flags,
            creation: self.creation.unwrap_or(0),
            version,
        }
    }
}

#[derive(Debug)]
enum State {
    /// Client: our name is sent, the status comes next.
    ClientAwaitStatus,
    /// Client: waiting for the server's challenge.
    ClientAwaitChallenge,
    /// Client: our reply is sent, waiting for the server's proof.
    ClientAwaitAck(PeerInfo),
    /// Server: waiting for the client's name.
    ServerAwaitName,
    /// Server: the owner has to call `set_status`.
    ServerAwaitStatus(Pending),
    /// Server: we said `alive`, the client answers `true`/`false`.
    ServerAwaitAliveReply(Pending),
    /// Server: an old-name client answered by a new challenge sends `'c'`.
    ServerAwaitComplement(Pending),
    /// Server: waiting for the client's challenge reply.
    ServerAwaitReply(Pending),
    /// Done; the socket now carries distribution frames.
    Completed,
    /// Failed or refused; nothing more happens. The error, if not reported yet.
    Closed(Option<HandshakeError>),
}

/// One side of one distribution handshake. See the module docs.
#[derive(Debug)]
pub struct Handshake {
    cfg: HandshakeConfig,
    /// Our challenge: the peer must prove its cookie against it.
    challenge: u32,
    /// Flags the peer must have (after expansion).
    required: u64,
    /// Client: we sent the old `'n'` name.
    sent_old_name: bool,
    /// Client: what to answer when the server says `alive` (it still has a
    /// connection from a node of our name). True only when we have no live
    /// connection to it ourselves, i.e. ours is the newer incarnation.
    alive_answer: bool,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<HandshakeEvent>,
    /// Bytes in each message's length prefix: 2 on TCP, 4 on TLS.
    prefix: usize,
}

impl Handshake {
    /// Client side; `challenge` is our random challenge (passed in: no RNG inside, deterministic in tests).
    /// `peer_version` = highest version the peer's EPMD entry reports: 6 -> send_name 'N' (HANDSHAKE_23), 5 -> old 'n' send_name.
    ///
    /// Versions above 6 are treated as 6 (we speak no newer one); below 5, or an
    /// invalid own name, make the first `receive` fail and nothing is sent.
    pub fn client(cfg: HandshakeConfig, challenge: u32, peer_version: u16) -> Self {
        let mut hs = Handshake::new(cfg, challenge, State::ClientAwaitStatus);
        if let Err(e) = check_node_name(&hs.cfg.name) {
            hs.state = State::Closed(Some(e));
            return hs;
        }
        match peer_version {
            0..=4 => hs.state = State::Closed(Some(HandshakeError::UnsupportedVersion)),
            5 => {
                hs.sent_old_name = true;
                let mut m = vec![b'n'];
                m.extend_from_slice(&OLD_VERSION.to_be_bytes());
                // The old message has room for the low flag word only; the
                // high word travels in the complement if the server allows it.
                m.extend_from_slice(&(hs.cfg.flags as u32).to_be_bytes());
                m.extend_from_slice(hs.cfg.name.as_bytes());
                hs.send(&m);
            }
            _ => {
                let mut m = vec![b'N'];
                m.extend_from_slice(&hs.cfg.flags.to_be_bytes());
                m.extend_from_slice(&hs.cfg.creation.to_be_bytes());
                m.extend_from_slice(&(hs.cfg.name.len() as u16).to_be_bytes());
                m.extend_from_slice(hs.cfg.name.as_bytes());
                hs.send(&m);
            }
        }
        hs
    }

    /// Server side: `challenge` is our random challenge for the connecting peer.
    pub fn server(cfg: HandshakeConfig, challenge: u32) -> Self {
        let mut hs = Handshake::new(cfg, challenge, State::ServerAwaitName);
        if let Err(e) = check_node_name(&hs.cfg.name) {
            hs.state = State::Closed(Some(e));
        }
        hs
    }

    fn new(cfg: HandshakeConfig, challenge: u32, state: State) -> Self {
        Handshake {
            cfg,
            challenge,
            required: flags::MANDATORY_OTP25,
            sent_old_name: false,
            alive_answer: true,
            state,
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            prefix: 2,
        }
    }

    /// Handshake messages with 4-byte length prefixes, as OTP's TLS
    /// distribution (`inet_tls_dist`) sends them: its TLS socket is in
    /// `{packet, 4}` from the start, where TCP's is in `{packet, 2}` until
    /// the handshake is done. Messages stay under 64 KiB either way.
    pub fn with_four_byte_lengths(mut self) -> Self {
        if self.prefix != 4 {
            // A client's first message is already queued.
            let queued = std::mem::take(&mut self.output);
            self.prefix = 4;
            let mut at = 0;
            while at + 2 <= queued.len() {
                let len = u16::from_be_bytes([queued[at], queued[at + 1]]) as usize;
                let end = (at + 2 + len).min(queued.len());
                self.send(&queued[at + 2..end]);
                at = end;
            }
        }
        self
    }

    /// Replace the flags the peer must have (default: [`flags::MANDATORY_OTP25`]).
    /// Only needed to talk to pre-OTP-23 nodes, which lack `HANDSHAKE_23`.
    pub fn with_required_flags(mut self, required: u64) -> Self {
        self.required = required;
        self
    }

    /// Whether [`HandshakeEvent::Completed`] has been produced.
    pub fn is_completed(&self) -> bool {
        matches!(self.state, State::Completed)
    }

    /// Bytes read from the socket (any split: 1 byte at a time must work).
    pub fn receive(&mut self, data: &[u8]) -> Result<(), HandshakeError> {
        match &mut self.state {
            State::Closed(err) => {
                return Err(err.take().unwrap_or_else(|| {
                    HandshakeError::UnexpectedMessage("the handshake has already failed".into())
                }))
            }
            State::Completed => {
                return Err(HandshakeError::UnexpectedMessage(
                    "the handshake is complete; later bytes are distribution frames".into(),
                ))
            }
            _ => {}
        }
        self.input.extend_from_slice(data);
        self.process().inspect_err(|_| self.close())
    }

    /// Bytes to write now (possibly empty). Called after construction, after receive, after set_status.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.events.pop_front()
    }

    /// Server side: answer a [`HandshakeEvent::PeerNamed`]. Ignored (with a
    /// warning) at any other time, since a status is only meaningful there.
    /// Client side: whether to answer `true` to a server's `alive` status
    /// (default true). The owner sets it from its connection table before
    /// feeding bytes, so a redundant simultaneous attempt backs off.
    pub fn set_alive_answer(&mut self, answer: bool) {
        self.alive_answer = answer;
    }

    pub fn set_status(&mut self, status: ServerStatus) {
        let pending = match std::mem::replace(&mut self.state, State::Completed) {
            State::ServerAwaitStatus(p) => p,
            other => {
                tracing::warn!(?status, state = ?other, "set_status outside of the status step; ignored");
                self.state = other;
                return;
            }
        };
        tracing::debug!(peer = %pending.name, status = status.as_str(), "handshake status");
        self.send_status(status.as_str());
        match status {
            ServerStatus::Ok | ServerStatus::OkSimultaneous => self.send_challenge(pending),
            ServerStatus::Alive => self.state = State::ServerAwaitAliveReply(pending),
            ServerStatus::Nok | ServerStatus::NotAllowed => {
                // We said no; the peer hangs up, and so should the owner.
                self.state = State::Closed(None);
                self.input.clear();
            }
        }
        // A well-behaved client sends nothing before our status, but if bytes
        // are already buffered, handle them now; an error surfaces at the next
        // `receive` since this call cannot return one.
        if !self.input.is_empty() && !matches!(self.state, State::Closed(_)) {
            if let Err(e) = self.process() {
                self.input.clear();
                self.state = State::Closed(Some(e));
            }
        }
    }

    /// Explain the peer closing the socket at this point of the handshake, so
    /// the owner can report something better than "EOF".
    ///
    /// A real node that rejects our digest closes without a word, so a close
    /// while we wait for the challenge ack is reported as a cookie mismatch.
    pub fn connection_closed(&mut self) -> HandshakeError {
        let err = match &mut self.state {
            State::Closed(e) => e.take().unwrap_or_else(|| {
                HandshakeError::ConnectionClosed("after the handshake had already failed".into())
            }),
            State::Completed => {
                HandshakeError::ConnectionClosed("after the handshake completed".into())
            }
            State::ClientAwaitAck(peer) => HandshakeError::CookieMismatch {
                peer: peer.name.clone(),
                detail: "the peer closed the connection instead of acknowledging our challenge reply, i.e. it rejected our digest",
            },
            State::ClientAwaitStatus if self.sent_old_name => HandshakeError::ConnectionClosed(
                "the peer hung up on our old-style (protocol 5) 'n' name; OTP 25 and later only accept the 'N' name of protocol 6".into(),
            ),
            State::ClientAwaitStatus => HandshakeError::ConnectionClosed(
                "before sending a status: the peer rejected our name message".into(),
            ),
            State::ClientAwaitChallenge => {
                HandshakeError::ConnectionClosed("after the status, before the challenge".into())
            }
            State::ServerAwaitName => {
                HandshakeError::ConnectionClosed("before the peer sent its name".into())
            }
            State::ServerAwaitStatus(p)
            | State::ServerAwaitAliveReply(p)
            | State::ServerAwaitComplement(p) => HandshakeError::ConnectionClosed(format!(
                "{} hung up before answering our status/challenge",
                p.name
            )),
            State::ServerAwaitReply(p) => HandshakeError::ConnectionClosed(format!(
                "{} hung up instead of replying to our challenge (did it reject our flags or name?)",
                p.name
            )),
        };
        self.close();
        err
    }

    fn close(&mut self) {
        self.input.clear();
        if !matches!(self.state, State::Completed) {
            self.state = State::Closed(None);
        }
    }

    /// Queue one length-prefixed message. Our messages are far below 64 KiB:
    /// names are checked to be at most 255 bytes.
    fn send(&mut self, msg: &[u8]) {
        debug_assert!(msg.len() <= MAX_MESSAGE_LEN);
        if self.prefix == 4 {
            self.output
                .extend_from_slice(&(msg.len() as u32).to_be_bytes());
        } else {
            self.output
                .extend_from_slice(&(msg.len() as u16).to_be_bytes());
        }
        self.output.extend_from_slice(msg);
    }

    fn send_status(&mut self, status: &str) {
        let mut m = Vec::with_capacity(1 + status.len());
        m.push(b's');
        m.extend_from_slice(status.as_bytes());
        self.send(&m);
    }

    /// Pop one complete message from the input, if there is one.
    fn next_message(&mut self) -> Result<Option<Vec<u8>>, HandshakeError> {
        let p = self.prefix;
        if self.input.len() < p {
            return Ok(None);
        }
        // A TLS record (handshake type 22, version 3.x) where a plain peer's
        // name should be: said at once, instead of waiting for the 5 KiB its
        // first two bytes would announce until the handshake times out.
        if p == 2 && matches!(self.state, State::ServerAwaitName) && self.input[..2] == [0x16, 0x03]
        {
            return Err(HandshakeError::Malformed(
                "a TLS ClientHello: the peer runs distribution over TLS \
                 (-proto_dist inet_tls) and this node does not"
                    .into(),
            ));
        }
        let len = self.input[..p]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        if len == 0 {
            return Err(HandshakeError::Malformed("empty message".into()));
        }
        if len > MAX_MESSAGE_LEN {
            return Err(HandshakeError::Malformed(format!(
                "a {len}-byte handshake message"
            )));
        }
        if self.input.len() < p + len {
            return Ok(None);
        }
        let msg = self.input[p..p + len].to_vec();
        self.input.drain(..p + len);
        Ok(Some(msg))
    }

    fn process(&mut self) -> Result<(), HandshakeError> {
        loop {
            match self.state {
                State::Completed | State::Closed(_) | State::ServerAwaitStatus(_) => break,
                _ => {}
            }
            let Some(msg) = self.next_message()? else {
                break;
            };
            self.handle(&msg)?;
        }
        // Outside of the owner's turn at most one partial message is buffered,
        // so more than one full message's worth means the peer is flooding us.
        if !self.is_completed() && self.input.len() > self.prefix + MAX_MESSAGE_LEN {
            return Err(HandshakeError::UnexpectedMessage(
                "the peer keeps sending while it should wait for our answer".into(),
            ));
        }
        Ok(())
    }

    fn handle(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        // The state is taken out and every path puts the next one back.
        let state = std::mem::replace(&mut self.state, State::Closed(None));
        match state {
            State::ClientAwaitStatus => self.client_status(msg),
            State::ClientAwaitChallenge => self.client_challenge(msg),
            State::ClientAwaitAck(peer) => self.client_ack(msg, peer),
            State::ServerAwaitName => self.server_name(msg),
            State::ServerAwaitAliveReply(p) => self.server_alive_reply(msg, p),
            State::ServerAwaitComplement(p) => self.server_complement(msg, p),
            State::ServerAwaitReply(p) => self.server_reply(msg, p),
            State::ServerAwaitStatus(_) | State::Completed | State::Closed(_) => {
                Err(HandshakeError::UnexpectedMessage(
                    "a message arrived after the handshake ended".into(),
                ))
            }
        }
    }

    fn check_flags(&self, peer_flags: u64) -> Result<(), HandshakeError> {
        let missing = self.required & !peer_flags;
        if missing == 0 {
            Ok(())
        } else {
            Err(HandshakeError::MissingMandatoryFlags { missing })
        }
    }

    // ---- client side ----

    fn client_status(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        let Some((&b's', status)) = msg.split_first() else {
            return Err(unexpected("a status ('s')", msg));
        };
        match status {
            b"ok" | b"ok_simultaneous" => {}
            // The server still has a connection from "us". If we have none,
            // that one belongs to an earlier incarnation: tell it to drop it.
            // If we do (a simultaneous connect already completed), this
            // attempt is the redundant one and gives up.
            b"alive" if self.alive_answer => self.send_status("true"),
            b"alive" => {
                self.send_status("false");
                return Err(HandshakeError::Refused("alive".into()));
            }
            b"nok" | b"not_allowed" => {
                return Err(HandshakeError::Refused(
                    String::from_utf8_lossy(status).into_owned(),
                ))
            }
            _ => {
                return Err(HandshakeError::UnexpectedMessage(format!(
                    "unknown status {:?}",
                    String::from_utf8_lossy(status)
                )))
            }
        }
        self.state = State::ClientAwaitChallenge;
        Ok(())
    }

    fn client_challenge(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        let (peer, peer_challenge) = match msg.first() {
            Some(b'N') => {
                let mut r = Reader::new(&msg[1..], "challenge 'N'");
                let f = r.u64()?;
                let challenge = r.u32()?;
                let creation = r.u32()?;
                let len = r.u16()? as usize;
                // Bytes after the name are ignored, as OTP does, so the
                // message can grow in later releases.
                let name = parse_node_name(r.bytes(len)?)?;
                let peer = PeerInfo {
                    name,
                    flags: expand_flags(f),
                    creation,
                    version: 6,
                };
                (peer, challenge)
            }
            Some(b'n') if self.sent_old_name => {
                let mut r = Reader::new(&msg[1..], "challenge 'n'");
                let version = r.u16()?;
                if version < OLD_VERSION {
                    return Err(HandshakeError::UnsupportedVersion);
                }
                let f = r.u32()? as u64;
                let challenge = r.u32()?;
                let name = parse_node_name(r.rest())?;
                let peer = PeerInfo {
                    name,
                    flags: expand_flags(f),
                    creation: 0,
                    version: 5,
                };
                (peer, challenge)
            }
            _ => return Err(unexpected("a challenge ('N')", msg)),
        };
        self.check_flags(peer.flags)?;
        tracing::debug!(peer = %peer.name, flags = format_args!("{:#x}", peer.flags), "handshake challenge");
        if self.sent_old_name && peer.version == 6 {
            // Our 'n' carried only the low flag word and no creation.
            let mut m = vec![b'c'];
            m.extend_from_slice(&((self.cfg.flags >> 32) as u32).to_be_bytes());
            m.extend_from_slice(&self.cfg.creation.to_be_bytes());
            self.send(&m);
        }
        let mut m = vec![b'r'];
        m.extend_from_slice(&self.challenge.to_be_bytes());
        m.extend_from_slice(&digest(peer_challenge, &self.cfg.cookie));
        self.send(&m);
        self.state = State::ClientAwaitAck(peer);
        Ok(())
    }

    fn client_ack(&mut self, msg: &[u8], peer: PeerInfo) -> Result<(), HandshakeError> {
        let Some((&b'a', sum)) = msg.split_first() else {
            return Err(unexpected("a challenge ack ('a')", msg));
        };
        if sum.len() != 16 {
            return Err(HandshakeError::Malformed(format!(
                "challenge ack digest is {} bytes, not 16",
                sum.len()
            )));
        }
        if !digest_eq(&digest(self.challenge, &self.cfg.cookie), sum) {
            return Err(HandshakeError::CookieMismatch {
                peer: peer.name,
                detail: "its challenge ack does not match our cookie",
            });
        }
        self.complete(peer);
        Ok(())
    }

    // ---- server side ----

    fn server_name(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        let pending = match msg.first() {
            Some(b'N') => {
                let mut r = Reader::new(&msg[1..], "send_name 'N'");
                let f = r.u64()?;
                let creation = r.u32()?;
                let len = r.u16()? as usize;
                let name_bytes = r.bytes(len)?;
                Pending {
                    name: self.peer_name(name_bytes, f)?,
                    flags: expand_flags(f),
                    creation: Some(creation),
                    new_name: true,
                    complement: false,
                }
            }
            Some(b'n') => {
                let mut r = Reader::new(&msg[1..], "send_name 'n'");
                let version = r.u16()?;
                if version < OLD_VERSION {
                    return Err(HandshakeError::UnsupportedVersion);
                }
                let f = r.u32()? as u64;
                let name_bytes = r.rest();
                Pending {
                    name: self.peer_name(name_bytes, f)?,
                    flags: expand_flags(f),
                    creation: None,
                    new_name: false,
                    complement: false,
                }
            }
            _ => return Err(unexpected("a name ('N')", msg)),
        };
        if let Err(e) = self.check_flags(pending.flags) {
            // What OTP answers, so the peer can log a reason.
            self.send_status(ServerStatus::NotAllowed.as_str());
            return Err(e);
        }
        tracing::debug!(peer = %pending.name, flags = format_args!("{:#x}", pending.flags), "handshake name");
        self.events.push_back(HandshakeEvent::PeerNamed {
            name: pending.name.clone(),
            flags: pending.flags,
            creation: pending.creation,
        });
        self.state = State::ServerAwaitStatus(pending);
        Ok(())
    }

    fn peer_name(&self, bytes: &[u8], f: u64) -> Result<String, HandshakeError> {
        if f & flags::NAME_ME != 0 {
            // The peer wants us to invent its name (a dynamic node name);
            // we do not hand out names.
            return Err(HandshakeError::NameInvalid(format!(
                "{:?} asks for a dynamic name (NAME_ME), which is not supported",
                String::from_utf8_lossy(bytes)
            )));
        }
        parse_node_name(bytes)
    }

    fn send_challenge(&mut self, mut pending: Pending) {
        let ours_23 = self.cfg.flags & flags::HANDSHAKE_23 != 0;
        let theirs_23 = pending.flags & flags::HANDSHAKE_23 != 0;
        if pending.new_name || (ours_23 && theirs_23) {
            let mut m = vec![b'N'];
            m.extend_from_slice(&self.cfg.flags.to_be_bytes());
            m.extend_from_slice(&self.challenge.to_be_bytes());
            m.extend_from_slice(&self.cfg.creation.to_be_bytes());
            m.extend_from_slice(&(self.cfg.name.len() as u16).to_be_bytes());
            m.extend_from_slice(self.cfg.name.as_bytes());
            self.send(&m);
            if pending.new_name {
                self.state = State::ServerAwaitReply(pending);
            } else {
                // An OTP 23/24 node that dialled with 'n' tells us its high
                // flag word and creation in a complement.
                pending.complement = true;
                self.state = State::ServerAwaitComplement(pending);
            }
        } else {
            let mut m = vec![b'n'];
            m.extend_from_slice(&OLD_VERSION.to_be_bytes());
            m.extend_from_slice(&(self.cfg.flags as u32).to_be_bytes());
            m.extend_from_slice(&self.challenge.to_be_bytes());
            m.extend_from_slice(self.cfg.name.as_bytes());
            self.send(&m);
            self.state = State::ServerAwaitReply(pending);
        }
    }

    fn server_alive_reply(&mut self, msg: &[u8], pending: Pending) -> Result<(), HandshakeError> {
        match msg {
            b"strue" => {
                self.send_challenge(pending);
                Ok(())
            }
            b"sfalse" => Err(HandshakeError::Refused(
                "alive: the peer answered false and gives up".into(),
            )),
            _ => Err(unexpected("a status reply ('strue'/'sfalse')", msg)),
        }
    }

    fn server_complement(
        &mut self,
        msg: &[u8],
        mut pending: Pending,
    ) -> Result<(), HandshakeError> {
        let Some((&b'c', body)) = msg.split_first() else {
            return Err(unexpected("a complement ('c')", msg));
        };
        let mut r = Reader::new(body, "complement 'c'");
        let high = r.u32()? as u64;
        let creation = r.u32()?;
        pending.flags = expand_flags(pending.flags | high << 32);
        pending.creation = Some(creation);
        self.check_flags(pending.flags)?;
        self.state = State::ServerAwaitReply(pending);
        Ok(())
    }

    fn server_reply(&mut self, msg: &[u8], pending: Pending) -> Result<(), HandshakeError> {
        let Some((&b'r', body)) = msg.split_first() else {
            return Err(unexpected("a challenge reply ('r')", msg));
        };
        if body.len() != 4 + 16 {
            return Err(HandshakeError::Malformed(format!(
                "challenge reply is {} bytes, not 21",
                msg.len()
            )));
        }
        let peer_challenge = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if !digest_eq(&digest(self.challenge, &self.cfg.cookie), &body[4..]) {
            // No ack: the peer learns of the mismatch by the closed socket,
            // exactly like with a real node.
            return Err(HandshakeError::CookieMismatch {
                peer: pending.name,
                detail: "its challenge reply does not match our cookie",
            });
        }
        let mut m = vec![b'a'];
        m.extend_from_slice(&digest(peer_challenge, &self.cfg.cookie));
        self.send(&m);
        self.complete(pending.into_peer());
        Ok(())
    }

    fn complete(&mut self, peer: PeerInfo) {
        tracing::debug!(peer = %peer.name, version = peer.version, "handshake completed");
        let leftover = std::mem::take(&mut self.input);
        self.events
            .push_back(HandshakeEvent::Completed { peer, leftover });
        self.state = State::Completed;
    }
}

fn unexpected(expected: &str, msg: &[u8]) -> HandshakeError {
    let tag = msg.first().map_or("nothing".to_string(), |&t| {
        if t.is_ascii_graphic() {
            format!("'{}'", t as char)
        } else {
            format!("tag {t}")
        }
    });
    HandshakeError::UnexpectedMessage(format!(
        "expected {expected}, got {tag} ({} bytes)",
        msg.len()
    ))
}

#[cfg(test)]
mod tests;
