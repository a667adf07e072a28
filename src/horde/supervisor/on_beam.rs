//! Children a Rust member runs on a BEAM node: what happens to a child
//! placed on a Rust member whose start module has no Rust worker there.
//!
//! Horde places by hash, not by who has the code, so in a mixed cluster a
//! Rust member is handed children of Elixir modules. Rather than lose
//! them, the member starts each on a BEAM node of the cluster that has the
//! module and supervises it from here, as its own child:
//!
//! - the nodes asked are the other members' nodes, then every other
//!   visible node, in name order; a node answers only if `M` loads there
//!   and exports `F/length(A)` (`code:ensure_loaded/1`,
//!   `erlang:function_exported/3`), so Rust nodes and nodes without the
//!   code are passed over;
//! - there, through `erpc` and `erl_eval` (stock OTP: nothing is loaded on
//!   the BEAM node), a small parent process is spawned which links to the
//!   member, calls `M:F(A...)` itself (so the child's own `start_link`
//!   links it to a parent that lives as long as it does, as under a
//!   supervisor), and reports `{ok, Pid}` or the error;
//! - the member links to the child too, so the child's exit reaches it
//!   with the child's own reason, and applies the restart rules and
//!   intensity as for a Rust child. The CRDT entry names this member and
//!   the child's real pid, so every member, Elixir or Rust, sees it as the
//!   Rust member's child: `which_children`, `terminate_child`, a
//!   `GenServer.call` to the pid all work as usual;
//! - to stop the child (terminate, redistribution, hand-over) the member
//!   asks the parent, which sends the exit signal as a supervisor does
//!   (from the parent, so a child that traps exits runs `terminate/2`),
//!   kills it after its `shutdown` time, and exits;
//! - when the member dies (`kill -9` of its node: `noconnection`), the
//!   parent stops the child with `:shutdown` the same way, so the other
//!   members, which restart the member's children, never leave two running
//!   for long (for at most the child's `shutdown` time, while the old one
//!   terminates).
//!
//! What it owns: the Erlang source of that parent (kept here, parsed on
//! each BEAM node once), which node had which module, and the call.
//! What it must never do: block its member for longer than `timeout` per
//! node, or trust what a node answers (any shape it does not know is an
//! error for that node, and the next node is asked).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::node::Node;
use crate::term::{self, Pid, Term};

/// The message that asks a parent to stop its child: `{STOP_TAG, Member,
/// Reason}`.
pub const STOP_TAG: &str = "$beam_peer_stop";

/// Evaluated by `erl_eval:exprs/2` on the BEAM node with `M`, `F`, `A`,
/// `Owner` (the member's pid), `Shutdown` (`brutal_kill` or anything else)
/// and `After` (ms or `infinity`) and `Timeout` bound. Answers `undef` when
/// the node cannot run `M:F/length(A)`, else `{Parent, StartResult}`.
const PARENT: &str = r#"
case code:ensure_loaded(M) of
  {module, M} ->
    case erlang:function_exported(M, F, length(A)) of
      true ->
        Caller = self(),
        Parent = spawn(fun() ->
          process_flag(trap_exit, true),
          link(Owner),
          Started = try erlang:apply(M, F, A) catch Class:Why -> {error, {Class, Why}} end,
          Caller ! {self(), Started},
          Child = case Started of
            {ok, P} when is_pid(P) -> P;
            {ok, P, _} when is_pid(P) -> P;
            _ -> none
          end,
          Stop = fun(Reason) ->
            case Shutdown of
              brutal_kill -> exit(Child, kill);
              _ -> exit(Child, Reason)
            end,
            receive
              {'EXIT', Child, R1} -> exit(R1)
            after After ->
              exit(Child, kill),
              receive {'EXIT', Child, R2} -> exit(R2) end
            end
          end,
          Loop = fun Wait() ->
            receive
              {'EXIT', Child, R3} -> exit(R3);
              {'EXIT', Owner, noconnection} -> Stop(shutdown);
              {'EXIT', Owner, R4} -> Stop(R4);
              {'$beam_peer_stop', Owner, R5} -> Stop(R5);
              _ -> Wait()
            end
          end,
          case Child of
            none -> ok;
            _ -> Loop()
          end
        end),
        receive
          {Parent, Res} -> {Parent, Res}
        after Timeout ->
          exit(Parent, kill),
          {Parent, {error, start_timeout}}
        end;
      false -> undef
    end;
  _ -> undef
end.
"#;

/// How long a node that could not run the parent (a Rust node, a node
/// without `erl_eval`) is passed over.
const NOT_BEAM_FOR: Duration = Duration::from_secs(30);

/// A child started on a BEAM node.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// The child: its own pid, on the BEAM node.
    pub child: Pid,
    /// Its parent there, which stops it when asked ([`STOP_TAG`]) or when
    /// the member dies.
    pub parent: Pid,
}

/// Which nodes can run the parent, and the parent's parsed code on each.
#[derive(Default)]
pub struct BeamStarts {
    parsed: HashMap<String, Term>,
    not_beam: HashMap<String, Instant>,
}

impl BeamStarts {
    /// Starts `M:F(A)` on the first of `nodes` that can, for `owner`.
    /// `Ok(Some(_))` once started, `Ok(None)` when no node has the
    /// function, `Err(reply)` for the start's own error (`{error, _}`,
    /// `ignore`: Horde's answer, as a Rust worker's would be).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        &mut self,
        node: &Node,
        nodes: &[String],
        owner: &Pid,
        module: &str,
        function: &str,
        args: &[Term],
        shutdown: &Term,
        timeout: Duration,
    ) -> Result<Option<Started>, Term> {
        for n in nodes {
            if self
                .not_beam
                .get(n)
                .is_some_and(|since| since.elapsed() < NOT_BEAM_FOR)
            {
                continue;
            }
            let Some(exprs) = self.parse_on(node, n, timeout).await else {
                self.not_beam.insert(n.clone(), Instant::now());
                continue;
            };
            let after = match term::as_i64(shutdown) {
                Some(ms) if ms >= 0 => term::int(ms),
                _ => term::atom("infinity"),
            };
            let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
            let mut bindings = vec![
                ("A", term::list(args.to_vec())),
                ("After", after),
                ("F", term::atom(function)),
                ("M", term::atom(module)),
                ("Owner", Term::Pid(owner.clone())),
                ("Shutdown", shutdown.clone()),
                ("Timeout", term::int(ms)),
            ];
            // erl_eval's bindings are an orddict: sorted by name.
            bindings.sort_by(|a, b| a.0.cmp(b.0));
            let bindings = term::list(
                bindings
                    .into_iter()
                    .map(|(k, v)| crate::tup![term::atom(k), v])
                    .collect(),
            );
            let answer = node
                .rpc(
                    n,
                    "erl_eval",
                    "exprs",
                    vec![exprs, bindings],
                    timeout + Duration::from_secs(1),
                )
                .await;
            let value = match answer {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(node = %n, error = %e, module, "BEAM start failed there");
                    continue;
                }
            };
            let value = match term::as_tuple(&value) {
                Some([tag, v, _]) if term::is_atom(tag, "value") => v.clone(),
                _ => continue,
            };
            if term::is_atom(&value, "undef") {
                continue;
            }
            let Some([Term::Pid(parent), result]) = term::as_tuple(&value) else {
                tracing::warn!(node = %n, %value, "unexpected answer to a BEAM start");
                continue;
            };
            return match term::as_tuple(result) {
                Some([ok, Term::Pid(child), ..]) if term::is_atom(ok, "ok") => Ok(Some(Started {
                    child: child.clone(),
                    parent: parent.clone(),
                })),
                _ => Err(result.clone()),
            };
        }
        Ok(None)
    }

    /// The parent's code parsed by `n` (`erl_scan:string/1`,
    /// `erl_parse:parse_exprs/1`), once per node.
    async fn parse_on(&mut self, node: &Node, n: &str, timeout: Duration) -> Option<Term> {
        if let Some(e) = self.parsed.get(n) {
            return Some(e.clone());
        }
        let scanned = node
            .rpc(
                n,
                "erl_scan",
                "string",
                vec![term::elixir::charlist(PARENT)],
                timeout,
            )
            .await
            .ok()?;
        let tokens = match term::as_tuple(&scanned) {
            Some([ok, tokens, _]) if term::is_atom(ok, "ok") => tokens.clone(),
            _ => return None,
        };
        let parsed = node
            .rpc(n, "erl_parse", "parse_exprs", vec![tokens], timeout)
            .await
            .ok()?;
        let exprs = match term::as_tuple(&parsed) {
            Some([ok, exprs]) if term::is_atom(ok, "ok") => exprs.clone(),
            _ => {
                tracing::warn!(node = %n, %parsed, "the BEAM start's code does not parse there");
                return None;
            }
        };
        self.parsed.insert(n.to_string(), exprs.clone());
        Some(exprs)
    }

    /// `node` went down: ask it afresh next time.
    pub fn forget(&mut self, node: &str) {
        self.parsed.remove(node);
        self.not_beam.remove(node);
    }
}
