%% A test peer's control server: the Rust tests start a real `erl` node with this
%% module loaded and drive it with gen_server calls from a Rust node:
%%   {eval, String}  -> the value of the Erlang expressions in String
%% It prints "ready" on stdout once registered, so the test knows the node is up.
-module(beam_peer_ctl).
-behaviour(gen_server).
-export([start/0, eval/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

start() ->
    {ok, _} = gen_server:start({local, ctl}, ?MODULE, [], []),
    io:format("ready ~s~n", [node()]).

eval(String) ->
    {ok, Tokens, _} = erl_scan:string(String),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
    Value.

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
handle_call(Other, _From, State) ->
    {reply, {unknown, Other}, State}.

handle_cast(_Msg, State) -> {noreply, State}.
handle_info(_Msg, State) -> {noreply, State}.
