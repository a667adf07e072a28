//! libcluster's Gossip heartbeat: one UDP datagram, the bytes `heartbeat::`
//! followed by `term_to_binary(%{node: Node})`; with a `secret`, that
//! plaintext PKCS#7-padded and encrypted with AES-256-CBC under the key
//! SHA-256(secret), sent as the 16-byte IV followed by the ciphertext.
//!
//! This module owns the encoding and decoding of that datagram and nothing
//! else: no sockets, no randomness of its own (the IV is passed in), no
//! decisions about what a heard node means. What it must never do: create
//! anything from a stranger's packet but a node name to try, or trust a
//! length in it (the term decoder is bounded).

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha2::{Digest, Sha256};

use crate::term::{self, etf, Term};

/// The prelude every heartbeat's plaintext starts with.
pub const PRELUDE: &[u8] = b"heartbeat::";

const BLOCK: usize = 16;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// The AES-256 key libcluster derives from a `secret`: its SHA-256.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn from_secret(secret: &str) -> Key {
        Key(Sha256::digest(secret.as_bytes()).into())
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in debug output.
        f.write_str("Key(..)")
    }
}

/// Why a datagram is not a heartbeat we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("not a heartbeat (no \"heartbeat::\" prelude)")]
    NoPrelude,
    #[error("encrypted heartbeat of {0} bytes: shorter than its IV or not whole AES blocks")]
    BadLength(usize),
    #[error("does not decrypt with our secret (bad PKCS#7 padding)")]
    BadPadding,
    #[error("the term after the prelude does not decode: {0}")]
    BadTerm(String),
    #[error("the term is not %{{node: atom}} with a name@host atom")]
    NoNode,
}

impl PacketError {
    /// True for the errors a sender with another secret (or none) causes.
    pub fn is_secret_mismatch(&self) -> bool {
        matches!(
            self,
            PacketError::BadLength(_) | PacketError::BadPadding | PacketError::NoPrelude
        )
    }
}

/// The plaintext of a heartbeat from `node`.
pub fn plaintext(node: &str) -> Vec<u8> {
    let map = Term::Map([(term::atom("node"), term::atom(node))].into());
    let mut out = PRELUDE.to_vec();
    // `term_to_binary/1`, version byte included: libcluster's
    // `binary_to_term` raises without it, and that crashes its Gossip
    // process (seen against a real node). Only an atom longer than 255
    // characters fails to encode, and node names are checked long before
    // they get here; the bare prelude is then a heartbeat nobody acts on.
    if let Ok(t) = etf::to_binary(&map) {
        out.extend_from_slice(&t);
    }
    out
}

/// The datagram a node named `node` sends: plain, or encrypted under `key`
/// with `iv` (16 random bytes chosen per packet by the caller).
pub fn encode(node: &str, key: Option<&Key>, iv: [u8; BLOCK]) -> Vec<u8> {
    let plain = plaintext(node);
    match key {
        None => plain,
        Some(key) => {
            let mut buf = pkcs7_pad(&plain);
            let len = buf.len();
            let enc = Encryptor::new(&key.0.into(), &iv.into());
            // `buf` is whole blocks by construction, so this cannot fail.
            let _ = enc.encrypt_padded_mut::<NoPadding>(&mut buf, len);
            let mut out = iv.to_vec();
            out.extend_from_slice(&buf);
            out
        }
    }
}

/// The node a datagram names. With `key`, the datagram must be IV and
/// ciphertext, as libcluster reads it with a secret set; without, it must be
/// the plain heartbeat (libcluster ignores an encrypted one then).
pub fn decode(datagram: &[u8], key: Option<&Key>) -> Result<String, PacketError> {
    match key {
        None => decode_plain(datagram),
        Some(key) => {
            if datagram.len() < BLOCK || !(datagram.len() - BLOCK).is_multiple_of(BLOCK) {
                return Err(PacketError::BadLength(datagram.len()));
            }
            let (iv, ciphertext) = datagram.split_at(BLOCK);
            if ciphertext.is_empty() {
                return Err(PacketError::BadPadding);
            }
            let mut buf = ciphertext.to_vec();
            let mut iv_block = [0u8; BLOCK];
            iv_block.copy_from_slice(iv);
            let dec = Decryptor::new(&key.0.into(), &iv_block.into());
            let plain = dec
                .decrypt_padded_mut::<NoPadding>(&mut buf)
                .map_err(|_| PacketError::BadLength(datagram.len()))?;
            let plain = pkcs7_unpad(plain).ok_or(PacketError::BadPadding)?;
            decode_plain(plain)
        }
    }
}

fn decode_plain(plain: &[u8]) -> Result<String, PacketError> {
    let rest = plain.strip_prefix(PRELUDE).ok_or(PacketError::NoPrelude)?;
    // %{node: atom} is two levels deep; anything deeper is not a heartbeat.
    let t = etf::from_binary_nested(rest, 4).map_err(|e| PacketError::BadTerm(e.to_string()))?;
    let Term::Map(m) = &t else {
        return Err(PacketError::NoNode);
    };
    let node = m
        .map
        .get(&term::atom("node"))
        .and_then(term::as_atom)
        .ok_or(PacketError::NoNode)?;
    if crate::node::split_node_name(node).is_none() {
        return Err(PacketError::NoNode);
    }
    Ok(node.to_string())
}

fn pkcs7_pad(plain: &[u8]) -> Vec<u8> {
    let pad = BLOCK - plain.len() % BLOCK;
    let mut out = Vec::with_capacity(plain.len() + pad);
    out.extend_from_slice(plain);
    out.resize(plain.len() + pad, pad as u8);
    out
}

/// Unpads as libcluster does: the last byte N (at most 16) and N copies of
/// it at the end. libcluster also takes N = 0 (nothing removed); so do we,
/// since the prelude check after it still rejects garbage.
fn pkcs7_unpad(padded: &[u8]) -> Option<&[u8]> {
    let n = usize::from(*padded.last()?);
    if n > BLOCK || n > padded.len() {
        return None;
    }
    let (body, pad) = padded.split_at(padded.len() - n);
    pad.iter().all(|&b| usize::from(b) == n).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip() {
        let p = encode("a@127.0.0.1", None, [0; 16]);
        assert!(p.starts_with(PRELUDE));
        // term_to_binary(%{node: :"a@127.0.0.1"}): version, MAP_EXT arity 1.
        assert_eq!(
            &p[PRELUDE.len()..PRELUDE.len() + 6],
            &[131, 116, 0, 0, 0, 1]
        );
        assert_eq!(decode(&p, None).as_deref(), Ok("a@127.0.0.1"));
    }

    #[test]
    fn encrypted_round_trip_and_wrong_secret() {
        let key = Key::from_secret("s3cret");
        let p = encode("a@127.0.0.1", Some(&key), [7; 16]);
        assert_eq!(&p[..16], &[7; 16]);
        assert_eq!((p.len() - 16) % 16, 0);
        assert_eq!(decode(&p, Some(&key)).as_deref(), Ok("a@127.0.0.1"));
        let other = Key::from_secret("other");
        let e = decode(&p, Some(&other)).unwrap_err();
        assert!(e.is_secret_mismatch(), "{e:?}");
        // A plain heartbeat to a node with a secret, and the reverse.
        let plain = encode("a@127.0.0.1", None, [0; 16]);
        assert!(decode(&plain, Some(&key)).unwrap_err().is_secret_mismatch());
        assert_eq!(decode(&p, None), Err(PacketError::NoPrelude));
    }

    #[test]
    fn junk_is_an_error_never_a_panic() {
        let key = Key::from_secret("k");
        for junk in [
            &b""[..],
            b"heartbeat::",
            b"heartbeat::\x83",
            b"heartbeat::\x83d\x00\x04node",
            &[0u8; 15],
            &[0u8; 16],
            &[1u8; 33],
        ] {
            assert!(decode(junk, None).is_err());
            assert!(decode(junk, Some(&key)).is_err());
        }
        // %{node: :noat}: not a node name.
        let t = Term::Map([(term::atom("node"), term::atom("noat"))].into());
        let mut p = PRELUDE.to_vec();
        etf::encode(&t, &mut p).unwrap();
        assert_eq!(decode(&p, None), Err(PacketError::NoNode));
    }

    #[test]
    fn unpad_follows_libcluster() {
        assert_eq!(pkcs7_unpad(&[1, 2, 3, 1]), Some(&[1, 2, 3][..]));
        assert_eq!(pkcs7_unpad(&[1, 2, 2, 2]), Some(&[1, 2][..]));
        assert_eq!(pkcs7_unpad(&[1, 2, 3, 2]), None);
        assert_eq!(pkcs7_unpad(&[1, 2, 3, 0]), Some(&[1, 2, 3, 0][..]));
        assert_eq!(pkcs7_unpad(&[17; 32]), None);
        assert_eq!(pkcs7_unpad(&[]), None);
    }
}
