%% The BEAM twin of beam_peer's demo servers, for side-by-side benchmarks:
%% `echo` (gen_server replying with the request) and `sink` (counts {m, _};
%% {report, Pid} gets {count, N} and resets N), and `echo_1`..`echo_N` for the
%% many-callers measurement (start_many/1).
-module(beam_peer_echo).
-behaviour(gen_server).
-export([start/0, start_many/1, sink_loop/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

start() ->
    {ok, _} = gen_server:start({local, echo}, ?MODULE, [], []),
    register(sink, spawn(?MODULE, sink_loop, [0])),
    ok.

%% `echo_1` .. `echo_N`, each its own gen_server.
start_many(N) ->
    [{ok, _} = gen_server:start({local, list_to_atom("echo_" ++ integer_to_list(I))},
                                ?MODULE, [], [])
     || I <- lists:seq(1, N)],
    ok.

init([]) -> {ok, nostate}.
handle_call(Request, _From, State) -> {reply, Request, State}.
handle_cast(_, State) -> {noreply, State}.
handle_info(_, State) -> {noreply, State}.

sink_loop(N) ->
    receive
        {m, _} -> sink_loop(N + 1);
        {report, Pid} -> Pid ! {count, N}, sink_loop(0);
        _ -> sink_loop(N)
    end.
