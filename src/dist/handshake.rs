//! The distribution handshake as a sans-I/O state machine (client and server side).
