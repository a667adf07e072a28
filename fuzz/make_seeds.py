#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into fuzz/seeds/<target>/.

Seeds are built from the recorded OTP 25 fixtures in tests/fixtures
(control-message bodies and handshake transcripts) plus hand-built EPMD
messages, wrapped in each target's input layout (see the header of each
fuzz_targets/*.rs). Run from anywhere: python3 fuzz/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")
SEEDS = os.path.join(HERE, "seeds")


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def be32(n):
    return struct.pack(">I", n)


def be64(n):
    return struct.pack(">Q", n)


def frame(payload):
    return be32(len(payload)) + payload


def bodies():
    d = os.path.join(FIXTURES, "codec")
    for f in sorted(os.listdir(d)):
        if f.endswith(".bin"):
            with open(os.path.join(d, f), "rb") as fh:
                yield f[:-4], fh.read()


# control: raw frame bodies as OTP sends them.
for name, body in bodies():
    write("control", name, body)

# frame_decoder: [chunking seed, limits selector] + frames.
for name, body in bodies():
    tick = frame(b"")
    write("frame_decoder", name + "_pass", b"\x07\x00" + frame(b"\x70" + body) + tick)
    # Dist header without atom cache refs; drops the control term's 131.
    write("frame_decoder", name + "_hdr", b"\x03\x00" + frame(b"\x83\x44\x00" + body[1:]))
    half = max(1, len(body) // 2)
    first = frame(b"\x83\x45" + be64(7) + be64(2) + b"\x00" + body[1:half])
    cont = frame(b"\x83\x46" + be64(7) + be64(1) + body[half:])
    write("frame_decoder", name + "_frag", b"\x05\x00" + first + tick + cont)
    # The same under small limits (selector bit 7 set).
    write("frame_decoder", name + "_frag_small", b"\x02\x9a" + first + cont)



# Atom cache references as a BEAM makes them once DIST_HDR_ATOM_CACHE is
# negotiated: new entries, the same slots named again, and a fragmented
# message whose first fragment fills a slot that a message arriving between
# its fragments names. The body is {6, <Ref0.1.2.3>, '', Ref1} {Ref2, 1}.
def atom_refs(entries):
    n = len(entries)
    flags = [0] * (n // 2 + 1)
    for i, (new, slot, _) in enumerate(entries):
        flags[i // 2] |= ((slot >> 8) | (8 if new else 0)) << ((i & 1) * 4)
    out = bytes([n] + flags)
    for new, slot, text in entries:
        out += bytes([slot & 255])
        if new:
            out += bytes([len(text)]) + text.encode()
    return out


reg_send = bytes([104, 4, 97, 6, 88, 82, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3,
                  119, 0, 82, 1, 104, 2, 82, 2, 97, 1])
cached = (
    frame(b"\x83\x44" + atom_refs([(True, 9, "a@host"), (True, 300, "sink"), (True, 5, "m")]) + reg_send)
    + frame(b"\x83\x44" + atom_refs([(False, 9, ""), (False, 5, ""), (False, 300, "")]) + reg_send)
    + frame(b"\x83\x45" + be64(7) + be64(2)
            + atom_refs([(True, 12, "big"), (False, 9, ""), (False, 5, "")]) + reg_send[:10])
    + frame(b"\x83\x44" + atom_refs([(False, 9, ""), (False, 12, ""), (False, 300, "")]) + reg_send)
    + frame(b"\x83\x46" + be64(7) + be64(1) + reg_send[10:])
)
write("frame_decoder", "10_send_atom_cache", b"\x03\x00" + cached)
# What a real OTP 25 node sent once the atom cache was negotiated (see the
# test that decodes it in src/dist/codec/tests.rs).
with open(os.path.join(FIXTURES, "codec", "streams", "otp25_atom_cache.bin"), "rb") as fh:
    write("frame_decoder", "11_recorded_atom_cache", b"\x05\x00" + fh.read())

# handshake: [mode, chunking seed] + bytes; honest prefix of 0..3 outputs.
for side in (0, 1):
    for version in (0, 2):
        for prefix in range(4):
            mode = side | version | (prefix << 2)
            write("handshake", "mode_%02x" % mode, bytes([mode, 0x03]))


def transcript(name):
    fields = {}
    with open(os.path.join(FIXTURES, "handshake", name)) as fh:
        for line in fh:
            if "=" in line and not line.startswith("#"):
                k, v = line.strip().split("=", 1)
                fields[k] = v
    return bytes.fromhex(fields["peer_to_us"])


# A real erl client talking to our server, and a real erl server to our client.
write("handshake", "erl_client_v6", b"\x00\x04" + transcript("erl_client_v6.txt"))
write("handshake", "erl_server_v6", b"\x01\x04" + transcript("erl_server_v6.txt"))


# epmd_proto: [selector] + bytes.
def req(body):
    return struct.pack(">H", len(body)) + body


def entry(name, extra=b""):
    return (struct.pack(">HBBHH", 4370, 77, 0, 6, 5) + struct.pack(">H", len(name)) + name
            + struct.pack(">H", len(extra)) + extra)


write("epmd_proto", "alive2_req", b"\x00" + req(b"x" + entry(b"erl1", b"\x01\x02")))
write("epmd_proto", "port_please2_req", b"\x00" + req(b"zerl1"))
write("epmd_proto", "names_req", b"\x00" + req(b"n"))
write("epmd_proto", "alive2_x_resp", b"\x01" + b"v\x00" + be32(1795423969))
write("epmd_proto", "alive2_resp", b"\x01" + b"y\x00\x00\x03")
write("epmd_proto", "port2_resp_found", b"\x02" + b"w\x00" + entry(b"erl1"))
write("epmd_proto", "port2_resp_not_found", b"\x02" + b"w\x01")
write("epmd_proto", "names_resp", b"\x03" + be32(4369)
      + b"name erl1 at port 4370\nname rust at port 40000\n")


# etf: the terms of the phash2 corpus (recorded from a real erl), and the
# small recorded CRDT/Horde term files.
with open(os.path.join(FIXTURES, "phash2", "corpus.txt")) as fh:
    for i, line in enumerate(fh):
        if line.startswith("etf:"):
            write("etf", "phash2_corpus_%03d" % i, bytes.fromhex(line.split()[0][4:]))
for root, _, files in os.walk(FIXTURES):
    for f in sorted(files):
        path = os.path.join(root, f)
        if f.endswith(".etf") and os.path.getsize(path) <= 8192:
            with open(path, "rb") as fh:
                write("etf", "fixture_" + f[:-4], fh.read())
