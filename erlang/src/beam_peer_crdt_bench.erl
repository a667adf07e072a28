%% The BEAM side of benches/crdt.rs: three DeltaCrdt replicas on three BEAM
%% nodes do what the Rust side does, measured the same way.
%%
%% Only DeltaCrdt's public API is used (start_link/2, set_neighbours/2, put/4,
%% to_map/2, the on_diffs option) plus the `sync` message its process handles
%% (what its own timer sends it). A driver node (not one of the three) runs
%% main/4 (as a hidden node) and reaches the three nodes by rpc, so its own
%% traffic never shows in the bytes, which are the send_oct of the dist
%% sockets between the three.
%%
%% Per key count N, two clusters, one after the other:
%% - periodic (sync_interval = SyncMs): N puts on the first replica before
%%   the replicas know each other (time to apply them), then neighbours are
%%   set; time until the other two have every key, and the CPU time the
%%   three nodes used meanwhile (erlang:statistics(runtime));
%% - manual (sync_interval of an hour; the driver sends `sync`): the same
%%   writes, neighbours set, `sync` to the writer until converged; then
%%   IdleRounds times `sync` to all three (one idle interval: six rounds),
%%   bytes each until the wire is quiet; then one key changed on the writer,
%%   `sync` to it, bytes until both others have it and the wire is quiet.
-module(beam_peer_crdt_bench).
-export([main/4, node_ready/0, start_replica/2, stop_replica/1,
         set_neighbours/2, added/1, bytes/1, digest/1, write/2, put_one/3, idle/1,
         cpu_ms/0,
         on_diffs/2, key/1, value/1]).

-define(CRDT, 'Elixir.DeltaCrdt').
-define(MANUAL_INTERVAL, 3600000).
-define(QUIET_MS, 300).
-define(LIMIT_MS, 900000).

%% ---- on each of the three nodes -------------------------------------------

node_ready() ->
    {ok, _} = application:ensure_all_started(delta_crdt),
    io:format("ready~n").

%% The same keys and values as benches/crdt.rs builds.
key(I) -> {key, <<"name-", (integer_to_binary(I))/binary>>}.
value(I) -> {<<"value-", (integer_to_binary(I))/binary>>, I}.

%% Starts a replica registered as Name, owned by a process that outlives the
%% rpc call (start_link links to its caller).
start_replica(Name, SyncMs) ->
    Counter = counters:new(1, [write_concurrency]),
    Caller = self(),
    Owner = spawn(fun() ->
        process_flag(trap_exit, true),
        {ok, Pid} = ?CRDT:start_link('Elixir.DeltaCrdt.AWLWWMap',
                                     [{name, Name}, {sync_interval, SyncMs},
                                      {max_sync_size, infinite},
                                      {on_diffs, {?MODULE, on_diffs, [Counter]}}]),
        Caller ! {started, self(), Pid},
        receive
            {stop, From} ->
                %% Killed, not shut down: a replica still working through
                %% a mailbox of sync messages would see a shutdown only
                %% after all of them, and stopping is not measured.
                exit(Pid, kill),
                receive {'EXIT', Pid, _} -> ok end,
                From ! {stopped, self()}
        end
    end),
    persistent_term:put({?MODULE, Name}, {Counter, Owner}),
    receive {started, Owner, Pid} -> Pid after 30000 -> error(start_timeout) end.

stop_replica(Name) ->
    {_, Owner} = persistent_term:get({?MODULE, Name}),
    Owner ! {stop, self()},
    receive {stopped, Owner} -> ok after 30000 -> error(stop_timeout) end,
    persistent_term:erase({?MODULE, Name}),
    ok.

set_neighbours(Name, Neighbours) ->
    ?CRDT:set_neighbours(Name, Neighbours).

%% on_diffs callback (runs in the DeltaCrdt process): counts added keys.
on_diffs(Counter, Diffs) ->
    counters:add(Counter, 1, length([x || {add, _, _} <- Diffs])).

%% Keys this replica has reported added so far.
added(Name) ->
    {Counter, _} = persistent_term:get({?MODULE, Name}),
    counters:get(Counter, 1).

cpu_ms() ->
    {Total, _} = erlang:statistics(runtime),
    Total.

%% Bytes this node has written on its dist sockets to Peers.
bytes(Peers) ->
    lists:sum([send_oct(Port) || {N, Port} <- erlang:system_info(dist_ctrl),
                                 lists:member(N, Peers), is_port(Port)]).

send_oct(Port) ->
    case inet:getstat(Port, [send_oct]) of
        {ok, [{send_oct, B}]} -> B;
        _ -> 0
    end.

%% True when the replica has nothing queued and is not running: a round
%% can be computing for a while without a byte on the wire.
idle(Name) ->
    case whereis(Name) of
        undefined -> true;
        Pid -> process_info(Pid, [message_queue_len, status]) =:=
                   [{message_queue_len, 0}, {status, waiting}]
    end.

%% Size and hash of the whole map, to check that replicas agree.
digest(Name) ->
    M = ?CRDT:to_map(Name, infinity),
    {map_size(M), erlang:phash2(M)}.

%% N puts on the local replica; microseconds until the last returned.
write(Name, N) ->
    T0 = erlang:monotonic_time(microsecond),
    lists:foreach(fun(I) -> ?CRDT:put(Name, key(I), value(I), infinity) end,
                  lists:seq(1, N)),
    erlang:monotonic_time(microsecond) - T0.

put_one(Name, I, V) ->
    ?CRDT:put(Name, key(I), V, infinity),
    ok.

%% ---- on the driver node ----------------------------------------------------

main(Nodes, Counts, SyncMs, IdleRounds) ->
    [pong = net_adm:ping(N) || N <- Nodes],
    %% The three connect to each other as DeltaCrdt sends; connect them
    %% first so that no handshake falls inside a measurement.
    [true = rpc:call(X, net_kernel, connect_node, [Y]) || X <- Nodes, Y <- Nodes, X < Y],
    lists:foreach(fun(N) -> run(Nodes, N, SyncMs, IdleRounds) end, Counts).

run([A, B, C] = Nodes, N, SyncMs, IdleRounds) ->
    %% Periodic cluster: convergence time.
    P = list_to_atom("Elixir.BenchCrdt.P" ++ integer_to_list(N)),
    start_cluster(Nodes, P, SyncMs),
    T0 = now_us(),
    _ = call(A, write, [P, N]),
    Tw = now_us(),
    Cpu0 = cluster_cpu_ms(Nodes),
    set_neighbours_all(Nodes, P),
    ok = wait_added(P, [B, C], N, none),
    Tc = now_us(),
    Cpu = cluster_cpu_ms(Nodes) - Cpu0,
    io:format(standard_error, "crdt_beam_periodic n=~b write_ms=~.1f converge_ms=~.1f cpu_ms=~b~n",
              [N, (Tw - T0) / 1000, (Tc - Tw) / 1000, Cpu]),
    same_everywhere(Nodes, P, N),
    stop_cluster(Nodes, P),
    wait_quiet(Nodes, none),
    %% Manual cluster: bytes.
    M = list_to_atom("Elixir.BenchCrdt.M" ++ integer_to_list(N)),
    start_cluster(Nodes, M, ?MANUAL_INTERVAL),
    _ = call(A, write, [M, N]),
    set_neighbours_all(Nodes, M),
    ok = wait_added(M, [B, C], N, {A, SyncMs}),
    wait_quiet(Nodes, M),
    same_everywhere(Nodes, M, N),
    Idle = [begin
                B0 = cluster_bytes(Nodes),
                [{M, X} ! sync || X <- Nodes],
                wait_quiet(Nodes, M),
                cluster_bytes(Nodes) - B0
            end || _ <- lists:seq(1, IdleRounds)],
    Changed = N div 2 + 1,
    [AddedB, AddedC] = [call(X, added, [M]) || X <- [B, C]],
    B1 = cluster_bytes(Nodes),
    T1 = now_us(),
    ok = call(A, put_one, [M, Changed, {<<"changed">>, Changed}]),
    ok = wait_added_each(M, [{B, AddedB + 1}, {C, AddedC + 1}], {A, SyncMs}, now_us()),
    T2 = now_us(),
    wait_quiet(Nodes, M),
    OneKey = cluster_bytes(Nodes) - B1,
    same_everywhere(Nodes, M, N),
    stop_cluster(Nodes, M),
    wait_quiet(Nodes, none),
    io:format("crdt_beam n=~b write_ms=~.1f converge_ms=~.1f cpu_ms=~b idle_bytes=~b "
              "idle_min=~b idle_max=~b one_key_bytes=~b one_key_ms=~.1f~n",
              [N, (Tw - T0) / 1000, (Tc - Tw) / 1000, Cpu,
               lists:sum(Idle) div length(Idle), lists:min(Idle), lists:max(Idle),
               OneKey, (T2 - T1) / 1000]).

now_us() -> erlang:monotonic_time(microsecond).

call(Node, F, Args) ->
    case rpc:call(Node, ?MODULE, F, Args, infinity) of
        {badrpc, R} -> error({badrpc, Node, F, R});
        V -> V
    end.

start_cluster(Nodes, Name, SyncMs) ->
    [call(X, start_replica, [Name, SyncMs]) || X <- Nodes],
    ok.

%% Each replica gets the two others as neighbours (and starts a round).
set_neighbours_all(Nodes, Name) ->
    [call(X, set_neighbours, [Name, [{Name, Y} || Y <- Nodes, Y =/= X]]) || X <- Nodes],
    ok.

stop_cluster(Nodes, Name) ->
    [call(X, stop_replica, [Name]) || X <- Nodes],
    ok.

same_everywhere(Nodes, Name, N) ->
    [{N, H} | Rest] = [call(X, digest, [Name]) || X <- Nodes],
    [] = [D || D <- Rest, D =/= {N, H}],
    ok.

%% Until every one of Nodes has reported Target keys added. With {Writer,
%% Every}, sends `sync` to the writer's replica at once and every Every ms
%% until then (what its timer would do).
wait_added(Name, Nodes, Target, Kick) ->
    wait_added_each(Name, [{X, Target} || X <- Nodes], Kick, now_us()).

wait_added_each(Name, Targets, Kick, Since) ->
    Kick1 = kick(Name, Kick),
    case [X || {X, T} <- Targets, call(X, added, [Name]) < T] of
        [] -> ok;
        _ ->
            case now_us() - Since > ?LIMIT_MS * 1000 of
                true -> error({not_converged, Name});
                false ->
                    timer:sleep(5),
                    wait_added_each(Name, Targets, Kick1, Since)
            end
    end.

kick(_, none) -> none;
kick(Name, {Writer, Every}) -> kick(Name, {Writer, Every, now_us()});
kick(Name, {Writer, Every, Due}) ->
    case now_us() >= Due of
        true -> {Name, Writer} ! sync, {Writer, Every, now_us() + Every * 1000};
        false -> {Writer, Every, Due}
    end.

%% CPU milliseconds the three nodes' runtime threads have used.
cluster_cpu_ms(Nodes) ->
    lists:sum([call(X, cpu_ms, []) || X <- Nodes]).

cluster_bytes(Nodes) ->
    lists:sum([call(X, bytes, [Nodes -- [X]]) || X <- Nodes]).

%% Until no byte has crossed between the three for QUIET_MS and the
%% replicas named Name (none: no replica) are idle on every node.
wait_quiet(Nodes, Name) -> wait_quiet(Nodes, Name, cluster_bytes(Nodes), now_us()).

wait_quiet(Nodes, Name, Last, Since) ->
    timer:sleep(20),
    Idle = Name =:= none orelse lists:all(fun(X) -> call(X, idle, [Name]) end, Nodes),
    case cluster_bytes(Nodes) of
        Last when Idle ->
            case now_us() - Since >= ?QUIET_MS * 1000 of
                true -> ok;
                false -> wait_quiet(Nodes, Name, Last, Since)
            end;
        Now -> wait_quiet(Nodes, Name, Now, now_us())
    end.
