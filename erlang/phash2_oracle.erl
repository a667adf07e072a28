%% Oracle for tests/phash2_oracle.rs: computes erlang:phash2/1,2 and
%% term_to_binary/1 for terms sent by the Rust test.
%%
%% Started as `erl -noinput -s phash2_oracle main TcpPort`: it connects to
%% the test on 127.0.0.1:TcpPort and serves requests framed {packet, 4}
%% until the socket closes, then halts. (A TCP socket rather than stdin:
%% under -noinput the VM's own stdin driver still competes for fd 0.)
%%
%% Requests (the first byte is the operation):
%%   <<0, Count:32, Items/binary>>, each item <<Mode:8, Len:32, Etf:Len/binary>>
%%     Mode 0: hash and re-encode; Mode 1: hash only (huge or deep terms).
%%     Reply: one record per item, in order:
%%       <<0, Phash2_1:32, [phash2(T, R):32 for R in ranges()],
%%         Len1:32, term_to_binary(T):Len1/binary,
%%         Len2:32, term_to_binary(T, [{minor_version, 2}]):Len2/binary>>
%%       or <<1, MsgLen:32, Msg/binary>> when binary_to_term/1 fails.
%%   <<1>>: terms built natively in this VM (local pids, refs, ports, real
%%     funs, sub-binaries with bit offsets...).
%%     Reply: records <<Len:32, Etf:Len/binary, Full:32, Phash2_1:32>>.
-module(phash2_oracle).
-export([main/1]).

ranges() ->
    [1, 2, 7, 1000, 1 bsl 27, (1 bsl 32) - 1, 1 bsl 32].

main([TcpPort]) ->
    Port = list_to_integer(atom_to_list(TcpPort)),
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, Port,
                                 [binary, {packet, 4}, {active, false}, {nodelay, true}]),
    loop(Sock).

loop(Sock) ->
    case gen_tcp:recv(Sock, 0) of
        {ok, Request} ->
            ok = gen_tcp:send(Sock, handle(Request)),
            loop(Sock);
        {error, _} ->
            erlang:halt(0)
    end.

handle(<<0, _Count:32, Items/binary>>) ->
    batch(Items, []);
handle(<<1>>) ->
    [sample(T) || T <- native_terms()].

batch(<<>>, Acc) ->
    lists:reverse(Acc);
batch(<<Mode:8, Len:32, Etf:Len/binary, Rest/binary>>, Acc) ->
    batch(Rest, [one(Mode, Etf) | Acc]).

one(Mode, Etf) ->
    try binary_to_term(Etf) of
        T ->
            Hashes = << <<(erlang:phash2(T, R)):32>> || R <- ranges() >>,
            {Re1, Re2} = case Mode of
                             0 -> {term_to_binary(T),
                                   term_to_binary(T, [{minor_version, 2}])};
                             _ -> {<<>>, <<>>}
                         end,
            [<<0, (erlang:phash2(T)):32>>, Hashes,
             <<(byte_size(Re1)):32>>, Re1, <<(byte_size(Re2)):32>>, Re2]
    catch
        Class:Reason ->
            Msg = iolist_to_binary(io_lib:format("~p:~p", [Class, Reason])),
            <<1, (byte_size(Msg)):32, Msg/binary>>
    end.

sample(T) ->
    Etf = term_to_binary(T, [{minor_version, 2}]),
    <<(byte_size(Etf)):32, Etf/binary,
      (erlang:phash2(T, 1 bsl 32)):32, (erlang:phash2(T)):32>>.

%% Values only a running VM makes; runtime values keep the compiler from
%% folding closures into constants.
native_terms() ->
    Self = self(),
    Ref = make_ref(),
    N = erlang:unique_integer([positive]),
    Str = integer_to_list(N),
    Closure = fun(Z) -> {N, Str, Self, Z} end,
    Closure0 = fun() -> Ref end,
    Plain = fun(A) -> A end,
    <<_:3, Unaligned/bitstring>> = <<1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13>>,
    <<_:5, Unaligned2/binary>> = <<255, 254, 253, 252, 251, 250, 249, 248, 7:5>>,
    Big = maps:from_list([{I, integer_to_binary(I)} || I <- lists:seq(1, 100)]),
    Mixed = maps:from_list([{{k, I}, [I]} || I <- lists:seq(1, 40)]),
    NegZero = binary_to_term(<<131, 70, 128, 0, 0, 0, 0, 0, 0, 0>>),
    Ports = erlang:ports(),
    [Self, Ref, Closure, Closure0, Plain, fun lists:map/2, fun erlang:phash2/1,
     Unaligned, Unaligned2, binary:part(<<"hello world">>, 3, 5),
     Big, Mixed, #{}, #{a => 1, b => [Self]}, NegZero, 0.0, 0.1,
     1 bsl 100, -(1 bsl 64), (1 bsl 59), -(1 bsl 59), (1 bsl 60) - 1, 1 bsl 60,
     node(), 'ÿ', 'héllo', list_to_atom([26085, 26412]),
     lists:seq(1, 300), "hello", [1 | 2], [Self | Ref],
     erlang:make_tuple(300, x), {Self, Ref, Closure}]
        ++ Ports.
