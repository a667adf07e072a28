//! stub
#![allow(dead_code, unused_variables)]
use std::net::SocketAddr;
pub const DEFAULT_EPMD_PORT: u16 = 4369;
pub fn epmd_port() -> u16 { 4369 }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry { pub name: String, pub port: u16, pub hidden: bool, pub protocol: u8, pub highest_version: u16, pub lowest_version: u16, pub extra: Vec<u8> }
impl NodeEntry { pub fn new(name: &str, port: u16, hidden: bool) -> Self { todo!() } }
#[derive(Debug, thiserror::Error)] pub enum EpmdError { #[error("x")] X }
pub struct Registration { pub creation: u32 }
pub async fn register(addr: SocketAddr, entry: &NodeEntry) -> Result<Registration, EpmdError> { todo!() }
pub async fn port_please(addr: SocketAddr, name: &str) -> Result<Option<NodeEntry>, EpmdError> { todo!() }
pub async fn names(addr: SocketAddr) -> Result<Vec<(String, u16)>, EpmdError> { todo!() }
pub struct EmbeddedEpmd;
impl EmbeddedEpmd { pub fn shutdown(&self) {} }
pub async fn ensure_epmd(port: u16) -> Result<Option<EmbeddedEpmd>, EpmdError> { todo!() }
