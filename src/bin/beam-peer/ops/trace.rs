//! `beam-peer trace PID_OR_NAME`: the messages one process sends and
//! receives, a line each as they happen, until `--for` expires, Ctrl-C,
//! or the process exits.
//!
//! What it owns: starting and stopping a trace on either kind of node, and
//! turning trace messages into lines.
//! - A BEAM node traces with OTP's own `erlang:trace/3`. Its tracer must be
//!   a local process (a remote pid is refused with `badarg`), and no module
//!   of ours exists there, so we start one small relay there, written in
//!   Erlang and run by the node's own `erl_eval` (parsed there through
//!   `erl_scan`/`erl_parse`, all by erpc). The relay traces the process,
//!   forwards each trace message to our hidden node, and turns tracing off
//!   when we say stop, when our process exits, or when our connection goes
//!   (it monitors us), so nothing keeps tracing after we are gone.
//! - A Rust node traces natively and takes a remote tracer:
//!   `erlang:trace(Pid, true, [send, 'receive', procs, timestamp, {tracer, Us}])`
//!   (see `beam_peer::node::trace`), with the same clean-up on its side.
//!
//! What it must never do: leave a process traced, or take over a process
//! someone else traces (a process has one tracer; the BEAM refuses a
//! second, and we say who holds it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use beam_peer::term::{self, Pid, Term};
use beam_peer::Dest;
use serde_json::json;

use super::{resolve_alive, term_text, Resolved, Session};

/// `--for`: seconds (`10`, `0.5`) or a duration with a unit (`500ms`, `1m`).
pub fn seconds(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(Duration::from_secs_f64(x)),
        Ok(_) => Err(format!("{s:?}: give more than zero seconds")),
        Err(_) => crate::args::duration(s),
    }
}

/// One traced event.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceLine {
    /// Microseconds since the Unix epoch, from the traced node's clock.
    pub at_us: i64,
    pub what: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Receive(Term),
    /// `exists` is false for OTP's `send_to_non_existing_process`.
    Send {
        msg: Term,
        to: Term,
        exists: bool,
    },
    Exit(Term),
}

impl TraceLine {
    /// Reads `{trace_ts, Pid, What, ..., {Mega, Sec, Micro}}` (or `trace`
    /// without a time, stamped `now`) for the traced `pid`.
    pub fn from_term(t: &Term, pid: &Pid, now: SystemTime) -> Option<TraceLine> {
        let e = term::as_tuple(t)?;
        let (stamped, rest) = match e.split_first() {
            Some((tag, rest)) if term::is_atom(tag, "trace_ts") => (true, rest),
            Some((tag, rest)) if term::is_atom(tag, "trace") => (false, rest),
            _ => return None,
        };
        let (rest, at_us) = if stamped {
            let (ts, rest) = rest.split_last()?;
            (rest, timestamp_us(ts)?)
        } else {
            let us = now.duration_since(UNIX_EPOCH).ok()?.as_micros() as i64;
            (rest, us)
        };
        let what = match rest {
            [Term::Pid(p), w, m] if p == pid && term::is_atom(w, "receive") => {
                Event::Receive(m.clone())
            }
            [Term::Pid(p), w, r] if p == pid && term::is_atom(w, "exit") => Event::Exit(r.clone()),
            [Term::Pid(p), w, m, to] if p == pid => match term::as_atom(w)? {
                "send" => Event::Send {
                    msg: m.clone(),
                    to: to.clone(),
                    exists: true,
                },
                "send_to_non_existing_process" => Event::Send {
                    msg: m.clone(),
                    to: to.clone(),
                    exists: false,
                },
                _ => return None,
            },
            _ => return None,
        };
        Some(TraceLine { at_us, what })
    }

    /// `HH:MM:SS.micros DIRECTION PEER MESSAGE`, terms as `node` prints them.
    pub fn text(&self, node: &str) -> String {
        let time = clock_text(self.at_us);
        match &self.what {
            Event::Receive(m) => format!("{time} receive -  {}", term_text(m, node)),
            Event::Send { msg, to, exists } => format!(
                "{time} send    {}  {}{}",
                term_text(to, node),
                term_text(msg, node),
                if *exists { "" } else { "  (no such process)" }
            ),
            Event::Exit(r) => format!("{time} exit    -  {}", term_text(r, node)),
        }
    }

    pub fn json(&self, node: &str) -> serde_json::Value {
        let (direction, peer, message) = match &self.what {
            Event::Receive(m) => ("receive", None, m),
            Event::Send { msg, to, .. } => ("send", Some(term_text(to, node)), msg),
            Event::Exit(r) => ("exit", None, r),
        };
        let mut v = json!({
            "time": clock_text(self.at_us), "timestamp_us": self.at_us,
            "direction": direction, "peer": peer,
        });
        if direction == "exit" {
            v["reason"] = json!(term_text(message, node));
        } else {
            v["message"] = json!(term_text(message, node));
        }
        if let Event::Send { exists: false, .. } = &self.what {
            v["no_such_process"] = json!(true);
        }
        v
    }
}

/// `{MegaSecs, Secs, MicroSecs}` in microseconds.
fn timestamp_us(t: &Term) -> Option<i64> {
    match term::as_tuple(t)? {
        [m, s, u] => {
            Some((term::as_i64(m)? * 1_000_000 + term::as_i64(s)?) * 1_000_000 + term::as_i64(u)?)
        }
        _ => None,
    }
}

/// The UTC time of day, `HH:MM:SS.micros`.
pub fn clock_text(us: i64) -> String {
    let day_us = us.rem_euclid(86_400_000_000);
    let s = day_us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600,
        (s % 3600) / 60,
        s % 60,
        day_us % 1_000_000
    )
}

/// The relay run on a BEAM node by `erl_eval`, with `Tracer` (our process)
/// and `Target` bound. It says first whether `erlang:trace/3` took (`1`),
/// and traces only then, so a process someone else traces is left alone.
const RELAY: &str = "spawn(fun() ->
    erlang:monitor(process, Tracer),
    erlang:monitor(process, Target),
    Started = (catch erlang:trace(Target, true, [send, 'receive', timestamp])),
    Tracer ! {beam_peer_trace, self(), Started},
    Off = fun() -> catch erlang:trace(Target, false, [send, 'receive', timestamp]) end,
    Loop = fun L() ->
        receive
            {trace_ts, Target, _, _, _} = E -> Tracer ! E, L();
            {trace_ts, Target, _, _, _, _} = E -> Tracer ! E, L();
            {'DOWN', _, process, Target, R} ->
                Tracer ! {trace_ts, Target, exit, R, erlang:timestamp()};
            {'DOWN', _, process, Tracer, _} -> Off();
            {stop, Tracer} -> Off();
            _ -> L()
        end
    end,
    case Started of 1 -> Loop(); _ -> ok end
end).";

/// How tracing runs on the node: through a relay there (BEAM) or natively (Rust).
enum Tracing {
    Beam { relay: Pid },
    Rust,
}

/// Why the trace ended.
enum End {
    Exited(Term),
    Stopped(&'static str),
}

pub async fn trace(
    s: &Session,
    what: &str,
    on: Option<&str>,
    limit: Option<Duration>,
) -> anyhow::Result<()> {
    let r = resolve_alive(s, what, on).await?;
    let release = s
        .call(
            &r.node,
            "erlang",
            "system_info",
            vec![term::atom("otp_release")],
        )
        .await?;
    let rust = term::elixir::as_charlist(&release).is_some_and(|x| x.starts_with("beam_peer"));
    let mut me = s.node.process();
    // Our view of the traced process: a DOWN says it exited or that the
    // connection to its node is gone.
    me.monitor(Dest::Pid(r.pid.clone()));
    let how = if rust {
        start_rust(s, &r, &me).await?
    } else {
        start_beam(s, &r, &mut me).await?
    };
    let until = match limit {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "until Ctrl-C".into(),
    };
    eprintln!(
        "tracing {} (send, receive) {until}; time is UTC on that node's clock",
        r.describe()
    );
    let deadline = limit.map(|d| tokio::time::Instant::now() + d);
    let mut seen = 0usize;
    let end = loop {
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => break End::Stopped("Ctrl-C"),
            _ = sleep_until(deadline) => break End::Stopped("--for expired"),
            m = me.receive() => m,
        };
        let Ok(m) = next else {
            break End::Stopped("our process exited");
        };
        // Either monitor can fire first when the connection goes.
        let relay_down = match &how {
            Tracing::Beam { relay } => down_of(&m, relay),
            Tracing::Rust => None,
        };
        if relay_down
            .as_ref()
            .is_some_and(|r| term::is_atom(r, "noconnection"))
        {
            bail!("lost the connection to {} while tracing", r.node);
        }
        if let Some(reason) = down_of(&m, &r.pid) {
            if term::is_atom(&reason, "noconnection") {
                // Nothing to clean up: the node's side saw the same
                // connection go (the relay, or the Rust node's forwarder,
                // monitors us) and turned tracing off itself.
                bail!("lost the connection to {} while tracing", r.node);
            }
            // The exit event can follow the DOWN (a Rust node sends them
            // from two processes): wait for it and what precedes it.
            let end = drain_until_exit(s, &r, &mut me, &mut seen).await;
            break End::Exited(end.unwrap_or(reason));
        }
        if let Some(reason) = relay_down {
            bail!(
                "the tracer on {} ended ({}) before {} did",
                r.node,
                term_text(&reason, &r.node),
                r.describe()
            );
        }
        if let Some(line) = TraceLine::from_term(&m, &r.pid, SystemTime::now()) {
            if let Event::Exit(reason) = &line.what {
                print_line(s, &r, &line);
                break End::Exited(reason.clone());
            }
            seen += 1;
            print_line(s, &r, &line);
        }
    };
    match end {
        End::Exited(reason) => {
            eprintln!(
                "{} exited ({}) after {seen} message(s)",
                r.describe(),
                term_text(&reason, &r.node)
            );
        }
        End::Stopped(why) => {
            cleanup(s, &r, &how, &mut me).await;
            eprintln!("trace stopped ({why}) after {seen} message(s); tracing is off");
        }
    }
    Ok(())
}

fn print_line(s: &Session, r: &Resolved, line: &TraceLine) {
    if s.json {
        println!("{}", line.json(&r.node));
    } else {
        println!("{}", line.text(&r.node));
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn down_of(m: &Term, pid: &Pid) -> Option<Term> {
    match term::as_tuple(m) {
        Some([d, _, _, Term::Pid(p), reason]) if term::is_atom(d, "DOWN") && p == pid => {
            Some(reason.clone())
        }
        _ => None,
    }
}

/// After the traced process's DOWN: the events still on their way, up to
/// its exit event (within the session's timeout; it normally follows in
/// well under a millisecond).
async fn drain_until_exit(
    s: &Session,
    r: &Resolved,
    me: &mut beam_peer::Process,
    seen: &mut usize,
) -> Option<Term> {
    let deadline = tokio::time::Instant::now() + s.timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = me.receive_timeout(left).await.ok()??;
        if let Some(line) = TraceLine::from_term(&m, &r.pid, SystemTime::now()) {
            print_line(s, r, &line);
            match line.what {
                Event::Exit(reason) => return Some(reason),
                _ => *seen += 1,
            }
        }
    }
}

/// Why `erlang:trace/3` refused, in words.
async fn refusal(s: &Session, r: &Resolved, raw: &str) -> anyhow::Error {
    let pid = Term::Pid(r.pid.clone());
    if matches!(s.is_alive(r).await, Ok(false)) {
        return anyhow!("{} is not alive", r.describe());
    }
    let tracer = s
        .call(
            &r.node,
            "erlang",
            "trace_info",
            vec![pid, term::atom("tracer")],
        )
        .await;
    if let Ok(t) = tracer {
        if let Some([_, Term::Pid(other)]) = term::as_tuple(&t) {
            return anyhow!(
                "{} is already traced by {} (dbg, or another trace): a process has one tracer at a time",
                r.describe(),
                other.in_node(&r.node)
            );
        }
    }
    anyhow!("{} refused to trace {}: {raw}", r.node, r.describe())
}

async fn start_rust(s: &Session, r: &Resolved, me: &beam_peer::Process) -> anyhow::Result<Tracing> {
    let flags = term::list(vec![
        term::atom("send"),
        term::atom("receive"),
        term::atom("procs"),
        term::atom("timestamp"),
        beam_peer::tup![term::atom("tracer"), Term::Pid(me.pid().clone())],
    ]);
    match s
        .rpc(
            &r.node,
            "erlang",
            "trace",
            vec![Term::Pid(r.pid.clone()), term::atom("true"), flags],
        )
        .await
    {
        Ok(_) => Ok(Tracing::Rust),
        Err(e) => Err(refusal(s, r, &super::rpc_text(&e)).await),
    }
}

async fn start_beam(
    s: &Session,
    r: &Resolved,
    me: &mut beam_peer::Process,
) -> anyhow::Result<Tracing> {
    let scanned = s
        .call(
            &r.node,
            "erl_scan",
            "string",
            vec![term::elixir::charlist(RELAY)],
        )
        .await?;
    let tokens = match term::as_tuple(&scanned) {
        Some([ok, tokens, _]) if term::is_atom(ok, "ok") => tokens.clone(),
        _ => bail!("{} could not scan the relay: {scanned}", r.node),
    };
    let parsed = s
        .call(&r.node, "erl_parse", "parse_exprs", vec![tokens])
        .await?;
    let exprs = match term::as_tuple(&parsed) {
        Some([ok, exprs]) if term::is_atom(ok, "ok") => exprs.clone(),
        _ => bail!("{} could not parse the relay: {parsed}", r.node),
    };
    let bindings = term::list(vec![
        beam_peer::tup![term::atom("Target"), Term::Pid(r.pid.clone())],
        beam_peer::tup![term::atom("Tracer"), Term::Pid(me.pid().clone())],
    ]);
    let value = s
        .call(&r.node, "erl_eval", "exprs", vec![exprs, bindings])
        .await?;
    let relay = match term::as_tuple(&value) {
        Some([v, Term::Pid(p), _]) if term::is_atom(v, "value") => p.clone(),
        _ => bail!("{} did not start the relay: {value}", r.node),
    };
    me.monitor(Dest::Pid(relay.clone()));
    let answer = me
        .receive_match(
            |m| matches!(term::as_tuple(m), Some([tag, Term::Pid(p), _]) if term::is_atom(tag, "beam_peer_trace") && p == &relay),
            Some(s.timeout),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let Some(answer) = answer else {
        bail!("the relay on {} did not answer within the timeout", r.node);
    };
    match term::as_tuple(&answer) {
        Some([_, _, started]) if term::as_i64(started) == Some(1) => Ok(Tracing::Beam { relay }),
        Some([_, _, started]) => Err(refusal(s, r, &term_text(started, &r.node)).await),
        _ => bail!("unexpected answer from the relay: {answer}"),
    }
}

/// Turns tracing off: the relay on a BEAM node is told to stop and waited
/// for (it is killed and the flags cleared by hand if it does not end in
/// time); a Rust node is told directly. Errors are said, not returned: we
/// are on our way out.
async fn cleanup(s: &Session, r: &Resolved, how: &Tracing, me: &mut beam_peer::Process) {
    match how {
        Tracing::Rust => {
            if let Err(e) = trace_off(s, r, &["all"]).await {
                eprintln!(
                    "warning: turning tracing off on {}: {}",
                    r.node,
                    super::rpc_text(&e)
                );
            }
        }
        Tracing::Beam { relay } => {
            me.send(
                Dest::Pid(relay.clone()),
                beam_peer::tup![term::atom("stop"), Term::Pid(me.pid().clone())],
            );
            let down = me
                .receive_match(|m| down_of(m, relay).is_some(), Some(s.timeout))
                .await;
            if matches!(down, Ok(Some(_))) {
                return;
            }
            eprintln!(
                "warning: the relay on {} did not stop in time; killing it",
                r.node
            );
            let _ = s
                .rpc(
                    &r.node,
                    "erlang",
                    "exit",
                    vec![Term::Pid(relay.clone()), term::atom("kill")],
                )
                .await;
            let _ = trace_off(s, r, &["send", "receive"]).await;
        }
    }
}

/// `erlang:trace(Pid, false, Flags)` on the process's node.
async fn trace_off(
    s: &Session,
    r: &Resolved,
    flags: &[&str],
) -> Result<Term, beam_peer::RpcCallError> {
    let flags = term::list(flags.iter().map(|f| term::atom(f)).collect());
    s.rpc(
        &r.node,
        "erlang",
        "trace",
        vec![Term::Pid(r.pid.clone()), term::atom("false"), flags],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid() -> Pid {
        Pid::new("a@h", 93, 0, 1)
    }

    fn ts() -> Term {
        beam_peer::tup![term::int(1796), term::int(618547), term::int(378675)]
    }

    #[test]
    fn trace_ts_messages_become_lines() {
        let other = Term::Pid(Pid::new("b@h", 7, 0, 2));
        let recv = beam_peer::tup![
            term::atom("trace_ts"),
            Term::Pid(pid()),
            term::atom("receive"),
            beam_peer::tup![other.clone(), term::atom("hello")],
            ts()
        ];
        let l = TraceLine::from_term(&recv, &pid(), UNIX_EPOCH).expect("a line");
        assert_eq!(l.at_us, 1_796_618_547_378_675);
        assert_eq!(
            l.text("a@h"),
            "04:42:27.378675 receive -  {<b@h.7.0>,hello}"
        );
        let send = beam_peer::tup![
            term::atom("trace_ts"),
            Term::Pid(pid()),
            term::atom("send"),
            beam_peer::tup![term::atom("echo"), term::atom("hello")],
            other.clone(),
            ts()
        ];
        let l = TraceLine::from_term(&send, &pid(), UNIX_EPOCH).expect("a line");
        assert_eq!(
            l.text("a@h"),
            "04:42:27.378675 send    <b@h.7.0>  {echo,hello}"
        );
        let j = l.json("a@h");
        assert_eq!(j["direction"], "send");
        assert_eq!(j["peer"], "<b@h.7.0>");
        assert_eq!(j["message"], "{echo,hello}");
        let lost = beam_peer::tup![
            term::atom("trace_ts"),
            Term::Pid(pid()),
            term::atom("send_to_non_existing_process"),
            term::atom("x"),
            term::atom("nobody"),
            ts()
        ];
        let l = TraceLine::from_term(&lost, &pid(), UNIX_EPOCH).expect("a line");
        assert!(l.text("a@h").ends_with("nobody  x  (no such process)"));
        let exit = beam_peer::tup![
            term::atom("trace_ts"),
            Term::Pid(pid()),
            term::atom("exit"),
            term::atom("normal"),
            ts()
        ];
        let l = TraceLine::from_term(&exit, &pid(), UNIX_EPOCH).expect("a line");
        assert_eq!(l.what, Event::Exit(term::atom("normal")));
        assert_eq!(l.json("a@h")["reason"], "normal");
    }

    #[test]
    fn untimed_trace_messages_take_now_and_others_are_not_lines() {
        let recv = beam_peer::tup![
            term::atom("trace"),
            Term::Pid(pid()),
            term::atom("receive"),
            term::atom("x")
        ];
        let now = UNIX_EPOCH + Duration::from_secs(3600);
        let l = TraceLine::from_term(&recv, &pid(), now).expect("a line");
        assert_eq!(clock_text(l.at_us), "01:00:00.000000");
        let other_pid = Pid::new("a@h", 94, 0, 1);
        assert_eq!(TraceLine::from_term(&recv, &other_pid, now), None);
        for t in [
            term::atom("x"),
            beam_peer::tup![term::atom("trace_ts"), Term::Pid(pid())],
            beam_peer::tup![
                term::atom("trace_ts"),
                Term::Pid(pid()),
                term::atom("receive"),
                term::atom("x"),
                term::atom("not_a_time")
            ],
            beam_peer::tup![
                term::atom("trace"),
                Term::Pid(pid()),
                term::atom("call"),
                term::atom("x"),
                term::atom("y")
            ],
        ] {
            assert_eq!(TraceLine::from_term(&t, &pid(), now), None, "{t}");
        }
    }

    #[test]
    fn for_takes_seconds_or_a_duration() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("300ms"), Ok(Duration::from_millis(300)));
        assert!(seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
    }
}
