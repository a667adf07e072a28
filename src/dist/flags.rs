//! Distribution capability flags (the `DFLAG_*` bits of the handshake).
//!
//! Values from the Erlang distribution protocol documentation. We keep our own
//! `u64` constants so the handshake can be written without an I/O-bound crate.

pub const PUBLISHED: u64 = 0x01;
pub const ATOM_CACHE: u64 = 0x02;
pub const EXTENDED_REFERENCES: u64 = 0x04;
pub const DIST_MONITOR: u64 = 0x08;
pub const FUN_TAGS: u64 = 0x10;
pub const DIST_MONITOR_NAME: u64 = 0x20;
pub const HIDDEN_ATOM_CACHE: u64 = 0x40;
pub const NEW_FUN_TAGS: u64 = 0x80;
pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
pub const EXPORT_PTR_TAG: u64 = 0x200;
pub const BIT_BINARIES: u64 = 0x400;
pub const NEW_FLOATS: u64 = 0x800;
pub const UNICODE_IO: u64 = 0x1000;
pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
pub const SMALL_ATOM_TAGS: u64 = 0x4000;
pub const UTF8_ATOMS: u64 = 0x10000;
pub const MAP_TAG: u64 = 0x20000;
pub const BIG_CREATION: u64 = 0x40000;
pub const SEND_SENDER: u64 = 0x80000;
pub const BIG_SEQTRACE_LABELS: u64 = 0x100000;
pub const EXIT_PAYLOAD: u64 = 0x400000;
pub const FRAGMENTS: u64 = 0x800000;
pub const HANDSHAKE_23: u64 = 0x1000000;
pub const UNLINK_ID: u64 = 0x2000000;
pub const MANDATORY_25_DIGEST: u64 = 0x4000000;
pub const SPAWN: u64 = 1 << 32;
pub const NAME_ME: u64 = 1 << 33;
pub const V4_NC: u64 = 1 << 34;
pub const ALIAS: u64 = 1 << 35;

/// What OTP 25 refuses to connect without.
pub const MANDATORY_OTP25: u64 = EXTENDED_REFERENCES
    | FUN_TAGS
    | NEW_FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | NEW_FLOATS
    | UTF8_ATOMS
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23;

/// What OTP 26 and 27 add to the mandatory set.
pub const MANDATORY_OTP26: u64 = MANDATORY_OTP25 | V4_NC | UNLINK_ID;

/// Everything this implementation supports and offers. With
/// `DIST_HDR_ATOM_CACHE` both sides send each atom's text once per connection
/// and its cache slot after that, as between two BEAM nodes
/// (`dist::codec::atom_cache`). Not offered: the deprecated
/// `ATOM_CACHE`/`HIDDEN_ATOM_CACHE`.
pub const OFFERED: u64 = MANDATORY_OTP26
    | DIST_HDR_ATOM_CACHE
    | DIST_MONITOR
    | DIST_MONITOR_NAME
    | SMALL_ATOM_TAGS
    | UNICODE_IO
    | SEND_SENDER
    | BIG_SEQTRACE_LABELS
    | EXIT_PAYLOAD
    | FRAGMENTS
    | SPAWN
    | ALIAS;

/// The flags we offer, with `PUBLISHED` unless the node is hidden.
pub fn offered(hidden: bool) -> u64 {
    if hidden {
        OFFERED
    } else {
        OFFERED | PUBLISHED
    }
}
