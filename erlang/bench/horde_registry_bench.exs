# Horde.Registry side of benches/horde_registry.rs (our own code; it only
# calls Horde's public API). Run on a node started with Horde on the code path:
#   elixir --name a@127.0.0.1 --cookie C -pa <each ebin> horde_registry_bench.exs N...
# For each N: a fresh registry on this node and on a peer node started with
# :peer, one process registers N keys here; prints
#   horde N <seconds to register> <seconds until all N are visible on the peer>
Application.ensure_all_started(:horde)

{:module, _, bench_beam, _} =
defmodule BeamPeerBench.HordeRegistry do
  def run(peer, n) do
    name = :"Elixir.BenchReg#{n}_#{System.unique_integer([:positive])}"
    opts = [name: name, keys: :unique, members: :auto]
    {:ok, _} = :erpc.call(peer, __MODULE__, :start_kept, [opts])
    {:ok, _} = start_kept(opts)
    wait(fn -> length(Horde.Cluster.members(name)) == 2 end)
    parent = self()

    holder =
      spawn(fn ->
        t0 = System.monotonic_time()
        for i <- 1..n, do: {:ok, _} = Horde.Registry.register(name, "key-#{i}", i)
        send(parent, {:registered, System.monotonic_time() - t0})
        receive do: (:stop -> :ok)
      end)

    t0 = System.monotonic_time()
    registered = receive do: ({:registered, t} -> t)
    wait(fn -> :erpc.call(peer, Horde.Registry, :count, [name]) >= n end)
    visible = System.monotonic_time() - t0
    send(holder, :stop)
    s = fn t -> System.convert_time_unit(t, :native, :microsecond) / 1.0e6 end
    IO.puts("horde #{n} #{s.(registered)} #{s.(visible)}")
  end

  # A registry owned by a process that outlives the erpc call starting it.
  def start_kept(opts) do
    parent = self()
    spawn(fn ->
      send(parent, {:started, Horde.Registry.start_link(opts)})
      receive do: (:never -> :ok)
    end)
    receive do: ({:started, r} -> r)
  end

  defp wait(f) do
    if f.() do
      :ok
    else
      Process.sleep(5)
      wait(f)
    end
  end
end

{:ok, peer_pid, peer} =
  :peer.start_link(%{
    name: :"bench_peer_#{System.unique_integer([:positive])}",
    host: ~c"127.0.0.1",
    longnames: true,
    args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1]) ++ [~c"-setcookie", Atom.to_charlist(Node.get_cookie())]
  })

{:ok, _} = :erpc.call(peer, Application, :ensure_all_started, [:horde])
{:module, _} =
  :erpc.call(peer, :code, :load_binary, [BeamPeerBench.HordeRegistry, ~c"bench", bench_beam])

for arg <- System.argv(), do: BeamPeerBench.HordeRegistry.run(peer, String.to_integer(arg))
:peer.stop(peer_pid)
