//! Test support: real `erl` peers started and killed by pid, unique names and
//! ports, and a way to evaluate Erlang code on a peer through a gen_server call.
#![allow(dead_code)]

pub mod certs;
pub mod heap;
pub mod netns;
pub mod supervisor;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use beam_peer::term::{self, Term};
use beam_peer::{Dest, Node, NodeConfig, Process};

pub const COOKIE: &str = "beam_peer_test_cookie";

/// The BEAM's command-line tools (`erl`, `erlc`, `elixir`, `epmd`) are all
/// found through here: in the directory `BEAM_PEER_BEAM_BIN` names when it
/// is set (`scripts/matrix.sh` points it at wrappers that run another
/// release's tools, e.g. OTP 27 in a Debian trixie root), else on PATH.
pub fn beam_tool(tool: &str) -> Command {
    match std::env::var_os("BEAM_PEER_BEAM_BIN") {
        Some(dir) if !dir.is_empty() => Command::new(PathBuf::from(dir).join(tool)),
        _ => Command::new(tool),
    }
}

/// The releases the BEAM tools of [`beam_tool`] run.
#[derive(Debug, Clone)]
pub struct BeamVersions {
    /// `erlang:system_info(otp_release)`, e.g. `"25"`.
    pub otp: u32,
    /// `System.version()`, e.g. `"1.14.0"`; `None` without `elixir`.
    pub elixir: Option<String>,
    /// The form that Elixir's `MapSet.new/1` builds.
    pub mapset: Option<beam_peer::term::elixir::MapSetForm>,
}

/// Asked once per test binary, and printed once, so every test's output
/// says which releases it ran against. `None` without `erl`.
pub fn beam_versions() -> Option<&'static BeamVersions> {
    static VERSIONS: OnceLock<Option<BeamVersions>> = OnceLock::new();
    VERSIONS
        .get_or_init(|| {
            let otp = beam_tool("erl")
                .args([
                    "-noshell",
                    "-eval",
                    "io:format(\"~s\", [erlang:system_info(otp_release)]), halt().",
                ])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())?;
            let elixir = beam_tool("elixir")
                .args([
                    "-e",
                    "IO.write(\"#{System.version()} #{Map.has_key?(MapSet.new([]), :version)}\")",
                ])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            let (elixir, mapset) = match elixir.as_deref().and_then(|e| e.split_once(' ')) {
                Some((v, versioned)) => (
                    Some(v.to_string()),
                    Some(if versioned == "true" {
                        beam_peer::term::elixir::MapSetForm::Versioned
                    } else {
                        beam_peer::term::elixir::MapSetForm::Sets2
                    }),
                ),
                None => (None, None),
            };
            let v = BeamVersions {
                otp,
                elixir,
                mapset,
            };
            println!(
                "BEAM under test: OTP {}, Elixir {}",
                v.otp,
                v.elixir.as_deref().unwrap_or("absent")
            );
            Some(v)
        })
        .as_ref()
}

/// True when `erl` is found (see [`beam_tool`]). When it is not, a test prints one skip line and
/// returns, unless BEAM_PEER_REQUIRE_ERL=1 (set by scripts/test.sh) makes that a failure.
pub fn have_erl(test: &str) -> bool {
    let found = beam_tool("erl")
        .args(["-noshell", "-eval", "halt()."])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        beam_versions();
    } else {
        if std::env::var("BEAM_PEER_REQUIRE_ERL").as_deref() == Ok("1") {
            panic!("{test}: erl is required (BEAM_PEER_REQUIRE_ERL=1) but not found");
        }
        println!("SKIPPED {test}: erl not found on PATH (apt-get install erlang-nox)");
    }
    found
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The compiled test-peer modules (erlang/src/*.erl), built once per test binary.
pub fn ctl_ebin() -> PathBuf {
    static EBIN: OnceLock<PathBuf> = OnceLock::new();
    EBIN.get_or_init(|| {
        let out =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ebin_{}", std::process::id()));
        std::fs::create_dir_all(&out).expect("ebin dir");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("erlang/src/beam_peer_ctl.erl");
        let status = beam_tool("erlc")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .expect("erlc runs");
        assert!(status.success(), "erlc failed on {}", src.display());
        out
    })
    .clone()
}

/// The ebin directories of Horde and its dependencies, each to be passed to
/// the BEAM with `-pa`:
/// 1. `BEAM_PEER_HORDE_EBIN`, a colon-separated list, when set and not empty;
/// 2. else a built `erlang/` mix project (`cd erlang && mix deps.get && mix
///    compile`): every `erlang/_build/<env>/lib/<app>/ebin` of the first
///    `<env>` (in name order) that has `horde/ebin/horde.app`, except the
///    project's own app (the tests compile `erlang/src` themselves);
/// 3. else `None`.
pub fn horde_ebin() -> Option<Vec<PathBuf>> {
    if let Ok(list) = std::env::var("BEAM_PEER_HORDE_EBIN") {
        let dirs: Vec<PathBuf> = list
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        if !dirs.is_empty() {
            return Some(dirs);
        }
    }
    mix_ebins(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("erlang"))
}

/// The dependency ebins of a compiled mix project at `project` (see [`horde_ebin`]).
pub fn mix_ebins(project: &std::path::Path) -> Option<Vec<PathBuf>> {
    let mut envs: Vec<PathBuf> = std::fs::read_dir(project.join("_build"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    envs.sort();
    envs.into_iter().find_map(|env| {
        let lib = env.join("lib");
        if !lib.join("horde/ebin/horde.app").is_file() {
            return None;
        }
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|app| !app.ends_with(MIX_APP))
            .map(|app| app.join("ebin"))
            .filter(|ebin| ebin.is_dir())
            .collect();
        dirs.sort();
        Some(dirs)
    })
}

/// The app name of `erlang/mix.exs`.
pub const MIX_APP: &str = "beam_peer_peers";

/// Horde's ebins, or one skip line and `None`. A missing Horde is never a
/// failure (CI has `erl` but no Horde, even with BEAM_PEER_REQUIRE_ERL=1).
pub fn horde_or_skip(test: &str) -> Option<Vec<PathBuf>> {
    let found = horde_ebin();
    if found.is_none() {
        println!(
            "SKIPPED {test}: Horde modules not found (set BEAM_PEER_HORDE_EBIN or build erlang/ with mix)"
        );
    }
    found
}

/// The applications an Elixir node with Horde starts (see [`elixir_command`]).
pub const HORDE_APPS: [&str; 1] = ["horde"];

/// The command line of an `erl` node `name` (a long name) that starts the
/// test peer's `ctl` server (erlang/src/beam_peer_ctl.erl), with `extra`
/// arguments; it never starts an EPMD of its own (`ERL_EPMD_PORT` says
/// which one it registers with).
pub fn erl_command(name: &str, cookie: &str, extra: &[&str]) -> Command {
    let mut cmd = beam_tool("erl");
    cmd.args([
        "-name",
        name,
        "-setcookie",
        cookie,
        "-noshell",
        "-start_epmd",
        "false",
    ])
    .arg("-pa")
    .arg(ctl_ebin())
    .args(extra)
    .args(["-s", "beam_peer_ctl", "start"]);
    cmd
}

/// The command line of an Elixir node `name` (the `elixir` command, so
/// Elixir and Logger are loaded) with `erl_flags` passed to `erl` (after
/// `-start_epmd false`), each of `code_path` added by `-pa`, and the
/// applications `apps` started (`Application.ensure_all_started/1`, in
/// order) before it starts `ctl` and prints its ready line.
pub fn elixir_command(
    name: &str,
    cookie: &str,
    erl_flags: &[&str],
    code_path: &[PathBuf],
    apps: &[&str],
) -> Command {
    let mut cmd = beam_tool("elixir");
    let mut erl = vec!["-start_epmd false"];
    erl.extend_from_slice(erl_flags);
    cmd.args(["--name", name, "--cookie", cookie])
        .args(["--erl", &erl.join(" ")])
        .arg("-pa")
        .arg(ctl_ebin());
    for dir in code_path {
        cmd.arg("-pa").arg(dir);
    }
    // Anything that fails to start is printed and ends the node, so the
    // test fails at once on "no ready line" rather than later.
    let mut boot = String::new();
    for app in apps {
        boot.push_str(&format!(
            "case Application.ensure_all_started(:{app}) do {{:ok, _}} -> :ok; e -> IO.inspect(e, label: \"cannot start {app}\"); System.halt(1) end; "
        ));
    }
    boot.push_str(":beam_peer_ctl.start()");
    cmd.args(["--no-halt", "-e", &boot]);
    cmd
}

/// Reads a BEAM node's stdout (printing each line as `[erl] ...`) on a
/// thread of its own; true once the node printed its `ready` line, false
/// if it did not within `limit`.
pub fn await_ready(stdout: std::process::ChildStdout, limit: Duration) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ready ") {
                let _ = tx.send(());
            }
            println!("[erl] {line}");
        }
    });
    rx.recv_timeout(limit).is_ok()
}

/// A real BEAM node started by a test; killed (by pid) when dropped.
pub struct Beam {
    child: Option<Child>,
    pub name: String,
    /// The EPMD port the node registered with.
    pub epmd_port: u16,
}

impl Beam {
    /// Starts `erl -name PREFIX_..@127.0.0.1` using the EPMD on `epmd_port`.
    pub fn start(prefix: &str, cookie: &str, epmd_port: u16, extra: &[&str]) -> Beam {
        let name = format!("{}@127.0.0.1", unique(prefix));
        let cmd = erl_command(&name, cookie, extra);
        Beam::spawn(cmd, name, epmd_port)
    }

    /// Starts an Elixir node `PREFIX_..@127.0.0.1` using the EPMD on
    /// `epmd_port` (see [`elixir_command`] for `code_path` and `apps`).
    /// [`eval_elixir`] runs Elixir code on it; [`Beam::kill9`] ends it.
    pub fn start_elixir(
        prefix: &str,
        cookie: &str,
        epmd_port: u16,
        code_path: &[PathBuf],
        apps: &[&str],
    ) -> Beam {
        let name = format!("{}@127.0.0.1", unique(prefix));
        let cmd = elixir_command(&name, cookie, &[], code_path, apps);
        Beam::spawn(cmd, name, epmd_port)
    }

    /// An Elixir node with Horde and its dependencies started (see [`horde_ebin`]).
    pub fn start_horde(prefix: &str, cookie: &str, epmd_port: u16, ebins: &[PathBuf]) -> Beam {
        Beam::start_elixir(prefix, cookie, epmd_port, ebins, &HORDE_APPS)
    }

    /// Runs `cmd` (an `erl`-like command line that ends by starting
    /// `beam_peer_ctl`) and waits for its ready line.
    fn spawn(mut cmd: Command, name: String, epmd_port: u16) -> Beam {
        beam_versions();
        cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{:?} does not start: {e}", cmd.get_program()));
        let stdout = child.stdout.take().expect("stdout");
        let beam = Beam {
            child: Some(child),
            name,
            epmd_port,
        };
        assert!(
            await_ready(stdout, Duration::from_secs(30)),
            "erl node printed ready"
        );
        beam
    }

    pub fn os_pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// kill -9
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True once the OS process has exited (it is reaped here).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.os_pid().to_string()])
            .status();
    }
}

impl Drop for Beam {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts a Rust node `PREFIX_..@127.0.0.1` on the EPMD at `epmd_port` (the
/// embedded one is started when none answers there).
pub async fn rust_node(prefix: &str, epmd_port: u16) -> Node {
    rust_node_with(
        NodeConfig::new(format!("{}@127.0.0.1", unique(prefix))),
        epmd_port,
    )
    .await
}

pub async fn rust_node_with(config: NodeConfig, epmd_port: u16) -> Node {
    let mut config = config.discovery(beam_peer::Discovery::Epmd { port: epmd_port });
    if config.cookie.is_none() {
        config = config.cookie(COOKIE);
    }
    Node::start(config).await.expect("rust node starts")
}

/// Evaluates Erlang expressions on `beam` (through its `ctl` gen_server) and
/// returns the value; panics with the exception when evaluation raised.
pub async fn eval(p: &mut Process, beam: &str, code: &str) -> Term {
    let req = beam_peer::tup![
        term::atom("eval"),
        Term::ByteList(term::ByteList::from(code))
    ];
    let reply = ctl_call(p, beam, req)
        .await
        .unwrap_or_else(|e| panic!("eval on {beam} failed: {e}: {code}"));
    match term::as_tuple(&reply) {
        Some([ok, v]) if term::is_atom(ok, "ok") => v.clone(),
        _ => panic!("eval on {beam} raised {reply}: {code}"),
    }
}

/// A call to the test peer's `ctl` server (erlang/src/beam_peer_ctl.erl).
async fn ctl_call(p: &mut Process, beam: &str, req: Term) -> Result<Term, beam_peer::CallError> {
    p.call(
        Dest::Remote("ctl".into(), beam.into()),
        req,
        Duration::from_secs(60),
    )
    .await
}

/// Evaluates Elixir `code` on `beam` (a node from [`Beam::start_elixir`]) with
/// `bindings` as variables, and returns the value or the formatted exception.
/// Code runs in a fresh process that ends after it answers: wrap what must
/// stay linked in `:beam_peer_ctl.keep(fn -> ... end)`.
pub async fn try_eval_elixir(
    p: &mut Process,
    beam: &str,
    code: &str,
    bindings: Vec<(&str, Term)>,
) -> Result<Term, String> {
    let bindings = term::list(
        bindings
            .into_iter()
            .map(|(k, v)| beam_peer::tup![term::atom(k), v])
            .collect(),
    );
    let req = beam_peer::tup![
        term::atom("eval_elixir"),
        term::binary(code.as_bytes().to_vec()),
        bindings
    ];
    let reply = ctl_call(p, beam, req)
        .await
        .map_err(|e| format!("eval_elixir on {beam} failed: {e}"))?;
    match term::as_tuple(&reply) {
        Some([ok, v]) if term::is_atom(ok, "ok") => Ok(v.clone()),
        Some([err, text]) if term::is_atom(err, "error") => Err(match text {
            Term::Binary(b) => String::from_utf8_lossy(&b.bytes).into_owned(),
            other => other.to_string(),
        }),
        _ => Err(format!("unexpected reply {reply}")),
    }
}

/// [`try_eval_elixir`], panicking with the exception and the code.
pub async fn eval_elixir(
    p: &mut Process,
    beam: &str,
    code: &str,
    bindings: Vec<(&str, Term)>,
) -> Term {
    try_eval_elixir(p, beam, code, bindings)
        .await
        .unwrap_or_else(|e| panic!("eval_elixir on {beam} raised:\n{e}\ncode: {code}"))
}

/// `node`'s counters for its live connection to `peer`, if there is one.
pub fn connection_to(node: &Node, peer: &str) -> Option<beam_peer::dist::ConnectionStats> {
    node.connection_stats()
        .into_iter()
        .find(|(n, _)| n == peer)
        .map(|(_, s)| s)
}

/// Waits until `f` is true, checking every 20 ms, up to `limit`.
pub async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// An Erlang atom literal for `text` (quoted).
pub fn q(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The usual pair: a Rust node (with `echo` and `sink`) that starts the embedded
/// EPMD on a private port, and a real `erl` node registered in it.
pub async fn rust_and_beam() -> (Node, Beam) {
    let port = free_port();
    let rust = rust_node("rust", port).await;
    beam_peer::demo::start_echo_and_sink(&rust).expect("echo and sink");
    let beam = Beam::start("erl", COOKIE, port, &[]);
    (rust, beam)
}

/// A `beam-peer registry` member (Horde registry `registry`, `members: :auto`,
/// an echo server under `key`) in its own OS process, joined to `seed` and
/// using the EPMD on `epmd_port`; killed (by pid, SIGKILL) when dropped.
pub struct RegistryMember(pub Child);

impl RegistryMember {
    pub fn start(seed: &str, epmd_port: u16, registry: &str, key: &str) -> RegistryMember {
        let name = format!("{}@127.0.0.1", unique("member"));
        let child = Command::new(env!("CARGO_BIN_EXE_beam-peer"))
            .args([
                "registry", "--name", &name, "--cookie", COOKIE, "--join", seed,
            ])
            .args(["--registry", registry, "--key", key])
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("beam-peer registry runs");
        RegistryMember(child)
    }

    /// kill -9, waiting until the process is gone.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RegistryMember {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The DeltaCrdt messages the BEAM process registered as `crdt` on `beam`
/// sends and receives over `watched`, counted by kind: `"in diff started by
/// rust"`, `"out diff started by beam"`, `"in ack_diff"`, `"out state (N
/// keys)"`, `"in get_diff (N keys)"`... (traced on the BEAM side, so what
/// is counted is exactly what that replica handled).
pub async fn crdt_traffic(
    p: &mut Process,
    beam: &str,
    crdt: &str,
    watched: Duration,
) -> std::collections::BTreeMap<String, usize> {
    let name = term::atom(crdt);
    eval_elixir(
        p,
        beam,
        "c = :beam_peer_ctl.keep(fn -> :beam_peer_ctl.collector() end)
         :erlang.trace(Process.whereis(name), true, [:send, :receive, {:tracer, c}])
         :persistent_term.put({:live_tracer, name}, c)",
        vec![("name", name.clone())],
    )
    .await;
    tokio::time::sleep(watched).await;
    // Each CRDT message the BEAM replica sent or received, as
    // {direction, kind, who started the round (or key count)}.
    let seen = eval_elixir(
        p,
        beam,
        "me = Process.whereis(name)
         :erlang.trace(me, false, [:send, :receive])
         c = :persistent_term.get({:live_tracer, name})
         kind = fn
           {:diff, %DeltaCrdt.CausalCrdt.Diff{originator: o}} ->
             {:diff, if(o == me, do: :beam, else: :rust)}
           {:diff, _state, keys} -> {:state, length(keys)}
           {:get_diff, _diff, keys} -> {:get_diff, length(keys)}
           {:ack_diff, _} -> {:ack_diff, nil}
           _ -> nil
         end
         c
         |> :beam_peer_ctl.collected()
         |> Enum.flat_map(fn
           {:trace, _, :receive, m} -> [{:in, kind.(m)}]
           {:trace, _, :send, m, _to} -> [{:out, kind.(m)}]
           _ -> []
         end)
         |> Enum.reject(&match?({_, nil}, &1))
         |> Enum.map(fn {dir, {k, x}} -> {dir, k, x} end)",
        vec![("name", name)],
    )
    .await;
    let mut counts = std::collections::BTreeMap::new();
    for e in term::as_list(&seen).expect("a list of traced messages") {
        let Some([dir, kind, x]) = term::as_tuple(&e) else {
            panic!("not a traced message: {e}")
        };
        let label = format!(
            "{} {}{}",
            term::as_atom(dir).unwrap_or("?"),
            term::as_atom(kind).unwrap_or("?"),
            match term::as_atom(x) {
                Some("nil") => String::new(),
                Some(who) => format!(" started by {who}"),
                None => format!(" ({x} keys)"),
            }
        );
        *counts.entry(label).or_default() += 1;
    }
    counts
}

/// Checks that `counts` (from [`crdt_traffic`]) shows both sides syncing
/// at least `rounds` times and every round ending at the root: diffs and
/// acks only, no continuation, key list or values in either direction.
pub fn assert_idle_sync(counts: &std::collections::BTreeMap<String, usize>, rounds: usize) {
    let n = |label: &str| counts.get(label).copied().unwrap_or(0);
    let from_rust = n("in diff started by rust");
    let from_beam = n("out diff started by beam");
    assert!(from_rust >= rounds, "Rust keeps syncing: {counts:?}");
    assert!(from_beam >= rounds, "the BEAM keeps syncing: {counts:?}");
    let allowed = [
        "in diff started by rust",
        "out diff started by beam",
        "in ack_diff",
        "out ack_diff",
    ];
    for (label, count) in counts {
        assert!(
            allowed.contains(&label.as_str()),
            "{count} x {label} while equal: {counts:?}"
        );
    }
    assert!(n("out ack_diff") + 1 >= from_rust, "{counts:?}");
    assert!(n("in ack_diff") + 1 >= from_beam, "{counts:?}");
}

/// Polls an async condition every 20 ms until it holds; after `limit`,
/// fails with the message (format arguments allowed).
#[allow(unused_macros)]
macro_rules! eventually {
    ($limit:expr, $cond:expr, $($msg:tt)+) => {{
        let deadline = std::time::Instant::now() + $limit;
        loop {
            if $cond {
                break;
            }
            assert!(std::time::Instant::now() < deadline, $($msg)+);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}
#[allow(unused_imports)]
pub(crate) use eventually;

/// Polls `f` every 20 ms until it holds; panics with `what` after `limit`.
pub async fn poll_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every supervisor member sees `n` members `:alive`.
pub async fn all_members_alive(
    sups: &[beam_peer::horde::supervisor::Supervisor],
    n: usize,
    limit: Duration,
) {
    use beam_peer::horde::supervisor::MemberStatus;
    for s in sups {
        poll_until(
            &format!("{} sees {n} members alive", s.member()),
            limit,
            || async {
                s.member_statuses().await.is_ok_and(|m| {
                    m.iter().filter(|m| m.status == MemberStatus::Alive).count() == n
                })
            },
        )
        .await;
    }
}
