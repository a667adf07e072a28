%% A child that only a BEAM node can run, for the Rust supervisor member's
%% BEAM-hosted children (tests/supervisor_beam_child.rs). start_link(Arg)
%% starts a gen_server that traps exits (so only its parent can stop it:
%% the test sees a stop go through the parent), answers ping with
%% {pong, Arg, node()}; crash stops it with reason crashed. Its terminate
%% reason goes to the process registered as beam_peer_sup_watch, if any.
-module(beam_peer_sup_child).
-behaviour(gen_server).
-export([start_link/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

start_link(Arg) -> gen_server:start_link(?MODULE, Arg, []).

init(Arg) ->
    process_flag(trap_exit, true),
    {ok, Arg}.

handle_call(ping, _From, Arg) -> {reply, {pong, Arg, node()}, Arg};
handle_call(crash, _From, Arg) -> {stop, crashed, ok, Arg}.

handle_cast(_, Arg) -> {noreply, Arg}.
handle_info(_, Arg) -> {noreply, Arg}.

terminate(Reason, Arg) ->
    case whereis(beam_peer_sup_watch) of
        undefined -> ok;
        Watch -> Watch ! {terminated, Arg, Reason}
    end.
