//! Optional durable storage for a CRDT, so a restarted node comes back with
//! its node id, sequence number and state: the Rust side of DeltaCrdt's
//! `storage_module` option.
//!
//! # What DeltaCrdt stores, and when (0.6.4, `DeltaCrdt.CausalCrdt`)
//!
//! - **What:** the tuple `{node_id, sequence_number, crdt_state, merkle_map}`,
//!   passed to `write(name, tuple)` and expected back from `read(name)`.
//!   The `DeltaCrdt.Storage` typespec still shows the 0.5 three-tuple
//!   `{node_id, sequence_number, crdt_state}`, but since the move to the
//!   MerkleMap library (0.6.0) the code writes and matches four elements.
//!   `node_id` is the `:rand.uniform(1_000_000_000)` picked at start,
//!   `crdt_state` the `%DeltaCrdt.AWLWWMap{}` struct, `merkle_map` the
//!   `%MerkleMap{}` kept beside it for sync. `sequence_number` is still
//!   stored and restored, but 0.6 never increments it: it is always 0.
//! - **When written:** synchronously, after every state update: each local
//!   operation (each one of a bulk operation too) and each diff received from
//!   a neighbour, even when the update changed nothing. Upstream matches the
//!   result with `:ok =`, so a failing write crashes the CRDT process.
//! - **When read:** once, in `handle_continue(:read_storage)` right after
//!   `init`. `nil` keeps the fresh random node id and empty state; a tuple
//!   replaces node id, sequence number, state and merkle map, and resets the
//!   state's transient `keys` field to an empty MapSet. Doing that reset is
//!   the CRDT layer's job, not this module's.
//!
//! [`Snapshot`] is that tuple. [`Snapshot::to_term`] gives exactly the term
//! upstream passes to `write/2` (the three-tuple when there is no merkle map),
//! and [`Snapshot::from_term`] accepts both shapes.
//!
//! # What this module owns
//!
//! The [`Storage`] trait, [`MemoryStorage`] for tests, and [`FileStorage`]:
//! one file per CRDT name, replaced atomically (temp file in the same
//! directory, fsync, rename over the old file, fsync the directory), so a
//! crash at any point leaves either the old or the new snapshot, never a mix.
//!
//! File format (all integers big-endian):
//!
//! | bytes | field                                      |
//! |-------|--------------------------------------------|
//! | 6     | magic `BPCRDT`                             |
//! | 1     | format version, [`FORMAT_VERSION`]         |
//! | 8     | payload length (u64)                       |
//! | 4     | CRC-32 (IEEE) of the payload               |
//! | n     | payload: `term_to_binary` of the tuple     |
//!
//! The payload is plain external term format with its version byte, so
//! `:erlang.binary_to_term/1` on it gives exactly what an Elixir
//! `storage_module`'s `read/1` would return.
//!
//! # What it never does
//!
//! - Panic or over-allocate on a bad file: every header field is checked, the
//!   checksum is verified, and the payload is walked (lengths backed by real
//!   bytes, nesting at most [`MAX_SNAPSHOT_DEPTH`], only tags our encoder
//!   writes) before `term::etf` decodes it, so no length field is trusted and
//!   every allocation is bounded by a small multiple of the file's real size
//!   (the decoder checks counts and nesting itself too). A bad file is
//!   [`StorageError::Corrupt`], a missing one `Ok(None)`.
//! - Interpret the CRDT state or the merkle map: both are opaque terms here;
//!   `crdt::awlww_map` parses the state.
//! - Write a file it could not read back: a snapshot nested deeper than
//!   [`MAX_SNAPSHOT_DEPTH`] is refused before any I/O.
//! - Touch anything outside its directory: names with path separators, `..`,
//!   NUL or a leading `.` are rejected; other bytes outside `[A-Za-z0-9._-]`
//!   are percent-encoded, so distinct names get distinct files.
//! - Coordinate several processes writing the same name in one directory
//!   (upstream has one CRDT process per name too); within one process,
//!   writes to the same name are serialized.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::crdt::awlww_map::MAX_TERM_DEPTH;
use crate::term::{self, etf, Term};

/// First bytes of every store file.
pub const MAGIC: [u8; 6] = *b"BPCRDT";
/// Version of the file layout described in the module docs.
pub const FORMAT_VERSION: u8 = 1;
/// Magic, version, payload length, checksum.
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 8 + 4;
/// Deepest nesting accepted in a snapshot. The CRDT layer accepts keys and
/// values up to [`MAX_TERM_DEPTH`]; the state wraps them in a few levels and
/// the merkle map in up to ~35 more (its tree has 32 levels), so twice that
/// leaves room while still bounding `term::etf`'s recursive decoder (and
/// `Term`'s recursive drop) far below any thread's stack.
pub const MAX_SNAPSHOT_DEPTH: usize = 2 * MAX_TERM_DEPTH;

/// Store files are `<encoded name>.bpcrdt`.
const FILE_SUFFIX: &str = ".bpcrdt";
/// Temp files are `.<encoded name>.bpcrdt.tmp.<16 hex digits>`: the leading
/// dot keeps them apart from store files (names may not start with `.`), and
/// the fixed-width suffix keeps one name's temps apart from another's.
const TEMP_MARK: &str = ".tmp.";
const TEMP_RAND_LEN: usize = 16;
/// Longest encoded name: temp file names add 29 bytes to it and most file
/// systems stop at 255.
const MAX_ENCODED_NAME: usize = 200;
/// The external term format's version byte.
const ETF_VERSION: u8 = 131;

/// What DeltaCrdt persists for one CRDT: `{node_id, sequence_number,
/// crdt_state, merkle_map}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// This replica's node id (upstream: `:rand.uniform(1_000_000_000)`).
    pub node_id: i64,
    /// Upstream's sequence number (always 0 in DeltaCrdt 0.6).
    pub sequence_number: i64,
    /// The `%DeltaCrdt.AWLWWMap{}` wire term.
    pub crdt_state: Term,
    /// The `%MerkleMap{}` term DeltaCrdt 0.6 stores beside the state; `None`
    /// for the 0.5 three-tuple.
    pub merkle_map: Option<Term>,
}

impl Snapshot {
    /// The tuple upstream passes to `write/2`: four elements, or the 0.5
    /// three-tuple when there is no merkle map.
    pub fn to_term(&self) -> Term {
        let mut elements = vec![
            term::int(self.node_id),
            term::int(self.sequence_number),
            self.crdt_state.clone(),
        ];
        if let Some(m) = &self.merkle_map {
            elements.push(m.clone());
        }
        term::tuple(elements)
    }

    /// Reads either tuple shape back. The state and merkle map are not
    /// checked here (they are opaque to storage); the ids must be integers
    /// that fit in an `i64`.
    pub fn from_term(term: &Term) -> Result<Self, Corruption> {
        let elements = term::as_tuple(term).ok_or(Corruption::Shape("not a tuple"))?;
        let (node_id, sequence_number, crdt_state, merkle_map) = match elements {
            [n, s, c] => (n, s, c, None),
            [n, s, c, m] => (n, s, c, Some(m.clone())),
            _ => return Err(Corruption::Shape("not a 3- or 4-tuple")),
        };
        Ok(Snapshot {
            node_id: term::as_i64(node_id).ok_or(Corruption::Shape("node_id not an i64"))?,
            sequence_number: term::as_i64(sequence_number)
                .ok_or(Corruption::Shape("sequence_number not an i64"))?,
            crdt_state: crdt_state.clone(),
            merkle_map,
        })
    }
}

/// Why the bytes of a store file are not a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("{len} bytes, shorter than the {HEADER_LEN}-byte header")]
    ShortHeader { len: usize },
    #[error("bad magic bytes")]
    BadMagic,
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Fewer payload bytes than the header announces: a torn write.
    #[error("truncated: header announces {declared} payload bytes, {actual} present")]
    Truncated { declared: u64, actual: u64 },
    #[error("{extra} bytes after the {declared}-byte payload")]
    TrailingBytes { declared: u64, extra: u64 },
    #[error("checksum mismatch: header has {stored:#010x}, payload gives {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    /// The payload is not one term we are willing to decode.
    #[error("payload is not a valid term: {0}")]
    Term(String),
    /// The payload is a term but not a snapshot tuple.
    #[error("payload is not a snapshot: {0}")]
    Shape(&'static str),
}

/// Why a storage operation failed. Returned, never panicked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The CRDT name cannot safely become a file name.
    #[error("CRDT name {name:?} cannot be stored: {reason}")]
    UnsafeName { name: String, reason: &'static str },
    /// A term of the snapshot has no external-format encoding.
    #[error("snapshot cannot be encoded: {0}")]
    Encode(#[from] etf::EncodeError),
    /// The snapshot nests deeper than [`MAX_SNAPSHOT_DEPTH`], so reading it
    /// back would be refused; nothing was written.
    #[error("snapshot nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// The encoded snapshot would be refused by [`decode_file`] for a reason
    /// other than depth (a bug); nothing was written.
    #[error("snapshot encodes to bytes the reader refuses ({0}); nothing written")]
    Unreadable(String),
    /// The stored snapshot is unreadable. For [`MemoryStorage`], `path` is the name.
    #[error("corrupt snapshot {}: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: Corruption },
    /// A file-system call (`op`) on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where DeltaCrdt-style snapshots live, keyed by CRDT name (for Horde, the
/// module atom's text, e.g. `Elixir.MyApp.Registry.Crdt`). Synchronous, as
/// upstream's callbacks are: call it from a blocking context
/// (`tokio::task::spawn_blocking`) when it does file I/O.
pub trait Storage: Send + Sync {
    /// Durably replaces the snapshot stored under `name`.
    fn write(&self, name: &str, snapshot: &Snapshot) -> Result<(), StorageError>;
    /// The snapshot stored under `name`, or `None` if there is none.
    fn read(&self, name: &str) -> Result<Option<Snapshot>, StorageError>;
}

// ---- file bytes -------------------------------------------------------------

/// The complete file contents for `snapshot`: header and payload.
pub fn encode_file(snapshot: &Snapshot) -> Result<Vec<u8>, StorageError> {
    let payload = etf::to_binary(&snapshot.to_term())?;
    // Our encoder has no depth limit but the reader does: refuse here rather
    // than write a file that can never be read back.
    match check_payload(&payload) {
        Ok(()) => {}
        Err(WalkError::TooDeep) => {
            return Err(StorageError::TooDeep {
                limit: MAX_SNAPSHOT_DEPTH,
            })
        }
        // Anything else means `term::etf` and the walk below disagree: a bug
        // in one of them, reported instead of written.
        Err(e) => return Err(StorageError::Unreadable(e.to_string())),
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses and verifies the complete contents of a store file.
pub fn decode_file(bytes: &[u8]) -> Result<Snapshot, Corruption> {
    if bytes.len() < HEADER_LEN {
        // A prefix of anything but our magic is not a torn file of ours.
        let n = bytes.len().min(MAGIC.len());
        if bytes[..n] != MAGIC[..n] {
            return Err(Corruption::BadMagic);
        }
        return Err(Corruption::ShortHeader { len: bytes.len() });
    }
    // Fixed-size splits: the length check above makes each one succeed, and
    // none of them can panic if it did not.
    let split = bytes
        .split_first_chunk::<6>()
        .and_then(|(magic, rest)| Some((magic, rest.split_first()?)))
        .and_then(|(magic, (version, rest))| {
            let (len, rest) = rest.split_first_chunk::<8>()?;
            let (crc, payload) = rest.split_first_chunk::<4>()?;
            Some((magic, *version, len, crc, payload))
        });
    let Some((magic, version, len, crc, payload)) = split else {
        return Err(Corruption::ShortHeader { len: bytes.len() });
    };
    if *magic != MAGIC {
        return Err(Corruption::BadMagic);
    }
    if version != FORMAT_VERSION {
        return Err(Corruption::UnsupportedVersion(version));
    }
    let declared = u64::from_be_bytes(*len);
    let stored = u32::from_be_bytes(*crc);
    let actual = payload.len() as u64;
    if actual < declared {
        return Err(Corruption::Truncated { declared, actual });
    }
    if actual > declared {
        return Err(Corruption::TrailingBytes {
            declared,
            extra: actual - declared,
        });
    }
    let computed = crc32(payload);
    if computed != stored {
        return Err(Corruption::Checksum { stored, computed });
    }
    // The checksum only proves the bytes are the ones written; the walk
    // proves they are one well-formed term of tags we write, within our
    // limits, before the decoder allocates anything for them, even if someone
    // else wrote them.
    check_payload(payload).map_err(|e| Corruption::Term(e.to_string()))?;
    let term = crate::term::etf::from_binary_nested(payload, MAX_SNAPSHOT_DEPTH)
        .map_err(|e| Corruption::Term(e.to_string()))?;
    Snapshot::from_term(&term)
}

// ---- CRC-32 -------------------------------------------------------------------

/// CRC-32/IEEE (reflected, polynomial 0xEDB88320): zlib's and PNG's, so the
/// value can be checked with any standard tool. Catches every burst error of
/// up to 32 bits, which is what a torn or bit-rotted file looks like.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32/IEEE of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

// ---- payload walk ---------------------------------------------------------------

/// Why a payload is not one term we hand to `term::etf` to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum WalkError {
    #[error("missing external-format version byte")]
    NoVersion,
    #[error("truncated at byte {0}")]
    Truncated(usize),
    #[error("tag {tag} at byte {at} is not one our encoder writes")]
    Tag { tag: u8, at: usize },
    #[error("bit binary with {0} trailing bits")]
    BitCount(u8),
    #[error("nested deeper than {MAX_SNAPSHOT_DEPTH}")]
    TooDeep,
    #[error("{0} bytes after the term")]
    Trailing(usize),
}

/// Proves `payload` is exactly one versioned term whose length fields are
/// all backed by real bytes, nested at most [`MAX_SNAPSHOT_DEPTH`] deep, and
/// made only of tags `term::etf` writes. The decoder bounds its own
/// allocations and nesting as well; this walk is defence in depth that
/// allocates nothing, does work linear in the payload, and refuses anything
/// our encoder would not have written (an atom cache reference, a
/// distribution header, a compressed term, a bad bit count) before decoding
/// starts.
///
/// (`dist::codec` has the same kind of walk for peer input, private to it.)
fn check_payload(payload: &[u8]) -> Result<(), WalkError> {
    if payload.first() != Some(&ETF_VERSION) {
        return Err(WalkError::NoVersion);
    }
    let end = Walker(payload).term(1, 0)?;
    match payload.len() - end {
        0 => Ok(()),
        extra => Err(WalkError::Trailing(extra)),
    }
}

struct Walker<'a>(&'a [u8]);

impl Walker<'_> {
    /// `pos + n` if those bytes exist.
    fn skip(&self, pos: usize, n: usize) -> Result<usize, WalkError> {
        pos.checked_add(n)
            .filter(|&end| end <= self.0.len())
            .ok_or(WalkError::Truncated(pos))
    }

    fn uint(&self, pos: usize, width: usize) -> Result<usize, WalkError> {
        let end = self.skip(pos, width)?;
        Ok(self.0[pos..end]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
    }

    /// `count` consecutive terms. Each is at least one byte, so a lying count
    /// runs out of bytes after at most `len` steps.
    fn terms(&self, mut pos: usize, count: usize, depth: usize) -> Result<usize, WalkError> {
        for _ in 0..count {
            pos = self.term(pos, depth)?;
        }
        Ok(pos)
    }

    fn term(&self, pos: usize, depth: usize) -> Result<usize, WalkError> {
        if depth >= MAX_SNAPSHOT_DEPTH {
            return Err(WalkError::TooDeep);
        }
        let tag = *self.0.get(pos).ok_or(WalkError::Truncated(pos))?;
        let (p, d) = (pos + 1, depth + 1);
        match tag {
            70 => self.skip(p, 8),                           // NEW_FLOAT_EXT
            97 => self.skip(p, 1),                           // SMALL_INTEGER_EXT
            98 => self.skip(p, 4),                           // INTEGER_EXT
            106 => Ok(p),                                    // NIL_EXT
            118 | 107 => self.skip(p + 2, self.uint(p, 2)?), // ATOM_UTF8_EXT, STRING_EXT
            119 => self.skip(p + 1, self.uint(p, 1)?),       // SMALL_ATOM_UTF8_EXT
            109 => self.skip(p + 4, self.uint(p, 4)?),       // BINARY_EXT
            77 => {
                // BIT_BINARY_EXT: the last byte holds 1..=8 bits; 0 bits
                // on a non-empty binary (or more than 8) is malformed.
                let len = self.uint(p, 4)?;
                let bits = self.uint(p + 4, 1)? as u8;
                if bits > 8 || (len > 0 && bits == 0) {
                    return Err(WalkError::BitCount(bits));
                }
                self.skip(p + 5, len)
            }
            110 => self.skip(p + 2, self.uint(p, 1)?), // SMALL_BIG_EXT
            111 => self.skip(p + 5, self.uint(p, 4)?), // LARGE_BIG_EXT
            104 => self.terms(p + 1, self.uint(p, 1)?, d), // SMALL_TUPLE_EXT
            105 => self.terms(p + 4, self.uint(p, 4)?, d), // LARGE_TUPLE_EXT
            108 => {
                // LIST_EXT: elements, then the tail
                let end = self.terms(p + 4, self.uint(p, 4)?, d)?;
                self.term(end, d)
            }
            116 => {
                // MAP_EXT: arity key/value pairs
                let pairs = self.uint(p, 4)?.checked_mul(2);
                self.terms(p + 4, pairs.ok_or(WalkError::Truncated(p))?, d)
            }
            // Node atom, then fixed-size fields.
            88 => self.skip(self.term(p, d)?, 12), // NEW_PID_EXT
            89 => self.skip(self.term(p, d)?, 8),  // NEW_PORT_EXT
            120 => self.skip(self.term(p, d)?, 12), // V4_PORT_EXT
            90 => {
                // NEWER_REFERENCE_EXT: Len, Node, Creation, Len x u32
                let words = self.uint(p, 2)?;
                let after_node = self.term(p + 2, d)?;
                self.skip(after_node, 4 + 4 * words)
            }
            113 => self.terms(p, 3, d), // EXPORT_EXT: Module, Function, Arity
            112 => {
                // NEW_FUN_EXT: Size, Arity, Uniq[16], Index, NumFree, then
                // Module, OldIndex, OldUniq, Pid, free variables
                let fixed = self.skip(p, 4 + 1 + 16 + 4)?;
                let num_free = self.uint(fixed, 4)?;
                let after = self.terms(fixed + 4, 4, d)?;
                self.terms(after, num_free, d)
            }
            117 => {
                // FUN_EXT: NumFree, Pid, Module, Index, Uniq, free variables
                let num_free = self.uint(p, 4)?;
                let after = self.terms(p + 4, 4, d)?;
                self.terms(after, num_free, d)
            }
            _ => Err(WalkError::Tag { tag, at: pos }),
        }
    }
}

// ---- names ------------------------------------------------------------------------

/// The file stem for a CRDT name: dangerous names rejected, the rest
/// percent-encoded outside `[A-Za-z0-9._-]` (`%` included, so the mapping
/// is one-to-one). Module atoms such as `Elixir.MyApp.Registry.Crdt` come
/// through unchanged.
fn file_stem(name: &str) -> Result<String, StorageError> {
    let unsafe_name = |reason| StorageError::UnsafeName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(unsafe_name("empty"));
    }
    if name.contains('\0') {
        return Err(unsafe_name("contains NUL"));
    }
    if name.contains(['/', '\\']) {
        return Err(unsafe_name("contains a path separator"));
    }
    if name.contains("..") {
        return Err(unsafe_name("contains `..`"));
    }
    if name.starts_with('.') {
        // Hidden files, `.`, and our temp files all start with a dot.
        return Err(unsafe_name("starts with `.`"));
    }
    let mut stem = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            stem.push(char::from(b));
        } else {
            stem.push_str(&format!("%{b:02X}"));
        }
    }
    if stem.len() > MAX_ENCODED_NAME {
        return Err(unsafe_name("too long for a file name"));
    }
    Ok(stem)
}

// ---- MemoryStorage ------------------------------------------------------------------

/// Snapshots kept in memory, for tests. Stores the same bytes [`FileStorage`]
/// would write and applies the same name rules, so what passes here passes
/// there.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    files: Mutex<HashMap<String, Arc<[u8]>>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStorage {
    fn write(&self, name: &str, snapshot: &Snapshot) -> Result<(), StorageError> {
        file_stem(name)?;
        let bytes: Arc<[u8]> = encode_file(snapshot)?.into();
        // A panic elsewhere while holding the lock cannot leave the map half
        // updated (insert is the only mutation), so poisoning is ignored.
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.insert(name.to_owned(), bytes);
        Ok(())
    }

    fn read(&self, name: &str) -> Result<Option<Snapshot>, StorageError> {
        file_stem(name)?;
        let bytes = {
            let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
            match files.get(name) {
                Some(b) => Arc::clone(b),
                None => return Ok(None),
            }
        };
        decode_file(&bytes)
            .map(Some)
            .map_err(|reason| StorageError::Corrupt {
                path: PathBuf::from(name),
                reason,
            })
    }
}

// ---- FileStorage ----------------------------------------------------------------------

/// One crash-safe file per CRDT name in `dir` (see the module docs for the
/// format and the write protocol).
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    /// One lock per file stem: writes to one name are serialized (so cleaning
    /// stale temps never removes a temp another thread is about to rename),
    /// writes to different names run in parallel.
    write_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl FileStorage {
    /// Storage in `dir`, which must exist by the first write. Does no I/O.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStorage {
            dir: dir.into(),
            write_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Storage in `dir`, creating it (and its parents) if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(Self::new(dir))
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `name`'s snapshot.
    pub fn path_for(&self, name: &str) -> Result<PathBuf, StorageError> {
        Ok(self.dir.join(format!("{}{FILE_SUFFIX}", file_stem(name)?)))
    }

    fn temp_prefix(stem: &str) -> String {
        format!(".{stem}{FILE_SUFFIX}{TEMP_MARK}")
    }

    fn lock_for(&self, stem: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .write_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(stem.to_owned()).or_default())
    }

    /// Writes `bytes` to a fresh temp file for `stem` and fsyncs it. The
    /// first half of [`Storage::write`]; a crash after this leaves only a
    /// stale temp file, which `read` never looks at.
    fn write_temp(&self, stem: &str, bytes: &[u8]) -> Result<PathBuf, StorageError> {
        let temp = self.dir.join(format!(
            "{}{:0width$x}",
            Self::temp_prefix(stem),
            rand::random::<u64>(),
            width = TEMP_RAND_LEN
        ));
        let result = (|| {
            // create_new: never follow or reuse whatever already has this name.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .map_err(io_err("create", &temp))?;
            file.write_all(bytes).map_err(io_err("write", &temp))?;
            file.sync_all().map_err(io_err("fsync", &temp))
        })();
        match result {
            Ok(()) => Ok(temp),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// Removes temp files a crashed write left for `stem`. Best effort: a
    /// leftover temp costs only disk space, so failures are logged, not returned.
    fn remove_stale_temps(&self, stem: &str) {
        let prefix = Self::temp_prefix(stem);
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot list storage directory");
                return;
            }
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            if rest.len() != TEMP_RAND_LEN || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue; // another name's temp, or not ours at all
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(path = %path.display(), "removed stale temp file"),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temp file")
                }
            }
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl Storage for FileStorage {
    fn write(&self, name: &str, snapshot: &Snapshot) -> Result<(), StorageError> {
        let stem = file_stem(name)?;
        // Encode before touching the disk: an unencodable snapshot changes nothing.
        let bytes = encode_file(snapshot)?;
        let path = self.dir.join(format!("{stem}{FILE_SUFFIX}"));
        let lock = self.lock_for(&stem);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.remove_stale_temps(&stem);
        let temp = self.write_temp(&stem, &bytes)?;
        // rename(2) replaces atomically: readers see the old file or the new
        // one. Only after the directory is fsynced is the new name durable.
        if let Err(e) = fs::rename(&temp, &path) {
            let _ = fs::remove_file(&temp);
            return Err(io_err("rename", &path)(e));
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync directory", &self.dir))
    }

    fn read(&self, name: &str) -> Result<Option<Snapshot>, StorageError> {
        let path = self.path_for(name)?;
        // Whole file at once: the allocation is the file's real size, never
        // a size taken from its header.
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        decode_file(&bytes)
            .map(Some)
            .map_err(|reason| StorageError::Corrupt { path, reason })
    }
}

#[cfg(test)]
mod tests;
