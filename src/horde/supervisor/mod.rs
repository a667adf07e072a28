//! `Horde.DynamicSupervisor` as a Rust member (issue 16), built bottom-up:
//!
//! - [`distribution`]: the three distribution strategies, bit-exact;
//! - [`codec`]: the CRDT keys and values (members, member info, processes).
//!
//! Everything here is sans-I/O: terms in, decisions out.

pub mod codec;
pub mod distribution;

pub use codec::{ChildSpec, Entry, Key, Member, MemberStatus, ProcessValue};
pub use distribution::{ChooseError, DistributionStrategy, HashRing, Placement};
