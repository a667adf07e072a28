%% Measurements run from a BEAM node against a target node that runs `echo` and
%% `sink` (a BEAM node with beam_peer_echo, or a Rust node). Results are returned
%% as a map so the caller can print them side by side.
-module(beam_peer_bench).
-export([run/4, run/6, terms/2]).

run(Target, Messages, Calls, BigRounds) ->
    run(Target, Messages, Calls, BigRounds, 0, 0).

%% With Callers > 0, also the many-callers measurement: Callers processes,
%% caller I calling `echo_I` on Target CallsEach times in a row, all at once.
run(Target, Messages, Calls, BigRounds, Callers, CallsEach) ->
    true = net_kernel:connect_node(Target),
    %% warm up
    _ = gen_server:call({echo, Target}, warm),
    %% The stream is bracketed by two lines so the caller, which started the
    %% target, can read the target's CPU time around it.
    io:format("stream_start~n"),
    Cpu0 = cpu_seconds(),
    Throughput = throughput(Target, Messages),
    SenderCpu = cpu_seconds() - Cpu0,
    io:format("stream_end~n"),
    {P50, P99} = calls(Target, Calls),
    Big = big(Target, BigRounds),
    {ManyRate, ManyP99} = many(Target, Callers, CallsEach),
    #{msgs_per_sec => Throughput, call_p50_us => P50, call_p99_us => P99,
      big_rtt_ms => Big, sender_cpu_ns => SenderCpu * 1.0e9 / max(1, Messages),
      many_calls_per_sec => ManyRate, many_p99_us => ManyP99}.

%% Callers processes at once, each doing CallsEach gen_server:calls in a row
%% to its own server: calls per second over all of them, and the p99 of
%% every call's round trip (us).
many(_, 0, _) -> {0, 0};
many(Target, Callers, CallsEach) ->
    Self = self(),
    Servers = [{list_to_atom("echo_" ++ integer_to_list(I)), Target}
               || I <- lists:seq(1, Callers)],
    %% Each server answers once before the clock starts.
    [{x, 0} = gen_server:call(S, {x, 0}) || S <- Servers],
    T0 = erlang:monotonic_time(microsecond),
    [spawn_link(fun() -> Self ! {done, caller(S, CallsEach, [])} end) || S <- Servers],
    Times = lists:append([receive {done, Ts} -> Ts end || _ <- Servers]),
    T1 = erlang:monotonic_time(microsecond),
    Sorted = lists:sort(Times),
    N = length(Sorted),
    {N * 1000000 / max(1, T1 - T0), lists:nth(max(1, (N * 99) div 100), Sorted) / 1000}.

caller(_, 0, Acc) -> Acc;
caller(Server, I, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    {x, I} = gen_server:call(Server, {x, I}),
    caller(Server, I - 1, [erlang:monotonic_time(nanosecond) - T0 | Acc]).

%% CPU time (user and system, every thread) this OS process has used, from
%% /proc/self/stat in clock ticks of 1/100 s; 0 where there is no /proc.
cpu_seconds() ->
    case file:read_file("/proc/self/stat") of
        {ok, Stat} ->
            %% The command name (field 2) is in parentheses and may hold
            %% spaces; utime and stime are the 12th and 13th fields after it.
            [_, Rest] = string:split(Stat, ")", trailing),
            Fields = string:lexemes(Rest, " "),
            Ticks = binary_to_integer(lists:nth(12, Fields))
                + binary_to_integer(lists:nth(13, Fields)),
            Ticks / 100;
        _ ->
            0
    end.

throughput(Target, N) ->
    Sink = {sink, Target},
    Sink ! {report, self()},
    receive {count, _} -> ok end,
    T0 = erlang:monotonic_time(microsecond),
    send_n(Sink, N),
    Sink ! {report, self()},
    receive {count, N} -> ok end,
    T1 = erlang:monotonic_time(microsecond),
    N * 1000000 / max(1, T1 - T0).

send_n(_, 0) -> ok;
send_n(Sink, I) -> Sink ! {m, I}, send_n(Sink, I - 1).

calls(Target, N) ->
    Echo = {echo, Target},
    Times = lists:sort([begin
                            T0 = erlang:monotonic_time(nanosecond),
                            {x, I} = gen_server:call(Echo, {x, I}),
                            erlang:monotonic_time(nanosecond) - T0
                        end || I <- lists:seq(1, N)]),
    {lists:nth(max(1, N div 2), Times) / 1000,
     lists:nth(max(1, (N * 99) div 100), Times) / 1000}.

big(Target, Rounds) ->
    Bin = crypto:strong_rand_bytes(10 * 1024 * 1024),
    Echo = {echo, Target},
    %% One uncounted round first: the first 10 MB through a fresh connection
    %% pays for buffers on both sides.
    Bin = gen_server:call(Echo, Bin, 60000),
    Times = lists:sort([begin
                            T0 = erlang:monotonic_time(microsecond),
                            Bin = gen_server:call(Echo, Bin, 60000),
                            erlang:monotonic_time(microsecond) - T0
                        end || _ <- lists:seq(1, Rounds)]),
    %% The median, as the Rust driver takes it: the middle of an odd count.
    lists:nth(max(1, (Rounds + 1) div 2), Times) / 1000.

%% term_to_binary / binary_to_term / phash2 over a corpus file written by
%% benches/terms.rs, compiled code (not erl_eval) so the BEAM runs at full speed.
%% Prints "EncodeMB/s DecodeMB/s Phash2Terms/s".
terms(Path, Rounds) ->
    {ok, B} = file:read_file(Path),
    Ts = binary_to_term(B),
    Enc = [term_to_binary(T) || T <- Ts],
    Bytes = lists:sum([byte_size(E) || E <- Enc]),
    E = loop(fun() -> encode_all(Ts) end, Rounds),
    D = loop(fun() -> decode_all(Enc) end, Rounds),
    H = loop(fun() -> hash_all(Ts) end, Rounds),
    MB = Bytes * Rounds / 1.0e6,
    io:format("~f ~f ~f~n", [MB / (E / 1.0e6), MB / (D / 1.0e6),
                             length(Ts) * Rounds / (H / 1.0e6)]).

loop(F, Rounds) ->
    {Us, _} = timer:tc(fun() -> repeat(F, Rounds) end),
    max(1, Us).

repeat(_, 0) -> ok;
repeat(F, N) -> F(), repeat(F, N - 1).

%% Each loop folds its results into an accumulator so no work can be dropped.
encode_all(Ts) -> encode_all(Ts, 0).
encode_all([], Acc) -> Acc;
encode_all([T | Ts], Acc) -> encode_all(Ts, Acc + byte_size(term_to_binary(T))).

decode_all(Bs) -> decode_all(Bs, 0).
decode_all([], Acc) -> Acc;
decode_all([B | Bs], Acc) ->
    case binary_to_term(B) of
        X when is_integer(X) -> decode_all(Bs, Acc + 1);
        _ -> decode_all(Bs, Acc)
    end.

hash_all(Ts) -> hash_all(Ts, 0).
hash_all([], Acc) -> Acc;
hash_all([T | Ts], Acc) -> hash_all(Ts, Acc bxor erlang:phash2(T)).
