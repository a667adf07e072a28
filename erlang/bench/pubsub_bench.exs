# Phoenix.PubSub side of benches/pubsub.rs (our own code; it only calls
# Phoenix.PubSub's public API). Run on a node started with Phoenix.PubSub on
# the code path:
#   elixir --name a@127.0.0.1 --cookie C -pa <each ebin> pubsub_bench.exs SUBSCRIBERS MESSAGES
# Starts two peer nodes with :peer, one PubSub on all three, then prints
#   pubsub fanout <seconds from one broadcast until all SUBSCRIBERS, spread
#                  over the three nodes, have it>
#   pubsub rate <messages per second: MESSAGES broadcasts from this node
#                until one subscriber on a peer has them all>
Application.ensure_all_started(:phoenix_pubsub)

{:module, _, bench_beam, _} =
defmodule BeamPeerBench.PubSub do
  # A PubSub owned by a process that outlives the erpc call starting it.
  def start(name) do
    parent = self()
    spawn(fn ->
      send(parent, {:started, Supervisor.start_link([{Phoenix.PubSub, name: name}], strategy: :one_for_one)})
      receive do: (:never -> :ok)
    end)
    receive do: ({:started, r} -> r)
  end

  # n subscribers of topic here; the last one to get a message tells report_to
  # {:all, node, os time in microseconds}. Returns once all n subscribed.
  def subscribers(name, topic, n, report_to) do
    counter = :counters.new(1, [:atomics])
    parent = self()
    for _ <- 1..n do
      spawn(fn ->
        :ok = Phoenix.PubSub.subscribe(name, topic)
        send(parent, :subscribed)
        receive do
          _ ->
            :counters.add(counter, 1, 1)
            if :counters.get(counter, 1) == n,
              do: send(report_to, {:all, node(), System.os_time(:microsecond)})
        end
      end)
    end
    for _ <- 1..n, do: (receive do: (:subscribed -> :ok))
    :ok
  end

  # One subscriber of topic that tells report_to {:got, m, os time} after m messages.
  def counter(name, topic, m, report_to) do
    parent = self()
    spawn(fn ->
      :ok = Phoenix.PubSub.subscribe(name, topic)
      send(parent, :subscribed)
      for _ <- 1..m, do: (receive do: (_ -> :ok))
      send(report_to, {:got, m, System.os_time(:microsecond)})
    end)
    receive do: (:subscribed -> :ok)
  end
end

start_peer = fn ->
  {:ok, pid, node} =
    :peer.start_link(%{
      name: :"bench_ps_peer_#{System.unique_integer([:positive])}",
      host: ~c"127.0.0.1",
      longnames: true,
      args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1]) ++ [~c"-setcookie", Atom.to_charlist(Node.get_cookie())]
    })
  {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:phoenix_pubsub])
  {:module, _} = :erpc.call(node, :code, :load_binary, [BeamPeerBench.PubSub, ~c"bench", bench_beam])
  {pid, node}
end

[subs, msgs] = Enum.map(System.argv(), &String.to_integer/1)
peers = [start_peer.(), start_peer.()]
nodes = [node() | Enum.map(peers, &elem(&1, 1))]
name = :"Elixir.BenchPubSub#{System.unique_integer([:positive])}"
for n <- nodes, do: {:ok, _} = :erpc.call(n, BeamPeerBench.PubSub, :start, [name])
# Every node's adapter worker is in the pg group before anything is timed.
wait = fn wait, f -> if f.(), do: :ok, else: (Process.sleep(5); wait.(wait, f)) end
adapter = :"#{name}.Adapter"
wait.(wait, fn -> length(:pg.get_members(Phoenix.PubSub, adapter)) == 3 end)

share = div(subs, 3)
counts = [subs - 2 * share, share, share]
for {n, c} <- Enum.zip(nodes, counts), do: :ok = :erpc.call(n, BeamPeerBench.PubSub, :subscribers, [name, "fanout", c, self()])
t0 = System.os_time(:microsecond)
:ok = Phoenix.PubSub.broadcast(name, "fanout", :go)
last = Enum.reduce(nodes, 0, fn _, acc -> receive do: ({:all, _n, t} -> max(acc, t)) end)
IO.puts("pubsub fanout #{(last - t0) / 1.0e6}")

[{_, peer1} | _] = peers
:ok = :erpc.call(peer1, BeamPeerBench.PubSub, :counter, [name, "rate", msgs, self()])
t0 = System.os_time(:microsecond)
for i <- 1..msgs, do: Phoenix.PubSub.broadcast(name, "rate", {:m, i})
t1 = receive do: ({:got, _, t} -> t)
IO.puts("pubsub rate #{msgs / ((t1 - t0) / 1.0e6)}")
for {pid, _} <- peers, do: :peer.stop(pid)
