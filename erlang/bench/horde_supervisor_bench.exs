# Horde.DynamicSupervisor side of benches/horde_supervisor.rs (our own code;
# it only calls Horde's public API). Run on a node started with Horde on the
# code path:
#   elixir --name a@127.0.0.1 --cookie C -pa <each ebin> horde_supervisor_bench.exs \
#     STARTS FAILOVERS IDLE_N IDLE_INTERVALS SYNC_MS
# (STARTS and FAILOVERS comma-separated counts). Members are this node and
# peer nodes started with :peer; the victim of a failover is a peer killed
# with kill -9. Prints, per case:
#   start N <seconds for N start_child calls from one process on this node>
#   failover K <seconds from kill -9 until every one of its K children runs here>
#     (members listed statically: see failover/2)
#   idle N <bytes on the wire, both ways, per idle sync interval>
Application.ensure_all_started(:horde)

{:module, _, worker_beam, _} =
defmodule BeamPeerBench.Worker do
  use GenServer
  def start_link(arg), do: GenServer.start_link(__MODULE__, arg)
  def init(arg), do: {:ok, arg}
  def handle_call(:ping, _, arg), do: {:reply, :pong, arg}
end

{:module, _, bench_beam, _} =
defmodule BeamPeerBench.HordeSup do
  alias BeamPeerBench.Worker

  def spec(arg), do: %{id: arg, start: {Worker, :start_link, [arg]}}

  def opts(name, sync_ms),
    do: [name: name, strategy: :one_for_one, members: :auto, delta_crdt_options: [sync_interval: sync_ms]]

  # A supervisor owned by a process that outlives the erpc call starting it.
  def start_kept(opts) do
    parent = self()
    spawn(fn ->
      send(parent, {:started, Horde.DynamicSupervisor.start_link(opts)})
      receive do: (:never -> :ok)
    end)
    receive do: ({:started, r} -> r)
  end

  def global(name) do
    %{global_supervised_process_count: n} = GenServer.call(name, :get_telemetry)
    n
  end

  def local(name) do
    %{local_supervised_process_count: n} = GenServer.call(name, :get_telemetry)
    n
  end

  # Polls f until it holds; gives up (raises) after 120 s, so a case that
  # never settles prints no row instead of hanging the bench.
  def wait(f, deadline \\ System.monotonic_time(:millisecond) + 120_000) do
    cond do
      f.() -> :ok
      System.monotonic_time(:millisecond) > deadline -> raise "never settled"
      true ->
        Process.sleep(2)
        wait(f, deadline)
    end
  end

  def members_alive(name, n) do
    wait(fn ->
      m = DeltaCrdt.to_map(:"#{name}.Crdt")
      Enum.count(m, &match?({{:member_node_info, _}, %{status: :alive}}, &1)) >= n
    end)
  end

  def peer(tag) do
    {:ok, pid, node} =
      :peer.start(%{
        name: :"bench_#{tag}_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1]) ++ [~c"-setcookie", Atom.to_charlist(Node.get_cookie())]
      })
    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:horde])
    {:module, _} = :erpc.call(node, :code, :load_binary, [__MODULE__, ~c"bench", :persistent_term.get(:bench_beam)])
    {:module, _} = :erpc.call(node, :code, :load_binary, [Worker, ~c"bench", :persistent_term.get(:bench_worker)])
    {pid, node}
  end

  # `members` is :auto, or :static for the two members listed by name.
  def fresh(sync_ms, members \\ :auto) do
    name = :"Elixir.BenchSup#{System.unique_integer([:positive])}"
    {peer_pid, peer} = peer("m")
    o =
      case members do
        :auto -> opts(name, sync_ms)
        :static -> Keyword.put(opts(name, sync_ms), :members, [{name, node()}, {name, peer}])
      end
    {:ok, _} = :erpc.call(peer, __MODULE__, :start_kept, [o])
    {:ok, _} = start_kept(o)
    members_alive(name, 2)
    {name, peer_pid, peer}
  end

  def start(n, sync_ms) do
    {name, peer_pid, _} = fresh(sync_ms)
    t0 = System.monotonic_time()
    for i <- 1..n, do: {:ok, _} = Horde.DynamicSupervisor.start_child(name, spec(i))
    t = System.monotonic_time() - t0
    IO.puts("start #{n} #{secs(t)}")
    :peer.stop(peer_pid)
    Horde.DynamicSupervisor.stop(name)
  end

  # Static members: with `members: :auto`, Horde 0.10 restarted none of the
  # victim's children here (A kept 191 of 391 for good, members [A]). The
  # NodeListener's `set_members` drops the victim's `{:member_node_info, _}`;
  # when the `:dead` its DOWN wrote reaches the CRDT first, that is dropped
  # too, and `handoff_processes` restarts only children of a member it
  # holds `:dead`. A static list keeps the member, so it stays `:dead`.
  def failover(k, sync_ms) do
    {name, _peer_pid, peer} = fresh(sync_ms, :static)
    # Children until the victim holds k.
    total =
      Enum.reduce_while(Stream.iterate(1, &(&1 + 1)), 0, fn i, _ ->
        {:ok, _} = Horde.DynamicSupervisor.start_child(name, spec(i))
        if :erpc.call(peer, __MODULE__, :local, [name]) >= k, do: {:halt, i}, else: {:cont, i}
      end)
    # This member's CRDT holds every child (as the Rust side waits): a
    # child the victim started after its last sync is lost with it, and
    # which_children (asked of each member) does not show that.
    wait(fn -> global(name) == total end)
    os_pid = :erpc.call(peer, :os, :getpid, [])
    t0 = System.monotonic_time()
    System.cmd("kill", ["-9", to_string(os_pid)])
    wait(fn -> local(name) == total end)
    IO.puts("failover #{k} #{secs(System.monotonic_time() - t0)}")
    Horde.DynamicSupervisor.stop(name)
  end

  def idle(n, intervals, sync_ms) do
    {name, peer_pid, peer} = fresh(sync_ms)
    for i <- 1..n, do: {:ok, _} = Horde.DynamicSupervisor.start_child(name, spec(i))
    wait(fn -> :erpc.call(peer, Horde.DynamicSupervisor, :count_children, [name]).active == n end)
    # Let the last deltas settle.
    Process.sleep(sync_ms * 4)
    b0 = dist_bytes(peer)
    Process.sleep(sync_ms * intervals)
    IO.puts("idle #{n} #{div(dist_bytes(peer) - b0, intervals)}")
    :peer.stop(peer_pid)
    Horde.DynamicSupervisor.stop(name)
  end

  defp dist_bytes(peer) do
    {^peer, port} = List.keyfind(:erlang.system_info(:dist_ctrl), peer, 0)
    {:ok, stats} = :inet.getstat(port, [:recv_oct, :send_oct])
    stats[:recv_oct] + stats[:send_oct]
  end

  defp secs(t), do: System.convert_time_unit(t, :native, :microsecond) / 1.0e6
end

:persistent_term.put(:bench_beam, bench_beam)
:persistent_term.put(:bench_worker, worker_beam)

[starts, failovers, idle_n, intervals, sync_ms] = System.argv()
ints = fn s -> s |> String.split(",", trim: true) |> Enum.map(&String.to_integer/1) end
sync_ms = String.to_integer(sync_ms)
attempt = fn f ->
  try do
    f.()
  rescue
    e -> IO.puts(:stderr, "case failed: #{Exception.message(e)}")
  end
end
for n <- ints.(starts), do: attempt.(fn -> BeamPeerBench.HordeSup.start(n, sync_ms) end)
for k <- ints.(failovers), do: attempt.(fn -> BeamPeerBench.HordeSup.failover(k, sync_ms) end)
for n <- ints.(idle_n), do: attempt.(fn -> BeamPeerBench.HordeSup.idle(n, String.to_integer(intervals), sync_ms) end)
