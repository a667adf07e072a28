%% A test peer's control server: the Rust tests start a real `erl` (or `elixir`)
%% node with this module loaded and drive it with gen_server calls from a Rust node:
%%   {eval, String}                -> the value of the Erlang expressions in String
%%   {eval_elixir, Code, Bindings} -> {ok, Value} of the Elixir code (a binary)
%%                                    evaluated with Bindings ([{Var, Term}]), or
%%                                    {error, Text} with the formatted exception
%% It prints "ready" on stdout once registered, so the test knows the node is up.
%%
%% Helpers for evaluated code (each call is evaluated in a fresh process that
%% ends right after it answers):
%%   keep(Fun)       runs Fun in a process that stays alive afterwards, so
%%                   whatever Fun start_links stays linked to a living parent;
%%   collector()     a process that keeps every message it receives (usable as
%%                   a tracer or a callback sink); collected(Pid) returns them
%%                   in arrival order and forgets them.
-module(beam_peer_ctl).
-behaviour(gen_server).
-export([start/0, eval/1, eval_elixir/2, keep/1, collector/0, collected/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

start() ->
    {ok, _} = gen_server:start({local, ctl}, ?MODULE, [], []),
    io:format("ready ~s~n", [node()]).

eval(String) ->
    {ok, Tokens, _} = erl_scan:string(String),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
    Value.

%% Needs Elixir's modules on the code path (the node was started by `elixir`).
eval_elixir(Code, Bindings) ->
    {Value, _} = 'Elixir.Code':eval_string(Code, Bindings),
    Value.

keep(Fun) ->
    Caller = self(),
    Tag = make_ref(),
    spawn(fun() ->
                  Result = try {ok, Fun()}
                           catch Class:Reason:Stack -> {raised, Class, Reason, Stack}
                           end,
                  Caller ! {Tag, Result},
                  receive stop_keeping -> ok end
          end),
    receive
        {Tag, {ok, Value}} -> Value;
        {Tag, {raised, Class, Reason, Stack}} -> erlang:raise(Class, Reason, Stack)
    end.

collector() ->
    spawn(fun() -> collect_loop([]) end).

collected(Pid) ->
    Tag = make_ref(),
    Pid ! {'$beam_peer_collected', self(), Tag},
    receive {Tag, Messages} -> Messages after 10000 -> erlang:error(collector_timeout) end.

collect_loop(Acc) ->
    receive
        {'$beam_peer_collected', From, Tag} ->
            From ! {Tag, lists:reverse(Acc)},
            collect_loop([]);
        Msg ->
            collect_loop([Msg | Acc])
    end.

init([]) -> {ok, #{}}.

handle_call({eval, String}, From, State) ->
    %% Evaluate in a fresh process so a blocking expression never blocks ctl.
    spawn(fun() ->
                  Reply = try {ok, eval(String)}
                          catch Class:Reason:Stack -> {Class, Reason, Stack}
                          end,
                  gen_server:reply(From, Reply)
          end),
    {noreply, State};
handle_call({eval_elixir, Code, Bindings}, From, State) ->
    spawn(fun() ->
                  Reply = try {ok, eval_elixir(Code, Bindings)}
                          catch Class:Reason:Stack -> {error, format_exception(Class, Reason, Stack)}
                          end,
                  gen_server:reply(From, Reply)
          end),
    {noreply, State};
handle_call(Other, _From, State) ->
    {reply, {unknown, Other}, State}.

handle_cast(_Msg, State) -> {noreply, State}.
handle_info(_Msg, State) -> {noreply, State}.

format_exception(Class, Reason, Stack) ->
    try 'Elixir.Exception':format(Class, Reason, Stack)
    catch _:_ -> iolist_to_binary(io_lib:format("~p:~p ~p", [Class, Reason, Stack]))
    end.
