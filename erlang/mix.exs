# The BEAM side of beam_peer's live tests, as an ordinary mix project, for
# anyone with Hex access:
#
#     cd erlang && mix deps.get && mix compile
#
# It needs Hex: without it `mix deps.get` fails with "Could not find an SCM
# for dependency :horde". Without Hex, build Horde, DeltaCrdt, MerkleMap,
# libring, telemetry and Phoenix.PubSub some other way and point
# BEAM_PEER_HORDE_EBIN at their ebin directories (README, "Live Horde tests
# and the compatibility matrix").
#
# The tests then find Horde and its dependencies under erlang/_build/*/lib
# (or take them from BEAM_PEER_HORDE_EBIN, a colon-separated list of ebin
# directories, and skip when neither is there). Our own modules in src/ are
# compiled here too, but the tests always compile them afresh with erlc.
defmodule BeamPeerPeers.MixProject do
  use Mix.Project

  def project do
    [
      app: :beam_peer_peers,
      version: "0.1.0",
      elixir: "~> 1.11",
      erlc_paths: ["src"],
      elixirc_paths: [],
      deps: deps()
    ]
  end

  def application do
    [extra_applications: [:logger]]
  end

  # The versions the Rust side is written against and tested with
  # (tests/fixtures/crdt/README.md).
  defp deps do
    [
      {:horde, "~> 0.10.0"},
      {:delta_crdt, "~> 0.6.4"},
      {:merkle_map, "~> 0.2.2"},
      {:libring, "~> 1.7"},
      {:libcluster, "~> 3.3"},
      {:phoenix_pubsub, "~> 2.1"}
    ]
  end
end
