//! What a Horde.DynamicSupervisor member keeps of the children it no
//! longer runs, between Rust members only (no BEAM needed: runs in CI).
//! Both nodes are in this test process, whose global allocator counts the
//! bytes it holds (tests/common/heap.rs): the figure is the program's own
//! heap, not RSS, so the allocator's caching does not blur it.
//!
//! * `members_keep_only_a_fingerprint_of_each_child_they_ended`:
//!   two members start and terminate 11,000 children one after the other
//!   (the chaos soak's pattern, without its faults). Past a warm-up of
//!   1,000, the heap held may grow by at most 128 bytes per child ended:
//!   the member that ended it remembers its id's 8-byte fingerprint
//!   (`ENDED_REMEMBERED` of them; with the set's and queue's spare
//!   capacity, 25-35 bytes a child measured) and nothing else stays.
//!   Before the fix a member kept every terminated child's pid mapping, as
//!   Horde does, and the same run grew by ~360 bytes per child (over the
//!   chaos soak's 30 minutes, megabytes). The specs use
//!   `shutdown: :brutal_kill`, so no child's shutdown timer is still
//!   pending when the heap is read.

mod common;

use std::time::Duration;

use beam_peer::horde::supervisor::{self, ChildSpec, Supervisor, SupervisorOptions};
use beam_peer::term::{self, Pid, Term};
use beam_peer::Node;

#[global_allocator]
static HEAP: common::heap::Counting = common::heap::Counting;

const S: &str = "Elixir.Memory.Sup";
const WORKER: &str = "Elixir.Memory.Worker";
const DEADLINE: Duration = Duration::from_secs(30);

fn spec(arg: i64) -> ChildSpec {
    common::supervisor::spec_with(WORKER, arg, [("shutdown", term::atom("brutal_kill"))])
}

/// Starts child `arg` through `sups[0]` and terminates it through the
/// member that runs it, for each arg.
async fn start_and_end(sups: &[Supervisor; 2], args: std::ops::Range<i64>) {
    for arg in args {
        let reply = sups[0]
            .start_child(spec(arg), DEADLINE)
            .await
            .expect("start_child answered");
        let Some([_, Term::Pid(pid)]) = term::as_tuple(&reply) else {
            panic!("start_child {arg}: {reply}");
        };
        let pid: Pid = pid.clone();
        let holder = match sups.iter().find(|s| s.pid().node == pid.node) {
            Some(s) => s,
            None => panic!("child {arg} runs on neither member: {pid}"),
        };
        let r = holder
            .terminate_child(&pid, DEADLINE)
            .await
            .expect("terminate_child answered");
        assert!(term::is_atom(&r, "ok"), "terminate_child {arg}: {r}");
    }
}

/// The heap held once both members count no child.
async fn settled_heap_kib(sups: &[Supervisor; 2]) -> u64 {
    common::poll_until("both members count no child", DEADLINE, || async {
        for s in sups {
            if common::supervisor::global_count(s).await != Some(0) {
                return false;
            }
        }
        true
    })
    .await;
    common::heap::live_kib()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_keep_only_a_fingerprint_of_each_child_they_ended() {
    const WARM_UP: i64 = 1_000;
    const MEASURED: i64 = 10_000;
    let port = common::free_port();
    let nodes = [
        common::rust_node("memory", port).await,
        common::rust_node("memory", port).await,
    ];
    nodes[1].join(nodes[0].name()).await.expect("joins");
    let member = |n: &Node| {
        supervisor::start(
            n,
            SupervisorOptions::new(S)
                .sync_interval(50)
                .worker(WORKER, |n: &Node, _| {
                    beam_peer::gen_server::start(n, common::supervisor::Pong, Default::default())
                        .map_err(|e| term::binary(e.to_string().into_bytes()))
                }),
        )
        .expect("the member starts")
    };
    let sups = [member(&nodes[0]), member(&nodes[1])];
    common::all_members_alive(&sups, 2, DEADLINE).await;
    start_and_end(&sups, 0..WARM_UP).await;
    let before = settled_heap_kib(&sups).await;
    start_and_end(&sups, WARM_UP..WARM_UP + MEASURED).await;
    let after = settled_heap_kib(&sups).await;
    let per_child = (after.saturating_sub(before) * 1024) as i64 / MEASURED;
    eprintln!("heap held: {before} KiB after {WARM_UP} children, {after} KiB after {MEASURED} more ({per_child} bytes per child)");
    assert!(
        per_child <= 128,
        "the members' heap grew by {per_child} bytes per ended child ({before} -> {after} KiB)"
    );
}
