//! Chaos harness: nodes in their own Linux network namespaces.
//!
//! A [`Net`] is one bridge namespace (`<prefix>br`, with a bridge `br0`) and
//! one namespace per node (`<prefix>N`), each joined to the bridge by a veth
//! pair (`vN` in the bridge namespace, `eth0` in the node's). Addresses are
//! 10.213.0.N/24, made inside the node namespaces only: nothing is added to
//! the test's own namespace, so traffic can only go over the links made here
//! and each namespace's loopback. Each namespace runs its own EPMD on 4369.
//!
//! Faults: [`Net::partition`] sets the node side of the chosen nodes' links
//! down (a cable pulled: no RST, the peers notice by `net_ticktime`),
//! [`Net::heal`] sets them up; [`Net::slow`] shapes one node's link (netem
//! delay where the kernel has `sch_netem`, else a token bucket: a slow
//! link rather than a long one). kill -9 and restart are on the processes
//! ([`NsChild`]) and on [`NsRuntime`] (an in-process node's runtime, shut
//! down at once: every socket closes, like a crashed host's RST).
//!
//! A Rust node can live in a namespace in this very process: [`NsRuntime`]
//! is a tokio runtime whose threads entered the namespace before they
//! started, so every socket its tasks open (listener, EPMD, connects)
//! belongs to that namespace. Everything a node does must then run on its
//! runtime ([`NsRuntime::run`]).
//!
//! Cleanup: dropping the `Net` kills (by pid) every process it started and
//! any other process left in its namespaces, then deletes the namespaces;
//! that runs on a panic too. A run that was itself killed leaves names with
//! its pid in the prefix: the next `Net` deletes namespaces whose owner pid
//! is no longer alive ([`cleanup_leftovers`]).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// What every namespace name of a chaos run starts with.
pub const NS_PREFIX: &str = "bpchaos";

/// The EPMD port in every namespace (each has its own port space).
pub const EPMD_PORT: u16 = 4369;

/// The one line a test prints when it cannot run here.
pub fn skip_line(test: &str) -> String {
    format!("SKIPPED {test}: needs root and network namespaces")
}

/// True when this process may make network namespaces (root, `ip` with
/// netns support, a kernel that allows it). Probed once per test binary.
pub fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return false;
        }
        let probe = format!("{NS_PREFIX}{}_probe", std::process::id());
        let made = ip(&["netns", "add", &probe]).is_ok();
        let _ = ip(&["netns", "del", &probe]);
        made
    })
}

/// [`available`], or the skip line printed and `false`.
pub fn available_or_skip(test: &str) -> bool {
    let ok = available();
    if !ok {
        println!("{}", skip_line(test));
    }
    ok
}

/// Runs `ip ARGS`; the error says what failed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(prog: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{prog} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The pids of the processes in namespace `ns`.
fn ns_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill9(pid: i32) {
    // SAFETY: kill has no memory preconditions; a stale pid is an ESRCH.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes the namespaces of chaos runs whose process is gone (a run killed
/// before its `Drop` could run), killing what is left inside them first.
pub fn cleanup_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        // bpchaos<PID>x<N>_<node>
        let Some(rest) = ns.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let owner: Option<u32> = rest.split('x').next().and_then(|p| p.parse().ok());
        if matches!(owner, Some(pid) if !pid_alive(pid)) {
            for pid in ns_pids(ns) {
                kill9(pid);
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A set of namespaces joined through one bridge; see the module doc.
pub struct Net {
    prefix: String,
    nodes: usize,
    /// Processes started in the namespaces, killed by pid on drop.
    children: Vec<std::sync::Weak<std::sync::Mutex<Option<Child>>>>,
}

impl Net {
    /// A bridge and `nodes` namespaces, links up, loopback up, addresses set.
    pub fn new(nodes: usize) -> Result<Net, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        cleanup_leftovers();
        let prefix = format!(
            "{NS_PREFIX}{}x{}_",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let net = Net {
            prefix,
            nodes,
            children: Vec::new(),
        };
        let br = net.bridge_ns();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..nodes {
            let ns = net.ns(i);
            let veth = format!("v{i}");
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // Made in the bridge namespace, its peer moved straight into
            // the node's: neither end ever exists in ours.
            ip(&[
                "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &veth, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    pub fn len(&self) -> usize {
        self.nodes
    }

    pub fn bridge_ns(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }

    /// Node `i`'s address (on its `eth0`).
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 0, i as u8 + 1)
    }

    /// A long node name on node `i`'s address.
    pub fn node_name(&self, alive: &str, i: usize) -> String {
        format!("{alive}@{}", self.addr(i))
    }

    /// Cuts every node in `side` off from every node not in it (their
    /// links go down; the others stay connected through the bridge).
    pub fn partition(&self, side: &[usize]) {
        for &i in side {
            self.link(i, false);
        }
    }

    /// Every link up again.
    pub fn heal(&self) {
        for i in 0..self.nodes {
            self.link(i, true);
        }
    }

    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &format!("v{i}"),
            state,
        ])
        .unwrap_or_else(|e| panic!("link {i} {state}: {e}"));
    }

    /// Slows node `i`'s link: `delay` each way with netem where the kernel
    /// has it, else a 1 Mbit/s token bucket. Returns which was applied.
    pub fn slow(&self, i: usize, delay: Duration) -> &'static str {
        let ms = format!("{}ms", delay.as_millis());
        let ns = self.ns(i);
        if run(
            "tc",
            &[
                "-n", &ns, "qdisc", "add", "dev", "eth0", "root", "netem", "delay", &ms,
            ],
        )
        .is_ok()
        {
            return "netem";
        }
        run(
            "tc",
            &[
                "-n", &ns, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst",
                "32kbit", "latency", &ms,
            ],
        )
        .unwrap_or_else(|e| panic!("neither netem nor tbf on {ns}: {e}"));
        "tbf"
    }

    /// Undoes [`Net::slow`].
    pub fn unslow(&self, i: usize) {
        let _ = run(
            "tc",
            &["-n", &self.ns(i), "qdisc", "del", "dev", "eth0", "root"],
        );
    }

    /// Starts `cmd` inside node `i`'s namespace (the child enters it between
    /// fork and exec, so its pid is the program's own).
    pub fn spawn(&mut self, i: usize, mut cmd: Command) -> NsChild {
        let path = format!("/run/netns/{}", self.ns(i));
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        // SAFETY: only async-signal-safe calls (setns) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} in {path}: {e}", cmd.get_program()));
        drop(file);
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Some(child)));
        self.children.push(std::sync::Arc::downgrade(&shared));
        NsChild(shared)
    }

    /// An embedded EPMD (`beam-peer epmd`) as its own process in node `i`'s
    /// namespace, on [`EPMD_PORT`]: it outlives the nodes killed there, as a
    /// host's epmd does.
    pub fn start_epmd(&mut self, i: usize) -> NsChild {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_beam-peer"));
        cmd.args(["epmd", "--port", &EPMD_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let epmd = self.spawn(i, cmd);
        // Ready once it answers NAMES on the namespace's loopback.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let ns = self.ns(i);
        while !self.in_ns(&ns, || {
            std::net::TcpStream::connect(("127.0.0.1", EPMD_PORT)).is_ok()
        }) {
            assert!(std::time::Instant::now() < deadline, "no EPMD in {ns}");
            std::thread::sleep(Duration::from_millis(20));
        }
        epmd
    }

    /// Runs `f` on a thread inside namespace `ns`.
    fn in_ns<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(ns).unwrap_or_else(|e| panic!("{e}"));
                f()
            })
            .join()
            .expect("namespace thread")
        })
    }

    /// A tokio runtime whose threads live in node `i`'s namespace.
    pub fn runtime(&self, i: usize) -> NsRuntime {
        NsRuntime::new(&self.ns(i))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &self.children {
            if let Some(c) = c.upgrade() {
                NsChild(c).kill9();
            }
        }
        let mut all: Vec<String> = (0..self.nodes).map(|i| self.ns(i)).collect();
        all.push(self.bridge_ns());
        for ns in &all {
            for pid in ns_pids(ns) {
                if pid as u32 != std::process::id() {
                    kill9(pid);
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Moves the calling thread into namespace `ns`.
fn enter(ns: &str) -> Result<(), String> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: setns on a file descriptor we own; affects this thread only.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    if r != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A process started in a namespace; killed (by pid, SIGKILL) when the last
/// handle drops or the [`Net`] does.
#[derive(Clone)]
pub struct NsChild(std::sync::Arc<std::sync::Mutex<Option<Child>>>);

impl NsChild {
    pub fn pid(&self) -> Option<u32> {
        self.0.lock().ok()?.as_ref().map(|c| c.id())
    }

    /// kill -9, and reaped.
    pub fn kill9(&self) {
        if let Some(mut c) = self.0.lock().ok().and_then(|mut c| c.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The child's stdout, once (when it was piped).
    pub fn take_stdout(&self) -> Option<std::process::ChildStdout> {
        self.0.lock().ok()?.as_mut()?.stdout.take()
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if std::sync::Arc::strong_count(&self.0) == 1 {
            self.kill9();
        }
    }
}

/// A tokio runtime (2 workers) whose threads entered a namespace before
/// they started: see the module doc. Shut down at once when dropped or
/// [`killed`](NsRuntime::kill).
pub struct NsRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl NsRuntime {
    fn new(ns: &str) -> NsRuntime {
        let ns = ns.to_string();
        // Built on a thread in the namespace: its workers (and blocking
        // threads, spawned from those) inherit it.
        let rt = std::thread::spawn(move || {
            enter(&ns)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .join()
        .expect("runtime thread")
        .unwrap_or_else(|e| panic!("runtime in namespace: {e}"));
        NsRuntime { rt: Some(rt) }
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.as_ref().expect("runtime alive").handle().clone()
    }

    /// Runs `f` on this runtime and waits for it (from any runtime).
    pub async fn run<F>(&self, f: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle()
            .spawn(f)
            .await
            .expect("task on namespace runtime")
    }

    /// The in-process equivalent of kill -9: every task stops where it
    /// is, every socket closes.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address a Rust node in a [`Net`] listens on (all of its namespace's).
pub fn any_addr() -> IpAddr {
    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
}

/// Resident memory of process `pid` in KiB (VmRSS of /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A Rust node named `<unique alive>@<node i's address>` on `rt` (node
/// `i`'s runtime), found through the namespace's EPMD on [`EPMD_PORT`],
/// with `net_ticktime` short enough that a pulled link is noticed in
/// seconds.
pub async fn rust_node(
    net: &Net,
    rt: &NsRuntime,
    alive: &str,
    i: usize,
    net_ticktime: Duration,
) -> beam_peer::Node {
    let config = beam_peer::NodeConfig::new(net.node_name(&super::unique(alive), i))
        .cookie(super::COOKIE)
        .net_ticktime(net_ticktime)
        .discovery(beam_peer::Discovery::Epmd { port: EPMD_PORT });
    rt.run(async move { beam_peer::Node::start(config).await })
        .await
        .expect("node starts in its namespace")
}

/// Nodes 1.. (each on its runtime in `rts`) join node 0, one cluster.
pub async fn join_first(rts: &[NsRuntime], nodes: &[beam_peer::Node]) {
    for i in 1..nodes.len() {
        let (n, first) = (nodes[i].clone(), nodes[0].name().to_string());
        rts[i]
            .run(async move { n.join(&first).await })
            .await
            .expect("joins the first node");
    }
}

/// `node` (on `rt`) connects to `peer` again after a heal, as libcluster
/// would, retrying until `limit`; true once connected.
pub async fn reconnect(
    rt: &NsRuntime,
    node: &beam_peer::Node,
    peer: &str,
    limit: Duration,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (n, p) = (node.clone(), peer.to_string());
        if rt.run(async move { n.connect(&p).await }).await.is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A BEAM node (`erl` or `elixir`) in a namespace of a [`Net`], with that
/// namespace's EPMD, which it outlives only as a host's epmd outlives its
/// nodes: [`NsBeam::kill9`] kills the node alone, dropping the `NsBeam`
/// kills both (by pid).
pub struct NsBeam {
    pub name: String,
    pub node: NsChild,
    /// Kept for the node's lifetime: peers look the node up through it
    /// whenever they connect, not only the first time.
    epmd: NsChild,
}

impl NsBeam {
    /// kill -9 of the node; its EPMD stays.
    pub fn kill9(&self) {
        self.node.kill9();
    }
}

impl Net {
    /// Starts `cmd` (from [`super::erl_command`] or
    /// [`super::elixir_command`], a node named `name` that prints `ready`)
    /// in node `i`'s namespace, after an EPMD there ([`Net::start_epmd`]);
    /// returns once the node printed its ready line.
    pub fn start_beam(&mut self, i: usize, name: String, mut cmd: Command) -> NsBeam {
        let epmd = self.start_epmd(i);
        super::beam_versions();
        cmd.env("ERL_EPMD_PORT", EPMD_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let node = self.spawn(i, cmd);
        let stdout = node.take_stdout().expect("piped");
        assert!(
            super::await_ready(stdout, Duration::from_secs(30)),
            "{name} printed ready in {}",
            self.ns(i)
        );
        NsBeam { name, node, epmd }
    }

    /// An `erl` node `<alive>@<node i's address>` in namespace `i`, with
    /// `net_ticktime` (seconds).
    pub fn erl_node(&mut self, i: usize, alive: &str, net_ticktime: u32) -> NsBeam {
        let name = self.node_name(alive, i);
        let t = net_ticktime.to_string();
        let cmd = super::erl_command(&name, super::COOKIE, &["-kernel", "net_ticktime", &t]);
        self.start_beam(i, name, cmd)
    }

    /// An Elixir node with Horde and its dependencies (`ebins`, see
    /// [`super::horde_ebin`]) started, `<alive>@<node i's address>` in
    /// namespace `i`, with `net_ticktime` (seconds); drive it with
    /// [`super::eval_elixir`] from a node that reaches it.
    pub fn horde_node(
        &mut self,
        i: usize,
        alive: &str,
        net_ticktime: u32,
        ebins: &[std::path::PathBuf],
    ) -> NsBeam {
        let name = self.node_name(alive, i);
        let ticktime = format!("-kernel net_ticktime {net_ticktime}");
        let cmd = super::elixir_command(
            &name,
            super::COOKIE,
            &[&ticktime],
            ebins,
            &super::HORDE_APPS,
        );
        self.start_beam(i, name, cmd)
    }
}
