//! The distribution control messages, one Rust value per operation of the
//! protocol (`erts/doc/src/erl_dist_protocol.xml`, "Protocol between
//! connected nodes"). This module owns only their shape; `codec::control`
//! turns them into bytes and back, `node` acts on them.
//!
//! Each operation is a struct named after the protocol's (`REG_SEND` is
//! [`RegSend`]) whose fields are the control tuple's elements and, for the
//! operations that carry one, the message or exit reason that follows it.

use crate::term::{Atom, FixInteger, List, Pid, Reference, Term};

/// A pid or a registered name: who a monitor targets, who a `MONITOR_P_EXIT`
/// comes from, or what a spawn reply carries.
#[derive(Debug, Clone, PartialEq)]
pub enum PidOrAtom {
    Pid(Pid),
    Atom(Atom),
}

impl From<PidOrAtom> for Term {
    fn from(v: PidOrAtom) -> Term {
        match v {
            PidOrAtom::Pid(p) => Term::Pid(p),
            PidOrAtom::Atom(a) => Term::Atom(a),
        }
    }
}

/// `{Module, Function, Arity}` of a `SPAWN_REQUEST`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mfa {
    pub module: Atom,
    pub function: Atom,
    pub arity: FixInteger,
}

impl From<Mfa> for Term {
    fn from(m: Mfa) -> Term {
        crate::term::tuple(vec![
            Term::Atom(m.module),
            Term::Atom(m.function),
            Term::FixInteger(m.arity),
        ])
    }
}

/// Declares each operation's struct, its [`Message`] variant and a
/// constructor taking the fields in the order listed.
macro_rules! control_messages {
    ($( $(#[$doc:meta])* $variant:ident / $ctor:ident { $($field:ident : $ty:ty),* } )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $variant { $(pub $field: $ty),* }
        )*

        /// One control message, or a tick (an empty frame).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Message {
            $( $variant($variant), )*
            Tick,
        }

        impl Message {
            $(
                pub fn $ctor($($field: $ty),*) -> Message {
                    Message::$variant($variant { $($field),* })
                }
            )*
        }
    };
}

control_messages! {
    /// `LINK` (1).
    Link / link { from_pid: Pid, to_pid: Pid }
    /// `SEND` (2).
    Send / send { to_pid: Pid, message: Term }
    /// `EXIT` (3).
    Exit / exit { from_pid: Pid, to_pid: Pid, reason: Term }
    /// `UNLINK` (4), replaced by `UNLINK_ID` since OTP 23.
    Unlink / unlink { from_pid: Pid, to_pid: Pid }
    /// `NODE_LINK` (5).
    NodeLink / node_link {}
    /// `REG_SEND` (6).
    RegSend / reg_send { from_pid: Pid, to_name: Atom, message: Term }
    /// `GROUP_LEADER` (7).
    GroupLeader / group_leader { from_pid: Pid, to_pid: Pid }
    /// `EXIT2` (8).
    Exit2 / exit2 { from_pid: Pid, to_pid: Pid, reason: Term }
    /// `SEND_TT` (12).
    SendTt / send_tt { to_pid: Pid, message: Term, trace_token: Term }
    /// `EXIT_TT` (13).
    ExitTt / exit_tt { from_pid: Pid, to_pid: Pid, reason: Term, trace_token: Term }
    /// `REG_SEND_TT` (16).
    RegSendTt / reg_send_tt { from_pid: Pid, to_name: Atom, message: Term, trace_token: Term }
    /// `EXIT2_TT` (18).
    Exit2Tt / exit2_tt { from_pid: Pid, to_pid: Pid, reason: Term, trace_token: Term }
    /// `MONITOR_P` (19).
    MonitorP / monitor_p { from_pid: Pid, to_proc: PidOrAtom, reference: Reference }
    /// `DEMONITOR_P` (20).
    DemonitorP / demonitor_p { from_pid: Pid, to_proc: PidOrAtom, reference: Reference }
    /// `MONITOR_P_EXIT` (21).
    MonitorPExit / monitor_p_exit {
        from_proc: PidOrAtom, to_pid: Pid, reference: Reference, reason: Term
    }
    /// `SEND_SENDER` (22).
    SendSender / send_sender { from_pid: Pid, to_pid: Pid, message: Term }
    /// `SEND_SENDER_TT` (23).
    SendSenderTt / send_sender_tt {
        from_pid: Pid, to_pid: Pid, message: Term, trace_token: Term
    }
    /// `PAYLOAD_EXIT` (24).
    PayloadExit / payload_exit { from_pid: Pid, to_pid: Pid, reason: Term }
    /// `PAYLOAD_EXIT_TT` (25).
    PayloadExitTt / payload_exit_tt {
        from_pid: Pid, to_pid: Pid, reason: Term, trace_token: Term
    }
    /// `PAYLOAD_EXIT2` (26).
    PayloadExit2 / payload_exit2 { from_pid: Pid, to_pid: Pid, reason: Term }
    /// `PAYLOAD_EXIT2_TT` (27).
    PayloadExit2Tt / payload_exit2_tt {
        from_pid: Pid, to_pid: Pid, reason: Term, trace_token: Term
    }
    /// `PAYLOAD_MONITOR_P_EXIT` (28).
    PayloadMonitorPExit / payload_monitor_p_exit {
        from_proc: PidOrAtom, to_pid: Pid, reference: Reference, reason: Term
    }
    /// `SPAWN_REQUEST` (29).
    SpawnRequest / spawn_request {
        req_id: Reference, from_pid: Pid, group_leader: Pid, mfa: Mfa, opt_list: List,
        arg_list: List
    }
    /// `SPAWN_REQUEST_TT` (30).
    SpawnRequestTt / spawn_request_tt {
        req_id: Reference, from_pid: Pid, group_leader: Pid, mfa: Mfa, opt_list: List,
        arg_list: List, trace_token: Term
    }
    /// `SPAWN_REPLY` (31).
    SpawnReply / spawn_reply {
        req_id: Reference, to_pid: Pid, flags: FixInteger, result: PidOrAtom
    }
    /// `SPAWN_REPLY_TT` (32).
    SpawnReplyTt / spawn_reply_tt {
        req_id: Reference, to_pid: Pid, flags: FixInteger, result: PidOrAtom, trace_token: Term
    }
    /// `UNLINK_ID` (35).
    UnlinkId / unlink_id { id: Term, from_pid: Pid, to_pid: Pid }
    /// `UNLINK_ID_ACK` (36).
    UnlinkIdAck / unlink_id_ack { id: Term, from_pid: Pid, to_pid: Pid }
    /// `ALIAS_SEND` (33).
    AliasSend / alias_send { from_pid: Pid, alias: Reference, message: Term }
    /// `ALIAS_SEND_TT` (34).
    AliasSendTt / alias_send_tt {
        from_pid: Pid, alias: Reference, message: Term, trace_token: Term
    }
}
