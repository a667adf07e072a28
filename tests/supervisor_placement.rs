//! Placement parity without a BEAM: replays
//! `tests/fixtures/horde/placement_parity.etf`, 2,000 seeded random child
//! specs and member lists (plus 40 around a ring point two members share)
//! with the answers the real Horde 0.10 gave for each
//! (`Horde.UniformDistribution.choose_node/2`,
//! `Horde.UniformQuorumDistribution.choose_node/2` and `has_quorum?/1`,
//! `Horde.UniformRandomDistribution.choose_node/2`). Recorded by
//! `supervisor_live`'s ignored `regenerate_placement_fixture`.

mod placement;

use beam_peer::term::{self, etf};

#[test]
fn placement_matches_the_recorded_horde_answers() {
    let bytes = include_bytes!("fixtures/horde/placement_parity.etf");
    let fixture = etf::from_binary(bytes).expect("the fixture decodes");
    let [meta, cases, answers] = term::as_tuple(&fixture).expect("{meta, cases, answers}") else {
        panic!("fixture of unexpected shape");
    };
    let cases = term::as_list(cases).expect("cases");
    let answers = term::as_list(answers).expect("answers");
    assert_eq!(cases.len(), 2_040, "{meta}");
    placement::check_all(&cases, &answers);
    let (placed, no_alive, no_quorum) = placement::tally(&answers);
    println!(
        "{} recorded cases agree ({meta}): uniform placed {placed}, no alive member {no_alive}; \
         quorum not met {no_quorum}",
        cases.len()
    );
}
