//! `Horde.DynamicSupervisor` as a Rust member (issue 16), built bottom-up:
//!
//! - [`distribution`]: the three distribution strategies, bit-exact;
//! - [`codec`]: the CRDT keys and values (members, member info, processes);
//! - [`state`]: `Horde.DynamicSupervisorImpl`'s decisions (placement,
//!   proxying, failover, relinquish, redistribution, quorum);
//! - [`children`]: `Horde.ProcessesSupervisor`'s decisions about local
//!   children (restart types, intensity, relinquish, disown).
//!
//! - [`runtime`]: the member as processes on a node ([`start`]);
//! - [`on_beam`]: children with no Rust worker, run on a BEAM node.
//!
//! Everything but [`runtime`] and [`on_beam`] is sans-I/O: terms in, decisions out.

pub mod children;
pub mod codec;
pub mod distribution;
pub mod on_beam;
pub mod runtime;
pub mod state;

pub use codec::{ChildSpec, Entry, Key, Member, MemberStatus, ProcessValue};
pub use distribution::{ChooseError, DistributionStrategy, HashRing, Placement};
pub use runtime::{
    child_state_key, start, ChildState, Members, StartError, Supervisor, SupervisorOptions, Worker,
};
pub use state::{Effect, Redistribution, Settings, SupervisorState, Ttl};
