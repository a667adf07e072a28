//! Placement parity cases and their check, shared by `supervisor_live`
//! (asks a real Horde) and `supervisor_placement` (replays a recording of it).
//!
//! A case is `{child_spec, [%Horde.DynamicSupervisor.Member{}]}`; Horde's
//! answer for it is `{uniform, quorum, has_quorum, random}`, where each
//! choice is `{:ok, name, status}` (the chosen member, flattened) or
//! `{:error, reason}`, and `has_quorum` is what
//! `Horde.UniformQuorumDistribution.has_quorum?/1` returned (`true`,
//! `false`, or `nil` when every member is shutting down).
#![allow(dead_code)]

use beam_peer::horde::supervisor::{DistributionStrategy, Member, MemberStatus};
use beam_peer::term::{self, Term};

/// What the BEAM runs: `elixir -e SCRIPT -- input output`, with Horde's
/// ebins on the code path. `input` holds `term_to_binary` of the case list;
/// `output` gets the list of answers. With a third argument `fixture`, it
/// also writes the fixture file: cases, answers and versions, compressed.
pub const SCRIPT: &str = r#"
[input, output | rest] = System.argv()
cases = input |> File.read!() |> :erlang.binary_to_term()
flat = fn
  {:ok, %Horde.DynamicSupervisor.Member{name: n, status: s}} -> {:ok, n, s}
  other -> other
end
answers =
  Enum.map(cases, fn {spec, members} ->
    {flat.(Horde.UniformDistribution.choose_node(spec, members)),
     flat.(Horde.UniformQuorumDistribution.choose_node(spec, members)),
     Horde.UniformQuorumDistribution.has_quorum?(members),
     flat.(Horde.UniformRandomDistribution.choose_node(spec, members))}
  end)
File.write!(output, :erlang.term_to_binary(answers))
case rest do
  [fixture, seed] ->
    :ok = Application.load(:horde)
    :ok = Application.load(:libring)
    meta = %{
      seed: String.to_integer(seed),
      horde: to_string(Application.spec(:horde, :vsn)),
      libring: to_string(Application.spec(:libring, :vsn)),
      otp: to_string(:erlang.system_info(:otp_release)),
      elixir: System.version(),
      recorded_by: "tests/supervisor_live.rs regenerate_placement_fixture"
    }
    File.write!(fixture, :erlang.term_to_binary({meta, cases, answers}, [:compressed, minor_version: 2]))
  [] -> :ok
end
"#;

/// The members of a case.
pub fn members(case: &Term) -> Vec<Member> {
    let [_, members] = term::as_tuple(case).expect("a case is a pair") else {
        panic!("a case is a pair: {case}");
    };
    term::as_list(members)
        .expect("a member list")
        .iter()
        .map(|m| Member::from_term(m).expect("a member struct"))
        .collect()
}

fn ours(result: Result<&Member, beam_peer::horde::supervisor::ChooseError>) -> Term {
    match result {
        Ok(m) => beam_peer::tup![
            term::atom("ok"),
            m.name.clone(),
            term::atom(m.status.as_atom())
        ],
        Err(e) => beam_peer::tup![term::atom("error"), e.reason()],
    }
}

/// Checks our strategies against Horde's answer for one case; `Err` says
/// how they differ.
pub fn check(case: &Term, answer: &Term) -> Result<(), String> {
    let [spec, _] = term::as_tuple(case).expect("a pair") else {
        unreachable!()
    };
    let members = members(case);
    let [uniform, quorum, has_quorum, random] = term::as_tuple(answer).expect("4 answers") else {
        return Err(format!("answer of unexpected shape: {answer}"));
    };
    let u = ours(DistributionStrategy::Uniform.choose_node(spec, &members, 0));
    if &u != uniform {
        return Err(format!("uniform: ours {u}, Horde {uniform}"));
    }
    let q = ours(DistributionStrategy::UniformQuorum.choose_node(spec, &members, 0));
    if &q != quorum {
        return Err(format!("quorum: ours {q}, Horde {quorum}"));
    }
    let hq = DistributionStrategy::UniformQuorum.has_quorum(&members);
    if hq != term::is_atom(has_quorum, "true") {
        return Err(format!("has_quorum?: ours {hq}, Horde {has_quorum}"));
    }
    // Random: Horde's pick must be one ours could make, and both fail alike.
    let alive: Vec<&Member> = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .collect();
    let r = ours(DistributionStrategy::UniformRandom.choose_node(spec, &members, 0));
    match term::as_tuple(random) {
        Some([ok, name, status])
            if term::is_atom(ok, "ok")
                && (!alive.iter().any(|m| &m.name == name) || !term::is_atom(status, "alive")) =>
        {
            return Err(format!("random: Horde chose {random}, not alive for us"));
        }
        Some([ok, _, _]) if term::is_atom(ok, "ok") => {}
        _ if &r != random => return Err(format!("random: ours {r}, Horde {random}")),
        _ => {}
    }
    Ok(())
}

/// Checks every case; panics with the first few differences.
pub fn check_all(cases: &[Term], answers: &[Term]) {
    assert_eq!(cases.len(), answers.len(), "one answer per case");
    let failures: Vec<String> = cases
        .iter()
        .zip(answers)
        .enumerate()
        .filter_map(|(i, (c, a))| check(c, a).err().map(|e| format!("case {i} {c}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Horde; first ones:\n{}",
        failures.len(),
        cases.len(),
        failures[..failures.len().min(5)].join("\n")
    );
}

/// How the answers split, for the test log: `(placed, no_alive_nodes, quorum_not_met)`.
pub fn tally(answers: &[Term]) -> (usize, usize, usize) {
    let mut t = (0, 0, 0);
    for a in answers {
        let parts = term::as_tuple(a).unwrap_or(&[]);
        if let Some(u) = parts.first().and_then(term::as_tuple) {
            if term::is_atom(&u[0], "ok") {
                t.0 += 1;
            } else {
                t.1 += 1;
            }
        }
        if let Some([_, reason]) = parts.get(1).and_then(term::as_tuple) {
            if term::is_atom(reason, "quorum_not_met") {
                t.2 += 1;
            }
        }
    }
    t
}
