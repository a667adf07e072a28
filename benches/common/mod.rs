//! What the side-by-side benchmarks share: OS processes they start and kill,
//! compiling our Erlang helpers, free ports and settings from the environment.
//! Each bench uses part of it.
#![allow(dead_code)]

pub mod supervisor_load;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::Duration;

/// An OS process killed (and reaped) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// True when `erl` runs here (the BEAM side of a bench needs it).
pub fn have_erl() -> bool {
    Command::new("erl")
        .args(["-noshell", "-eval", "halt()."])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The CPU time (user and system, every thread) OS process `pid` has used
/// so far, in seconds, from `/proc/<pid>/stat`; 0 where that cannot be read.
/// Clock ticks are 1/100 s: Linux fixes them at 100 for user space.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) is in parentheses and may hold spaces;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// The median of `values` (the mean of the middle two for an even count; 0
/// for none), as the benches report a typical run beside the best one.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// `name` from the environment, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Compiles `erlang/src/<file>` for each of `files` into a fresh directory
/// named after `tag` and this process; returns the directory.
pub fn compile_erlang(tag: &str, files: &[&str]) -> PathBuf {
    let out = std::env::temp_dir().join(format!("{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("ebin dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("erlang/src");
    for f in files {
        let ok = Command::new("erlc")
            .arg("-o")
            .arg(&out)
            .arg(src.join(f))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "erlc {f}");
    }
    out
}

/// Starts `cmd` and returns it once it printed a line starting with
/// `ready` (within `limit`); later lines go to `lines` when given, else to
/// stderr.
pub fn start_until_ready(
    mut cmd: Command,
    lines: Option<Sender<String>>,
    limit: Duration,
) -> Guard {
    cmd.stdout(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("ready") {
                let _ = tx.send(());
            } else if let Some(l) = &lines {
                let _ = l.send(line);
            } else {
                eprintln!("[beam] {line}");
            }
        }
    });
    rx.recv_timeout(limit).expect("ready");
    Guard(child)
}

/// `elixir --name PREFIX_<pid>@127.0.0.1 --cookie COOKIE` with each of the
/// colon-separated `ebins` on the code path, running `erlang/bench/SCRIPT`
/// with the EPMD on `epmd_port`; the caller adds the script's arguments.
pub fn elixir_script(
    script: &str,
    prefix: &str,
    cookie: &str,
    ebins: &str,
    epmd_port: u16,
) -> Command {
    let mut cmd = Command::new("elixir");
    cmd.args([
        "--name",
        &format!("{prefix}_{}@127.0.0.1", std::process::id()),
        "--cookie",
        cookie,
        "--erl",
        "-start_epmd false",
    ]);
    for dir in ebins.split(':').filter(|d| !d.is_empty()) {
        cmd.arg("-pa").arg(dir);
    }
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("erlang/bench")
            .join(script),
    )
    .env("ERL_EPMD_PORT", epmd_port.to_string());
    cmd
}
