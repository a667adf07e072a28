//! Fixtures in tests/fixtures/codec/*.bin are pass-through bodies recorded
//! from OTP 25 (erts 13.1.5) by `cd tests/fixtures/codec && escript gen.escript`.

use crate::dist::message::Message;
use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/codec/", $name, ".bin")).as_slice()
    };
}

/// Every recorded op and the variant it must decode to.
fn fixtures() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("Link", fixture!("01_link")),
        ("Send", fixture!("02_send")),
        ("Exit", fixture!("03_exit")),
        ("Unlink", fixture!("04_unlink")),
        ("NodeLink", fixture!("05_node_link")),
        ("RegSend", fixture!("06_reg_send")),
        ("GroupLeader", fixture!("07_group_leader")),
        ("Exit2", fixture!("08_exit2")),
        ("SendTt", fixture!("12_send_tt")),
        ("ExitTt", fixture!("13_exit_tt")),
        ("RegSendTt", fixture!("16_reg_send_tt")),
        ("Exit2Tt", fixture!("18_exit2_tt")),
        ("MonitorP", fixture!("19_monitor_p_pid")),
        ("MonitorP", fixture!("19_monitor_p_atom")),
        ("DemonitorP", fixture!("20_demonitor_p_pid")),
        ("DemonitorP", fixture!("20_demonitor_p_atom")),
        ("MonitorPExit", fixture!("21_monitor_p_exit_pid")),
        ("MonitorPExit", fixture!("21_monitor_p_exit_atom")),
        ("SendSender", fixture!("22_send_sender")),
        ("SendSenderTt", fixture!("23_send_sender_tt")),
        ("PayloadExit", fixture!("24_payload_exit")),
        ("PayloadExitTt", fixture!("25_payload_exit_tt")),
        ("PayloadExit2", fixture!("26_payload_exit2")),
        ("PayloadExit2Tt", fixture!("27_payload_exit2_tt")),
        ("PayloadMonitorPExit", fixture!("28_payload_monitor_p_exit")),
        (
            "PayloadMonitorPExit",
            fixture!("28_payload_monitor_p_exit_atom"),
        ),
        ("SpawnRequest", fixture!("29_spawn_request")),
        ("SpawnRequest", fixture!("29_spawn_request_int_args")),
        ("SpawnRequestTt", fixture!("30_spawn_request_tt")),
        ("SpawnReply", fixture!("31_spawn_reply_pid")),
        ("SpawnReply", fixture!("31_spawn_reply_error")),
        ("SpawnReplyTt", fixture!("32_spawn_reply_tt")),
        ("AliasSend", fixture!("33_alias_send")),
        ("AliasSendTt", fixture!("34_alias_send_tt")),
        ("UnlinkId", fixture!("35_unlink_id")),
        ("UnlinkIdAck", fixture!("36_unlink_id_ack")),
    ]
}

fn variant(m: &Message) -> String {
    let s = format!("{m:?}");
    s.split('(').next().unwrap_or_default().to_owned()
}

fn feed(dec: &mut FrameDecoder, stream: &[u8], chunk: usize) -> Vec<Frame> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(f) = dec.decode(&mut buf).expect("valid stream") {
            out.push(f);
        }
    }
    assert!(buf.is_empty(), "leftover bytes");
    out
}

/// Like [`feed`], but as the connection reader does it: whenever the decoder
/// offers a binary's buffer, the next stream bytes (at most `chunk`) go
/// there instead of into the read buffer, and reads into that buffer stop
/// where the decoder asks. Returns the frames and how many
/// bytes went straight into a binary.
fn feed_direct(dec: &mut FrameDecoder, mut stream: &[u8], chunk: usize) -> (Vec<Frame>, usize) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut direct = 0;
    loop {
        while let Some(f) = dec.decode(&mut buf).expect("valid stream") {
            out.push(f);
        }
        if stream.is_empty() {
            break;
        }
        match dec.direct_target() {
            Some((gathered, max)) => {
                assert!(max > 0);
                let n = max.min(chunk.max(1)).min(stream.len());
                gathered.extend_from_slice(&stream[..n]);
                dec.direct_filled(n);
                direct += n;
                stream = &stream[n..];
            }
            None => {
                let limit = dec.read_limit(&buf).unwrap_or(usize::MAX);
                let n = chunk.max(1).min(stream.len()).min(limit);
                buf.extend_from_slice(&stream[..n]);
                stream = &stream[n..];
            }
        }
    }
    assert!(buf.is_empty(), "leftover bytes");
    (out, direct)
}

fn headered(body: &[u8]) -> Bytes {
    strip_version_bytes(body).expect("fixture is valid")
}

#[test]
fn every_recorded_op_decodes_in_both_wire_forms() {
    for (want, body) in fixtures() {
        let msg = decode_control(body).unwrap_or_else(|e| panic!("{want}: {e}"));
        assert_eq!(variant(&msg), want);
        // The same message after a distribution header has no version bytes.
        let again = decode_control(&headered(body)).unwrap();
        assert_eq!(msg, again, "{want}");
    }
}

#[test]
fn recorded_send_tt_keeps_to_pid_and_token_apart() {
    // SEND_TT is {12, Unused, ToPid, TraceToken}: the two must not be swapped.
    let Message::SendTt(m) = decode_control(fixture!("12_send_tt")).unwrap() else {
        panic!("not SendTt");
    };
    assert!(matches!(m.trace_token, crate::term::Term::Tuple(_)));
}

#[test]
fn recorded_spawn_request_with_byte_args() {
    // [1, 10] is a STRING_EXT on the wire; it must still read as the arg list.
    let Message::SpawnRequest(m) = decode_control(fixture!("29_spawn_request_int_args")).unwrap()
    else {
        panic!("not SpawnRequest");
    };
    assert_eq!(m.arg_list.elements.len(), 2);
    assert_eq!(m.mfa.function.name, "seq");
}

#[test]
fn recorded_unknown_op_carries_op_and_control() {
    match decode_control(fixture!("99_unknown_op")) {
        Err(ControlError::UnknownOp { op: 99, control }) => {
            assert!(format!("{control}").contains("whatever"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn monitor_p_exit_with_name_node_tuple_is_a_decode_error() {
    // Not what the protocol documents (FromProc is a pid or atom), so it is
    // refused; it must be a per-message error, not a panic.
    let r = decode_control(fixture!("21_monitor_p_exit_name_node"));
    assert!(
        matches!(r, Err(ControlError::Decode { op: Some(21), .. })),
        "{r:?}"
    );
}

#[test]
fn encode_round_trips_through_both_frame_kinds() {
    for (want, body) in fixtures() {
        let msg = decode_control(body).unwrap();
        let pass = encode_control(msg.clone()).unwrap();
        let hdr = encode_control_headered(msg.clone()).unwrap();
        let mut stream = pass_through_frame(&pass).to_vec();
        stream.extend_from_slice(&dist_header_frame(&hdr));
        let frames = feed(&mut FrameDecoder::default(), &stream, 7);
        assert_eq!(frames.len(), 2, "{want}");
        for f in frames {
            let Frame::Message(b) = f else { panic!("tick") };
            assert_eq!(decode_control(&b).unwrap(), msg, "{want}");
        }
    }
}

#[test]
fn tick_cannot_be_encoded_but_has_a_frame() {
    assert!(matches!(
        encode_control(Message::Tick),
        Err(ControlError::TickHasNoBody)
    ));
    let frames = feed(&mut FrameDecoder::default(), &TICK, 1);
    assert_eq!(frames, vec![Frame::Tick]);
}

#[test]
fn byte_at_a_time_mixed_stream() {
    let body = fixture!("22_send_sender");
    let mut stream = Vec::new();
    stream.extend_from_slice(&TICK);
    stream.extend_from_slice(&pass_through_frame(body));
    stream.extend_from_slice(&TICK);
    let h = headered(body);
    let mut frag = Fragmenter::new(7, h.clone(), 10);
    while let Some(f) = frag.next_frame() {
        stream.extend_from_slice(&f);
    }
    stream.extend_from_slice(&dist_header_frame(&h));
    let frames = feed(&mut FrameDecoder::default(), &stream, 1);
    assert_eq!(
        frames,
        vec![
            Frame::Tick,
            Frame::Message(Bytes::from_static(body)),
            Frame::Tick,
            Frame::Message(h.clone()),
            Frame::Message(h),
        ]
    );
}

#[test]
fn partial_frame_waits_and_leaves_buffer_alone() {
    let frame = pass_through_frame(b"abc");
    let mut dec = FrameDecoder::default();
    for cut in 0..frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn pass_through_is_zero_copy() {
    let frame = pass_through_frame(b"hello");
    let mut buf = BytesMut::from(&frame[..]);
    let start = buf.as_ptr() as usize;
    let Some(Frame::Message(b)) = FrameDecoder::default().decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(&b[..], b"hello");
    assert_eq!(
        b.as_ptr() as usize,
        start + 5,
        "body must alias the read buffer"
    );
}

#[test]
fn interleaved_sequences_complete_independently() {
    let a: Bytes = (0..100u8).collect::<Vec<_>>().into();
    let b: Bytes = (100..180u8).collect::<Vec<_>>().into();
    let mut fa = Fragmenter::new(1, a.clone(), 30); // 4 frames
    let mut fb = Fragmenter::new(2, b.clone(), 40); // 2 frames
    assert_eq!((fa.remaining_frames(), fb.remaining_frames()), (4, 2));
    let mut stream = Vec::new();
    for f in [
        fa.next_frame(),
        fb.next_frame(),
        fa.next_frame(),
        fb.next_frame(),
    ] {
        stream.extend_from_slice(&f.unwrap());
    }
    stream.extend_from_slice(&pass_through_frame(b"x"));
    while let Some(f) = fa.next_frame() {
        stream.extend_from_slice(&f);
    }
    let mut dec = FrameDecoder::default();
    let frames = feed(&mut dec, &stream, 5);
    assert_eq!(
        frames,
        vec![
            Frame::Message(b),
            Frame::Message(Bytes::from_static(b"x")),
            Frame::Message(a)
        ]
    );
    assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));
}

/// A frame of a distribution header (`131, 68`, then `header`) and `body`.
fn with_header(header: Vec<u8>, body: &[u8]) -> BytesMut {
    let mut c = vec![131, 68];
    c.extend_from_slice(&header);
    c.extend_from_slice(body);
    frame_of(&c)
}

fn frame_of(contents: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u32(contents.len() as u32);
    b.put_slice(contents);
    b
}

fn frag_header(seq: u64, id: u64, refs: u8, payload: &[u8]) -> BytesMut {
    let mut c = vec![131, 69];
    c.extend_from_slice(&seq.to_be_bytes());
    c.extend_from_slice(&id.to_be_bytes());
    c.push(refs);
    c.extend_from_slice(payload);
    frame_of(&c)
}

fn frag_cont(seq: u64, id: u64, payload: &[u8]) -> BytesMut {
    let mut c = vec![131, 70];
    c.extend_from_slice(&seq.to_be_bytes());
    c.extend_from_slice(&id.to_be_bytes());
    c.extend_from_slice(payload);
    frame_of(&c)
}

fn decode_err(dec: &mut FrameDecoder, mut buf: BytesMut) -> FrameError {
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("expected an error"),
            Err(e) => return e,
        }
    }
}

#[test]
fn malformed_headers_are_errors() {
    let d = || FrameDecoder::default();
    assert!(matches!(
        decode_err(&mut d(), frame_of(&[1, 2])),
        FrameError::UnknownHeader(1, 2)
    ));
    assert!(matches!(
        decode_err(&mut d(), frame_of(&[131, 99])),
        FrameError::UnknownHeader(131, 99)
    ));
    assert!(matches!(
        decode_err(&mut d(), frame_of(&[131])),
        FrameError::UnknownHeader(131, 0)
    ));
    assert!(matches!(
        decode_err(&mut d(), frame_of(&[131, 68])),
        FrameError::Malformed(_)
    ));
    // An atom cache reference to a slot no header filled; references cut
    // short.
    assert!(matches!(
        decode_err(&mut d(), frame_of(&[131, 68, 1, 0, 0])),
        FrameError::Malformed(_)
    ));
    assert!(matches!(
        decode_err(&mut d(), frag_header(1, 2, 3, b"x")),
        FrameError::Malformed(_)
    ));
    assert!(matches!(
        decode_err(&mut d(), frame_of(&[131, 69, 0, 0])),
        FrameError::Malformed(_)
    ));
    assert!(matches!(
        decode_err(&mut d(), frag_header(1, 0, 0, b"x")),
        FrameError::Malformed(_)
    ));
    assert!(matches!(
        decode_err(&mut d(), frag_cont(1, 1, b"x")),
        FrameError::Malformed(_)
    ));
    // Out of order: 3 then 1.
    let mut s = frag_header(1, 3, 0, b"x");
    s.extend_from_slice(&frag_cont(1, 1, b"y"));
    assert!(matches!(decode_err(&mut d(), s), FrameError::Malformed(_)));
    // The same sequence opened twice.
    let mut s = frag_header(1, 3, 0, b"x");
    s.extend_from_slice(&frag_header(1, 3, 0, b"x"));
    assert!(matches!(decode_err(&mut d(), s), FrameError::Malformed(_)));
}

#[test]
fn length_limit_is_checked_before_bytes_arrive() {
    let mut dec = FrameDecoder::new(100);
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        dec.decode(&mut buf),
        Err(FrameError::TooLarge {
            len: 0xffff_ffff,
            ..
        })
    ));
    let mut buf = frame_of(&[112; 102]); // 101-byte body > 100
    assert!(matches!(
        dec.decode(&mut buf),
        Err(FrameError::TooLarge { len: 101, max: 100 })
    ));
}

#[test]
fn open_sequences_are_bounded_in_count_and_bytes() {
    let mut dec = FrameDecoder::with_limits(100, 2, 150);
    let mut s = frag_header(1, 5, 0, &[0; 10]);
    s.extend_from_slice(&frag_header(2, 5, 0, &[0; 10]));
    s.extend_from_slice(&frag_header(3, 5, 0, &[0; 10]));
    assert!(matches!(
        decode_err(&mut dec, s),
        FrameError::TooManyOpenSequences
    ));

    // One sequence beyond the message limit.
    let mut dec = FrameDecoder::with_limits(100, 2, 1000);
    let mut s = frag_header(1, 3, 0, &[0; 60]);
    s.extend_from_slice(&frag_cont(1, 2, &[0; 60]));
    assert!(matches!(
        decode_err(&mut dec, s),
        FrameError::ReassemblyTooLarge
    ));
    assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));

    // Two sequences together beyond the reassembly limit.
    let mut dec = FrameDecoder::with_limits(100, 4, 150);
    let mut s = frag_header(1, 3, 0, &[0; 80]);
    s.extend_from_slice(&frag_header(2, 3, 0, &[0; 80]));
    assert!(matches!(
        decode_err(&mut dec, s),
        FrameError::ReassemblyTooLarge
    ));
}

#[test]
fn announced_fragment_count_does_not_drive_allocation() {
    let mut dec = FrameDecoder::default();
    let mut buf = frag_header(1, u64::MAX, 0, b"abc");
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    assert_eq!(dec.buffered_bytes(), 3);
}

#[test]
fn hostile_terms_are_rejected_not_decoded() {
    // LIST_EXT claiming 2^32-1 elements.
    let r = decode_control(&[131, 108, 0xff, 0xff, 0xff, 0xff, 106]);
    assert!(
        matches!(
            r,
            Err(ControlError::InvalidTerm(TermError::Truncated { .. }))
        ),
        "{r:?}"
    );
    // An atom cache reference and a distribution header inside a term.
    let r = decode_control(&[131, 104, 2, 97, 2, 82, 0]);
    assert!(
        matches!(
            r,
            Err(ControlError::InvalidTerm(TermError::AtomCacheRef { .. }))
        ),
        "{r:?}"
    );
    let r = decode_control(&[131, 68, 0]);
    assert!(matches!(
        r,
        Err(ControlError::InvalidTerm(TermError::UnknownTag {
            tag: 68,
            ..
        }))
    ));
    // BIT_BINARY_EXT with 0 trailing bits on a non-empty binary.
    let r = decode_control(&[131, 77, 0, 0, 0, 1, 0, 0xff]);
    assert!(matches!(
        r,
        Err(ControlError::InvalidTerm(TermError::BadBitCount { .. }))
    ));
    // Deep nesting.
    let mut deep = vec![131];
    deep.extend(std::iter::repeat_n([104u8, 1], MAX_TERM_DEPTH + 1).flatten());
    deep.push(106);
    let r = decode_control(&deep);
    assert!(matches!(
        r,
        Err(ControlError::InvalidTerm(TermError::TooDeep { .. }))
    ));
    // Trailing garbage after control + message.
    let mut body = fixture!("22_send_sender").to_vec();
    body.push(106);
    assert!(matches!(
        decode_control(&body),
        Err(ControlError::TrailingBytes { extra: 1 })
    ));
    assert!(matches!(decode_control(&[]), Err(ControlError::Empty)));
}

#[test]
fn nesting_just_under_the_limit_decodes() {
    // {[[[...]]]} MAX_TERM_DEPTH - 1 deep: proves our decoder (term::etf)
    // copes with what the walk admits.
    let mut body = vec![131, 104, 2, 97, 99];
    body.extend(std::iter::repeat_n([104u8, 1], MAX_TERM_DEPTH - 2).flatten());
    body.push(106);
    assert!(matches!(
        decode_control(&body),
        Err(ControlError::UnknownOp { op: 99, .. })
    ));
}

proptest! {
    // No regression files: only src/dist/codec and tests/fixtures/codec are ours.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any bodies, fragmented at any size and interleaved with each other and
    /// with pass-through frames, reassemble exactly, in completion order.
    #[test]
    fn fragments_reassemble_exactly(
        bodies in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..600), 1usize..200, any::<bool>()),
            1..8,
        ),
        picks in prop::collection::vec(any::<u8>(), 1..64),
        chunk in 1usize..97,
    ) {
        enum Src { Frag(Fragmenter, Bytes), Whole(Bytes) }
        let mut srcs: Vec<Src> = bodies.into_iter().enumerate().map(|(i, (b, size, whole))| {
            let b = Bytes::from(b);
            if whole { Src::Whole(b) } else { Src::Frag(Fragmenter::new(i as u64, b.clone(), size), b) }
        }).collect();
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        let mut step = 0usize;
        while !srcs.is_empty() {
            let i = picks[step % picks.len()] as usize % srcs.len();
            step += 1;
            match &mut srcs[i] {
                Src::Whole(b) => {
                    stream.extend_from_slice(&pass_through_frame(b));
                    expected.push(Frame::Message(b.clone()));
                    srcs.swap_remove(i);
                }
                Src::Frag(f, b) => {
                    let frame = f.next_frame().expect("removed when done");
                    stream.extend_from_slice(&frame);
                    let done = f.remaining_frames() == 0;
                    if done { expected.push(Frame::Message(b.clone())); }
                    if step.is_multiple_of(5) { stream.extend_from_slice(&TICK); expected.push(Frame::Tick); }
                    if done { srcs.swap_remove(i); }
                }
            }
        }
        let mut dec = FrameDecoder::default();
        prop_assert_eq!(feed(&mut dec, &stream, chunk), expected);
        prop_assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));
    }

    /// Arbitrary bytes, in arbitrary chunks, never panic the decoder, and the
    /// limits hold throughout.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        let mut dec = FrameDecoder::with_limits(512, 4, 1024);
        let mut buf = BytesMut::new();
        'outer: for piece in data.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(Frame::Message(b))) => { let _ = decode_control(&b); }
                    Ok(Some(Frame::Split { body, hole })) => { let _ = decode_control_with_hole(&body, hole, &[]); }
                    Ok(Some(Frame::Tick)) => {}
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
                prop_assert!(dec.open_sequences() <= 4 && dec.buffered_bytes() <= 1024);
            }
        }
    }

    /// Structured junk reaches deeper into the decoder than uniform bytes.
    #[test]
    fn arbitrary_headers_never_panic(
        frames in prop::collection::vec(
            (prop::sample::select(vec![68u8, 69, 70, 0]), 0u64..4, 0u64..5, prop::collection::vec(any::<u8>(), 0..40)),
            0..20,
        ),
    ) {
        let mut dec = FrameDecoder::with_limits(64, 2, 100);
        let mut buf = BytesMut::new();
        for (kind, seq, id, payload) in frames {
            match kind {
                68 => buf.extend_from_slice(&frame_of(&[&[131u8, 68, 0][..], &payload].concat())),
                69 => buf.extend_from_slice(&frag_header(seq, id, 0, &payload)),
                70 => buf.extend_from_slice(&frag_cont(seq, id, &payload)),
                _ => buf.extend_from_slice(&pass_through_frame(&payload)),
            }
        }
        while let Ok(Some(f)) = dec.decode(&mut buf) {
            if let Frame::Message(b) = f { let _ = decode_control(&b); }
        }
    }

    /// Arbitrary bodies never panic the control decoder, with and without a
    /// plausible control-tuple prefix.
    #[test]
    fn arbitrary_bodies_never_panic_decode_control(tail in prop::collection::vec(any::<u8>(), 0..256), op in any::<u8>()) {
        let _ = decode_control(&tail);
        let _ = decode_control(&[&[131u8, 104, 3, 97, op][..], &tail].concat());
        let _ = decode_control(&[&[104u8, 3, 97, op][..], &tail].concat());
    }
}

#[test]
fn fragment_parts_are_the_frames_split_at_the_header() {
    let body: Bytes = (0..=255u8).cycle().take(1000).collect::<Vec<_>>().into();
    // The same body whole and in pieces that fragments straddle.
    let pieces = vec![body.slice(..250), body.slice(250..250), body.slice(250..)];
    let (mut whole, mut parts) = (
        Fragmenter::new(9, body.clone(), 300),
        Fragmenter::from_parts(9, pieces, 300),
    );
    let mut n = 0;
    while let Some(frame) = whole.next_frame() {
        let (head, payload) = parts.next_frame_parts().expect("as many parts as frames");
        let mut joined = head.as_ref().to_vec();
        for p in &payload {
            joined.extend_from_slice(p);
        }
        assert_eq!(joined, frame.to_vec());
        // The payload is the body's own memory, not a copy.
        let offset = payload[0].as_ptr() as usize - body.as_ptr() as usize;
        assert_eq!(offset, n * 300);
        n += 1;
    }
    assert_eq!((n, parts.next_frame_parts().is_none()), (4, true));
}

#[test]
fn a_large_binary_is_gathered_apart_and_decodes_as_sent() {
    use crate::term::{self, Pid};
    let from = Pid::new("a@host", 1, 0, 1);
    let bin = term::binary((0..300_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let payloads = [
        bin.clone(),
        crate::tup![
            term::atom("$gen_call"),
            term::int(1),
            bin.clone(),
            term::atom("after")
        ],
        term::list(vec![term::int(1), bin.clone(), bin.clone()]),
    ];
    for payload in payloads {
        let m = Message::reg_send(from.clone(), crate::term::Atom::from("echo"), payload);
        let body = encode_control_headered(m.clone()).expect("encodes");
        for size in [100, 65_536, 70_000] {
            let mut wire = BytesMut::new();
            let mut f = Fragmenter::new(3, body.clone(), size);
            while let Some(frame) = f.next_frame() {
                wire.extend_from_slice(&frame);
            }
            let mut dec = FrameDecoder::default();
            let frame = dec
                .decode(&mut wire)
                .expect("well-formed")
                .expect("complete");
            assert_eq!(frame.joined().as_deref(), Some(&body[..]));
            let Frame::Split {
                body: skeleton,
                hole,
            } = frame
            else {
                panic!("not split with fragments of {size}");
            };
            assert_eq!(hole.bytes.len(), 300_000);
            assert_eq!(
                decode_control_with_hole(&skeleton, hole, &[]).expect("decodes"),
                m
            );
            assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));
        }
    }
}

#[test]
fn a_gathered_binary_is_read_straight_into_its_buffer() {
    use crate::term::{self, Pid};
    let from = Pid::new("a@host", 1, 0, 1);
    let bin = term::binary(
        (0..1_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let small =
        |i: i64| Message::reg_send(from.clone(), crate::term::Atom::from("sink"), term::int(i));
    let big = Message::reg_send(
        from.clone(),
        crate::term::Atom::from("echo"),
        crate::tup![term::atom("$gen_call"), bin.clone(), term::atom("after")],
    );
    let body = encode_control_headered(big.clone()).expect("encodes");
    for (size, chunk) in [
        (65_536, 100_000),
        (65_536, 7_000),
        (65_536, 65_558),
        (70_000, 150_000),
    ] {
        // The fragments with small messages and ticks between them.
        let mut wire = Vec::new();
        let mut f = Fragmenter::new(9, body.clone(), size);
        let mut i = 0;
        while let Some(frame) = f.next_frame() {
            wire.extend_from_slice(&frame);
            i += 1;
            wire.extend_from_slice(&dist_header_frame(
                &encode_control_headered(small(i)).expect("small"),
            ));
            if i % 3 == 0 {
                wire.extend_from_slice(&TICK);
            }
        }
        let mut plain = FrameDecoder::default();
        let expected = feed(&mut plain, &wire, chunk);
        let mut dec = FrameDecoder::default();
        let (frames, direct) = feed_direct(&mut dec, &wire, chunk);
        assert_eq!(frames, expected, "fragments of {size}, reads of {chunk}");
        assert!(
            direct > 500_000,
            "{direct} bytes read straight in (fragments of {size}, reads of {chunk})"
        );
        let split = frames
            .iter()
            .find(|f| matches!(f, Frame::Split { .. }))
            .expect("split");
        let Frame::Split {
            body: skeleton,
            hole,
        } = split.clone()
        else {
            unreachable!()
        };
        assert_eq!(
            decode_control_with_hole(&skeleton, hole, &[]).expect("decodes"),
            big
        );
        assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));
    }
}

#[test]
fn a_continuation_read_in_flight_is_still_checked() {
    use crate::term::{self, Pid};
    let from = Pid::new("a@host", 1, 0, 1);
    let fragments = |len: usize| -> Vec<Bytes> {
        let bin = term::binary(vec![1u8; len]);
        let m = Message::reg_send(from.clone(), crate::term::Atom::from("echo"), bin);
        let mut f = Fragmenter::new(5, encode_control_headered(m).expect("encodes"), 65_536);
        std::iter::from_fn(|| f.next_frame()).collect()
    };
    // The second fragment announces the wrong FragmentId while its payload
    // is still arriving: refused before any of it is taken.
    let frames = fragments(300_000);
    let mut dec = FrameDecoder::default();
    assert_eq!(
        dec.decode(&mut BytesMut::from(&frames[0][..]))
            .expect("first"),
        None
    );
    let mut wrong = BytesMut::from(&frames[1][..1000]);
    wrong[14..22].copy_from_slice(&99u64.to_be_bytes());
    assert!(matches!(
        dec.decode(&mut wrong),
        Err(FrameError::Malformed(_))
    ));
    // The limits are checked against the whole announced fragment up front.
    let frames = fragments(90_000);
    let mut dec = FrameDecoder::with_limits(100_000, 4, 200_000);
    assert_eq!(
        dec.decode(&mut BytesMut::from(&frames[0][..]))
            .expect("first"),
        None
    );
    let mut inflated = BytesMut::from(&frames[1][..1000]);
    inflated[..4].copy_from_slice(&(18u32 + 99_000).to_be_bytes());
    assert!(matches!(
        dec.decode(&mut inflated),
        Err(FrameError::ReassemblyTooLarge)
    ));
    assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));
}

#[test]
fn a_held_apart_binary_cut_short_is_reported_like_any_truncation() {
    use crate::term::{self, Pid};
    let from = Pid::new("a@host", 1, 0, 1);
    let m = Message::reg_send(
        from,
        crate::term::Atom::from("echo"),
        term::binary(vec![7u8; 200_000]),
    );
    let mut body = encode_control_headered(m).expect("encodes").to_vec();
    body.truncate(body.len() - 10);
    let mut wire = BytesMut::new();
    let mut f = Fragmenter::new(3, Bytes::from(body.clone()), 65_536);
    while let Some(frame) = f.next_frame() {
        wire.extend_from_slice(&frame);
    }
    let frame = FrameDecoder::default()
        .decode(&mut wire)
        .expect("well-formed frames")
        .expect("complete");
    assert_eq!(frame, Frame::Message(Bytes::from(body.clone())));
    assert!(matches!(
        decode_control(&body),
        Err(ControlError::InvalidTerm(TermError::Truncated { .. }))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Reading a gathered binary's bytes straight into it, with reads of any
    /// size and fragments of any size, gives exactly the frames that reading
    /// everything through the read buffer gives.
    #[test]
    fn direct_reads_give_the_same_frames(
        len in 64_000usize..400_000,
        size in 1_000usize..150_000,
        chunks in prop::collection::vec(1usize..200_000, 1..16),
    ) {
        use crate::term::{self, Pid};
        let from = Pid::new("a@host", 1, 0, 1);
        let bin = term::binary((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
        let m = Message::reg_send(from.clone(), crate::term::Atom::from("echo"), bin);
        let mut wire = Vec::new();
        let mut f = Fragmenter::new(1, encode_control_headered(m).expect("encodes"), size);
        while let Some(frame) = f.next_frame() {
            wire.extend_from_slice(&frame);
            wire.extend_from_slice(&TICK);
        }
        let expected = feed(&mut FrameDecoder::default(), &wire, 4096);
        for &chunk in &chunks {
            let mut dec = FrameDecoder::default();
            prop_assert_eq!(&feed_direct(&mut dec, &wire, chunk).0, &expected);
            prop_assert_eq!((dec.open_sequences(), dec.buffered_bytes()), (0, 0));
        }
    }
}

/// Atom cache references as a BEAM sends them once `DIST_HDR_ATOM_CACHE` is
/// negotiated: a header fills slots, later headers name them, and a
/// fragmented message's first fragment fills its slots when it arrives,
/// not when the message is complete.
#[test]
fn atom_cache_references_resolve_across_frames_and_fragments() {
    use super::atom_cache::header_for_test as refs;
    use crate::term::{self, Pid};
    // {6, <node.1.2.3>, '', ToName} then {Tag, 1}, where the node, ToName
    // and Tag are references 0, 1 and 2.
    let reg_send = [
        104, 4, 97, 6, 88, 82, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 119, 0, 82, 1, 104, 2, 82, 2,
        97, 1,
    ];
    let expect = |m: Message, node: &str, name: &str, tag: &str| {
        let Message::RegSend(m) = m else {
            panic!("not a reg_send: {m:?}")
        };
        assert_eq!(m.from_pid, Pid::new(node, 1, 2, 3));
        assert_eq!(m.to_name.as_str(), name);
        assert_eq!(m.message, crate::tup![term::atom(tag), term::int(1)]);
    };
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let next = |d: &mut FrameDecoder, buf: &mut BytesMut| match d.decode(buf) {
        Ok(Some(Frame::Message(body))) => decode_control_cached(&body, d.atoms()).expect("decodes"),
        other => panic!("expected a message, got {other:?}"),
    };
    buf.extend_from_slice(&with_header(
        refs(
            &[(true, 9, "a@host"), (true, 300, "sink"), (true, 5, "m")],
            false,
        ),
        &reg_send,
    ));
    expect(next(&mut d, &mut buf), "a@host", "sink", "m");
    // The same slots named again, in another order.
    buf.extend_from_slice(&with_header(
        refs(&[(false, 9, ""), (false, 5, ""), (false, 300, "")], false),
        &reg_send,
    ));
    expect(next(&mut d, &mut buf), "a@host", "m", "sink");
    // The very same header again (the atoms are kept, not read again), then
    // a header that gives slot 5 another atom, then the same header again:
    // it stands for the new atom.
    let same = refs(&[(false, 9, ""), (false, 5, ""), (false, 300, "")], false);
    buf.extend_from_slice(&with_header(same.clone(), &reg_send));
    expect(next(&mut d, &mut buf), "a@host", "m", "sink");
    buf.extend_from_slice(&with_header(
        refs(&[(false, 9, ""), (true, 5, "n"), (false, 300, "")], false),
        &reg_send,
    ));
    expect(next(&mut d, &mut buf), "a@host", "n", "sink");
    buf.extend_from_slice(&with_header(same, &reg_send));
    expect(next(&mut d, &mut buf), "a@host", "n", "sink");
    buf.extend_from_slice(&with_header(
        refs(&[(false, 9, ""), (true, 5, "m"), (false, 300, "")], false),
        &reg_send,
    ));
    expect(next(&mut d, &mut buf), "a@host", "m", "sink");
    // A message in two fragments whose first fills slot 12; a message
    // naming slot 12 arrives between the fragments.
    let mut first = refs(&[(true, 12, "big"), (false, 9, ""), (false, 5, "")], true);
    first.extend_from_slice(&reg_send[..10]);
    buf.extend_from_slice(&frag_header(7, 2, first[0], &first[1..]));
    assert!(matches!(d.decode(&mut buf), Ok(None)));
    buf.extend_from_slice(&with_header(
        refs(&[(false, 9, ""), (false, 12, ""), (false, 300, "")], false),
        &reg_send,
    ));
    expect(next(&mut d, &mut buf), "a@host", "big", "sink");
    buf.extend_from_slice(&frag_cont(7, 1, &reg_send[10..]));
    expect(next(&mut d, &mut buf), "big", "a@host", "m");
    // A reference beyond the header's: an error for that message only.
    buf.extend_from_slice(&with_header(
        refs(&[(false, 9, ""), (false, 5, "")], false),
        &reg_send,
    ));
    match d.decode(&mut buf) {
        Ok(Some(Frame::Message(body))) => {
            let r = decode_control_cached(&body, d.atoms());
            assert!(
                matches!(
                    r,
                    Err(ControlError::InvalidTerm(TermError::AtomCacheRef { .. }))
                ),
                "{r:?}"
            );
        }
        other => panic!("expected a message, got {other:?}"),
    }
}

/// What a real OTP 25 node sent us once `DIST_HDR_ATOM_CACHE` was
/// negotiated: the bytes our reader received (recorded with `strace -e
/// recvfrom -xx` on `beam-peer node`) while `erl` connected, sent `{m, I}`
/// to `sink` three times and made one `gen_server:call` to `echo`.
#[test]
fn a_recorded_beam_stream_with_atom_cache_references_decodes() {
    let stream = include_bytes!("../../../tests/fixtures/codec/streams/otp25_atom_cache.bin");
    let mut d = FrameDecoder::default();
    let mut buf = BytesMut::from(&stream[..]);
    let mut got = Vec::new();
    let mut references = 0;
    while let Some(frame) = d.decode(&mut buf).expect("well-formed stream") {
        if let Frame::Message(body) = frame {
            references += d.atoms().len();
            got.push(decode_control_cached(&body, d.atoms()).expect("decodes"));
        }
    }
    assert!(buf.is_empty());
    assert!(references > 0, "the recording uses the atom cache");
    let to = |m: &Message| match m {
        Message::RegSend(m) => (
            m.from_pid.node.as_str().to_owned(),
            m.to_name.as_str().to_owned(),
        ),
        Message::MonitorP(_) => (String::new(), "monitor".into()),
        Message::DemonitorP(_) => (String::new(), "demonitor".into()),
        other => panic!("unexpected {other:?}"),
    };
    let names: Vec<String> = got.iter().map(|m| to(m).1).collect();
    assert_eq!(
        names,
        [
            "rex",
            "global_name_server",
            "sink",
            "sink",
            "sink",
            "monitor",
            "echo",
            "demonitor"
        ]
    );
    for (i, m) in got[2..5].iter().enumerate() {
        let Message::RegSend(m) = m else {
            unreachable!()
        };
        assert_eq!(m.from_pid.node.as_str(), "rec@127.0.0.1");
        assert_eq!(
            m.message,
            crate::tup![crate::term::atom("m"), crate::term::int(i as i64 + 1)]
        );
    }
}

/// A message body and the atoms its header stood for; `None` for a tick.
type Output = Option<(Vec<u8>, Vec<crate::term::Atom>)>;

/// What a decoder hands out, fed `stream` in `chunk`-byte reads: each
/// message's body (joined) with the atoms its header stood for, ticks as
/// `None`, and the error that ended the stream, if one did. `in_place`
/// decodes as the connection reader does ([`FrameDecoder::decode_in_place`]).
fn outputs(stream: &[u8], chunk: usize, in_place: bool) -> (Vec<Output>, Option<String>) {
    let mut dec = FrameDecoder::with_limits(4096, 4, 8192);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            let frame = if in_place {
                match dec.decode_in_place(&mut buf) {
                    Ok(Some(InPlace::Body(body))) => {
                        let bytes = buf[body.clone()].to_vec();
                        FrameDecoder::consume(&mut buf, &body);
                        Ok(Some(Frame::Message(Bytes::from(bytes))))
                    }
                    Ok(Some(InPlace::Frame(f))) => Ok(Some(f)),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                }
            } else {
                dec.decode(&mut buf)
            };
            match frame {
                Ok(Some(f)) => out.push(f.joined().map(|b| (b.to_vec(), dec.atoms().to_vec()))),
                Ok(None) => break,
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }
    (out, None)
}

#[test]
fn in_place_decoding_takes_whole_frames_where_they_are() {
    use super::atom_cache::header_for_test as refs;
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&TICK);
    // A pass-through frame right after a tick: the tick's length is not
    // mistaken for the frame's.
    stream.extend_from_slice(&pass_through_frame(b"abc"));
    stream.extend_from_slice(&with_header(refs(&[(true, 9, "a@host")], false), b"xy"));
    stream.extend_from_slice(&with_header(refs(&[(false, 9, "")], false), b"z"));
    stream.extend_from_slice(&pass_through_frame(b""));
    let mut f = Fragmenter::new(7, Bytes::from_static(b"0123456789"), 4);
    while let Some(frame) = f.next_frame() {
        stream.extend_from_slice(&frame);
    }
    let mut dec = FrameDecoder::default();
    let mut buf = stream.clone();
    let start = buf.as_ptr() as usize;
    let mut seen = Vec::new();
    while let Some(next) = dec.decode_in_place(&mut buf).expect("valid stream") {
        match next {
            InPlace::Body(body) => {
                // Still in the buffer it was read into, where the stream
                // has it.
                let at = buf.as_ptr() as usize - start + body.start;
                assert_eq!(&stream[at..at + body.len()], &buf[body.clone()]);
                seen.push((true, buf[body.clone()].to_vec()));
                FrameDecoder::consume(&mut buf, &body);
            }
            InPlace::Frame(Frame::Tick) => seen.push((false, vec![])),
            InPlace::Frame(f) => seen.push((false, f.joined().expect("a message").to_vec())),
        }
    }
    assert!(buf.is_empty());
    assert_eq!(
        seen,
        vec![
            (false, vec![]),
            (true, b"abc".to_vec()),
            (true, b"xy".to_vec()),
            (true, b"z".to_vec()),
            (true, vec![]),
            (false, b"0123456789".to_vec()),
        ]
    );
    assert_eq!(dec.atoms(), &[] as &[crate::term::Atom]);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Decoding in place hands out exactly what `decode` does, message for
    /// message and atom for atom, and fails where it fails, on well-formed
    /// streams (frames of every kind) and on arbitrary bytes alike.
    #[test]
    fn in_place_decoding_matches_decode(
        parts in prop::collection::vec((0u8..6, prop::collection::vec(any::<u8>(), 0..40), 0usize..3), 0..24),
        chunk in 1usize..64,
    ) {
        use super::atom_cache::header_for_test as refs;
        let mut stream = Vec::new();
        for (i, (kind, bytes, slot)) in parts.iter().enumerate() {
            match kind {
                0 => stream.extend_from_slice(&TICK),
                1 => stream.extend_from_slice(&pass_through_frame(bytes)),
                2 | 3 => {
                    let atoms = [(true, 2 * slot, "a@host"), (false, 2 * slot, "")];
                    let mut c = vec![131, 68];
                    c.extend_from_slice(&refs(&atoms[*kind as usize - 2..][..1], false));
                    c.extend_from_slice(bytes);
                    stream.extend_from_slice(&frame_of(&c));
                }
                4 => {
                    let mut f = Fragmenter::new(i as u64, Bytes::from(bytes.clone()), 7);
                    while let Some(frame) = f.next_frame() {
                        stream.extend_from_slice(&frame);
                    }
                }
                _ => stream.extend_from_slice(bytes),
            }
        }
        prop_assert_eq!(outputs(&stream, chunk, true), outputs(&stream, chunk, false));
    }
}

/// A send decoded into its recipient and message is the send
/// `decode_control` decodes, whatever the op; anything else is left to
/// `decode_other_cached`, which decodes it as `decode_control` does.
#[test]
fn sends_decode_to_their_recipient_and_message() {
    for (name, body) in fixtures() {
        let whole = decode_control(body).expect("fixture decodes");
        let expected = match whole.clone() {
            Message::Send(m) => Some((Recipient::Pid(m.to_pid), m.message)),
            Message::SendSender(m) => Some((Recipient::Pid(m.to_pid), m.message)),
            Message::RegSend(m) => Some((Recipient::Name(m.to_name), m.message)),
            Message::AliasSend(m) => Some((Recipient::Alias(Box::new(m.alias)), m.message)),
            _ => None,
        };
        for b in [Bytes::copy_from_slice(body), headered(body)] {
            assert_eq!(decode_send_cached(&b, &[]), expected, "{name}");
            if expected.is_none() {
                assert_eq!(
                    decode_other_cached(&b, &[]).ok(),
                    Some(whole.clone()),
                    "{name}"
                );
            }
            // Monitors take their own short path (a BEAM's remote call
            // brings one and a demonitor).
            let monitor = matches!(whole, Message::MonitorP(_) | Message::DemonitorP(_));
            assert_eq!(
                control::decode_monitor(&b, &[]),
                monitor.then(|| whole.clone()),
                "{name}"
            );
        }
    }
}
