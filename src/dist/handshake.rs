//! The distribution handshake as a sans-I/O state machine (client and server side).
//! (stub: replaced by the real state machine)
#![allow(dead_code, unused_variables)]
pub struct HandshakeConfig { pub name: String, pub creation: u32, pub flags: u64, pub cookie: String }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo { pub name: String, pub flags: u64, pub creation: u32, pub version: u16 }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStatus { Ok, OkSimultaneous, Nok, NotAllowed, Alive }
#[derive(Debug)]
pub enum HandshakeEvent { PeerNamed { name: String, flags: u64, creation: Option<u32> }, Completed { peer: PeerInfo, leftover: Vec<u8> } }
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError { #[error("x")] X }
pub struct Handshake;
impl Handshake {
    pub fn client(cfg: HandshakeConfig, challenge: u32, peer_version: u16) -> Self { todo!() }
    pub fn server(cfg: HandshakeConfig, challenge: u32) -> Self { todo!() }
    pub fn receive(&mut self, data: &[u8]) -> Result<(), HandshakeError> { todo!() }
    pub fn take_output(&mut self) -> Vec<u8> { todo!() }
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> { todo!() }
    pub fn set_status(&mut self, status: ServerStatus) { todo!() }
}
