//! Unit tests and property tests for snapshot storage: the file format, every
//! way a file can be bad, the crash window of a write, names, and concurrency.

use super::*;
use crate::crdt::{term_cmp, AwLwwMap};
use crate::term::{atom, binary, int, list, tuple, Float, Map, Pid, Reference};
use proptest::prelude::*;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

const NAME: &str = "Elixir.MyApp.Registry.Crdt";

/// A fresh directory under the system temp dir, removed on drop (no
/// `tempfile` dev-dependency in this crate).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "beam_peer-storage-{}-{}-{:x}",
            std::process::id(),
            N.fetch_add(1, AtomicOrdering::Relaxed),
            rand::random::<u32>()
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Terms compared as Erlang's `=:=` does: our encoder writes `[1, 2]` as
/// `STRING_EXT`, which comes back as a byte list, the same Erlang term.
fn same_term(a: &Term, b: &Term) -> bool {
    term_cmp(a, b) == Ordering::Equal
}

fn same_snapshot(a: &Snapshot, b: &Snapshot) -> bool {
    a.node_id == b.node_id
        && a.sequence_number == b.sequence_number
        && same_term(&a.crdt_state, &b.crdt_state)
        && match (&a.merkle_map, &b.merkle_map) {
            (None, None) => true,
            (Some(x), Some(y)) => same_term(x, y),
            _ => false,
        }
}

/// A real AWLWWMap state, as the CRDT layer would hand it over.
fn sample_state() -> Term {
    let mut state = AwLwwMap::new();
    let delta = state.add(
        atom("key"),
        tuple(vec![Term::Pid(Pid::new("a@host", 42, 0, 3)), int(-1)]),
        7,
        1_700_000_000_000,
    );
    state.apply(&delta, &[atom("key")]);
    state.to_term()
}

fn sample(node_id: i64) -> Snapshot {
    Snapshot {
        node_id,
        sequence_number: 0,
        crdt_state: sample_state(),
        // Stand-in for a `%MerkleMap{}`: storage never looks inside.
        merkle_map: Some(Term::Map(Map {
            map: [(atom("__struct__"), atom("Elixir.MerkleMap"))]
                .into_iter()
                .collect(),
        })),
    }
}

fn read_corrupt(storage: &FileStorage, name: &str) -> Corruption {
    match storage.read(name) {
        Err(StorageError::Corrupt { path, reason }) => {
            assert_eq!(path, storage.path_for(name).unwrap());
            reason
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A file with a correct header around `payload`.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

// ---- format ---------------------------------------------------------------------

#[test]
fn crc32_matches_the_standard_check_values() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414F_A339
    );
}

#[test]
fn snapshot_term_is_upstreams_tuple() {
    let s = sample(123_456_789);
    let t = s.to_term();
    let e = term::as_tuple(&t).unwrap();
    assert_eq!(e.len(), 4);
    assert_eq!(e[0], int(123_456_789));
    assert_eq!(e[1], int(0));
    assert_eq!(Snapshot::from_term(&t).unwrap(), s);

    // Without a merkle map: DeltaCrdt 0.5's three-tuple, read back as such.
    let old = Snapshot {
        merkle_map: None,
        ..s
    };
    let t = old.to_term();
    assert_eq!(term::as_tuple(&t).unwrap().len(), 3);
    assert_eq!(Snapshot::from_term(&t).unwrap(), old);

    for bad in [
        atom("nil"),
        tuple(vec![int(1), int(2)]),
        tuple(vec![int(1), int(2), int(3), int(4), int(5)]),
        tuple(vec![atom("x"), int(0), int(0)]),
        tuple(vec![int(1), binary("0"), int(0)]),
    ] {
        assert!(matches!(
            Snapshot::from_term(&bad),
            Err(Corruption::Shape(_))
        ));
    }
}

#[test]
fn payload_is_plain_term_to_binary_of_the_tuple() {
    let s = sample(1);
    let bytes = encode_file(&s).unwrap();
    assert_eq!(&bytes[..6], b"BPCRDT");
    assert_eq!(bytes[6], FORMAT_VERSION);
    let payload = &bytes[HEADER_LEN..];
    assert_eq!(payload[0], 131);
    assert_eq!(
        u64::from_be_bytes(bytes[7..15].try_into().unwrap()),
        payload.len() as u64
    );
    let term = crate::term::etf::from_binary(payload).unwrap();
    assert!(same_term(&term, &s.to_term()));
}

#[test]
fn negative_small_int_lists_survive() {
    // [-1, 2] must not be written as STRING_EXT (it would read back as [255, 2]).
    let s = Snapshot {
        node_id: 1,
        sequence_number: 0,
        crdt_state: list(vec![int(-1), int(2)]),
        merkle_map: None,
    };
    let back = decode_file(&encode_file(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

// ---- round trips ----------------------------------------------------------------

#[test]
fn file_round_trip_and_overwrite() {
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    let first = sample(999_999_999);
    storage.write(NAME, &first).unwrap();
    let back = storage.read(NAME).unwrap().unwrap();
    assert!(same_snapshot(&back, &first));
    // The state is still a state the CRDT layer accepts.
    let state = AwLwwMap::from_term(&back.crdt_state).unwrap();
    assert!(state.get(&atom("key")).is_some());

    let second = Snapshot {
        node_id: 5,
        sequence_number: i64::MAX,
        crdt_state: AwLwwMap::new().to_term(),
        merkle_map: None,
    };
    storage.write(NAME, &second).unwrap();
    assert!(same_snapshot(
        &storage.read(NAME).unwrap().unwrap(),
        &second
    ));
    assert_eq!(dir.files(), vec![format!("{NAME}.bpcrdt")]);
}

#[test]
fn memory_round_trip() {
    let storage = MemoryStorage::new();
    assert!(storage.read(NAME).unwrap().is_none());
    let s = sample(i64::MIN);
    storage.write(NAME, &s).unwrap();
    assert!(same_snapshot(&storage.read(NAME).unwrap().unwrap(), &s));
    assert!(storage.read("Elixir.Other").unwrap().is_none());
}

#[test]
fn storage_is_object_safe() {
    let dir = TempDir::new();
    let stores: Vec<Box<dyn Storage>> = vec![
        Box::new(MemoryStorage::new()),
        Box::new(FileStorage::new(&dir.0)),
    ];
    for store in &stores {
        store.write(NAME, &sample(3)).unwrap();
        assert_eq!(store.read(NAME).unwrap().unwrap().node_id, 3);
    }
}

#[test]
fn missing_file_is_none() {
    let dir = TempDir::new();
    assert!(FileStorage::new(&dir.0).read(NAME).unwrap().is_none());
    // A directory that does not exist holds no snapshot either.
    let gone = FileStorage::new(dir.0.join("nope"));
    assert!(gone.read(NAME).unwrap().is_none());
}

#[test]
fn write_into_missing_directory_is_an_io_error_and_open_creates_it() {
    let dir = TempDir::new();
    let sub = dir.0.join("a/b");
    let err = FileStorage::new(&sub).write(NAME, &sample(1)).unwrap_err();
    assert!(
        matches!(err, StorageError::Io { op: "create", .. }),
        "{err}"
    );
    let storage = FileStorage::open(&sub).unwrap();
    storage.write(NAME, &sample(1)).unwrap();
    assert_eq!(storage.read(NAME).unwrap().unwrap().node_id, 1);
}

// ---- corruption -----------------------------------------------------------------

#[test]
fn every_kind_of_bad_file_is_corrupt() {
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    let good = encode_file(&sample(1)).unwrap();
    let path = storage.path_for(NAME).unwrap();
    let payload_len = (good.len() - HEADER_LEN) as u64;

    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        fs::write(&path, &b).unwrap();
        read_corrupt(&storage, NAME)
    };

    assert_eq!(with(&|b| b[0] = b'X'), Corruption::BadMagic);
    assert_eq!(with(&|b| b[6] = 2), Corruption::UnsupportedVersion(2));
    // Length field says more than is there: what a torn write looks like.
    assert_eq!(
        with(&|b| b[7..15].copy_from_slice(&(payload_len + 1).to_be_bytes())),
        Corruption::Truncated {
            declared: payload_len + 1,
            actual: payload_len
        }
    );
    // A huge declared length is just a mismatch, never an allocation.
    assert_eq!(
        with(&|b| b[7..15].copy_from_slice(&u64::MAX.to_be_bytes())),
        Corruption::Truncated {
            declared: u64::MAX,
            actual: payload_len
        }
    );
    assert_eq!(
        with(&|b| b.push(0)),
        Corruption::TrailingBytes {
            declared: payload_len,
            extra: 1
        }
    );
    assert!(matches!(with(&|b| b[15] ^= 1), Corruption::Checksum { .. }));
    assert!(matches!(
        with(&|b| {
            let last = b.len() - 1;
            b[last] ^= 0x80
        }),
        Corruption::Checksum { .. }
    ));
    assert!(matches!(
        with(&|b| b.truncate(b.len() - 3)),
        Corruption::Truncated { .. }
    ));
    assert_eq!(
        with(&|b| b.truncate(10)),
        Corruption::ShortHeader { len: 10 }
    );
    assert_eq!(with(&|b| b.clear()), Corruption::ShortHeader { len: 0 });
    assert_eq!(with(&|b| *b = b"garbage".to_vec()), Corruption::BadMagic);
}

#[test]
fn hostile_payloads_behind_a_valid_header_are_corrupt() {
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    let path = storage.path_for(NAME).unwrap();
    let mut deep = vec![131];
    deep.extend(std::iter::repeat_n([104u8, 1], MAX_SNAPSHOT_DEPTH + 1).flatten());
    deep.push(106);
    let cases: Vec<Vec<u8>> = vec![
        vec![],                                    // no term at all
        vec![104, 0],                              // no version byte
        vec![131, 108, 255, 255, 255, 255],        // LIST_EXT claiming 2^32 - 1 elements
        vec![131, 116, 255, 255, 255, 255],        // MAP_EXT claiming 2^32 - 1 pairs
        vec![131, 109, 0, 0, 0, 9, 1],             // BINARY_EXT longer than the file
        vec![131, 82, 0],                          // ATOM_CACHE_REF: never in a file
        vec![131, 68],                             // distribution header: never in a term
        vec![131, 77, 0, 0, 0, 1, 0, 255],         // bit binary with 0 trailing bits
        vec![131, 80, 0, 0, 0, 1, 120, 156],       // compressed: never inflated
        vec![131, 70, 127, 240, 0, 0, 0, 0, 0, 0], // +infinity
        vec![131, 106, 106],                       // two terms
        vec![131, 119, 2, 0xff, 0xfe],             // atom that is not UTF-8
        deep,
    ];
    for payload in cases {
        fs::write(&path, framed(&payload)).unwrap();
        let reason = read_corrupt(&storage, NAME);
        assert!(
            matches!(reason, Corruption::Term(_)),
            "{payload:?}: {reason}"
        );
    }
    // Valid terms that are not snapshots.
    for t in [atom("nil"), tuple(vec![binary("x"), int(0), int(0)])] {
        fs::write(&path, framed(&etf::to_binary(&t).unwrap())).unwrap();
        assert!(matches!(read_corrupt(&storage, NAME), Corruption::Shape(_)));
    }
}

#[test]
fn depth_limit_is_enforced_on_write_and_the_limit_itself_round_trips() {
    fn nested(levels: usize) -> Term {
        (0..levels).fold(atom("leaf"), |t, _| tuple(vec![t]))
    }
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    // The snapshot tuple is one level; the state's leaf sits at depth
    // 1 + levels, which must stay below the limit.
    let ok = Snapshot {
        node_id: 1,
        sequence_number: 0,
        crdt_state: nested(MAX_SNAPSHOT_DEPTH - 2),
        merkle_map: None,
    };
    storage.write(NAME, &ok).unwrap();
    assert!(same_snapshot(&storage.read(NAME).unwrap().unwrap(), &ok));

    let too_deep = Snapshot {
        crdt_state: nested(MAX_SNAPSHOT_DEPTH - 1),
        ..ok.clone()
    };
    assert!(matches!(
        storage.write(NAME, &too_deep),
        Err(StorageError::TooDeep { .. })
    ));
    // The refused write left the previous snapshot alone.
    assert!(same_snapshot(&storage.read(NAME).unwrap().unwrap(), &ok));
}

#[test]
fn unencodable_snapshot_is_an_error_and_writes_nothing() {
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    let s = Snapshot {
        crdt_state: atom(&"a".repeat(300)),
        ..sample(1)
    };
    assert!(matches!(
        storage.write(NAME, &s),
        Err(StorageError::Encode(_))
    ));
    assert!(dir.files().is_empty());
    assert!(matches!(
        MemoryStorage::new().write(NAME, &s),
        Err(StorageError::Encode(_))
    ));
}

// ---- crash window ---------------------------------------------------------------

#[test]
fn crash_between_temp_write_and_rename_keeps_the_old_snapshot() {
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    let old = sample(1);
    storage.write(NAME, &old).unwrap();

    // Simulate two crashed writes: one whose temp file is complete and
    // fsynced (crash just before rename), one torn halfway through.
    let stem = file_stem(NAME).unwrap();
    let new_bytes = encode_file(&sample(2)).unwrap();
    let complete = storage.write_temp(&stem, &new_bytes).unwrap();
    let torn = storage
        .write_temp(&stem, &new_bytes[..new_bytes.len() / 2])
        .unwrap();
    // Another name's temp, whose file name starts like one of ours.
    let other_name = format!("{NAME}.bpcrdt.tmp.0123456789abcdef");
    let other_stem = file_stem(&other_name).unwrap();
    let other = storage.write_temp(&other_stem, &new_bytes).unwrap();
    assert_eq!(dir.files().len(), 4);

    // `read` never looks at temp files.
    assert!(same_snapshot(&storage.read(NAME).unwrap().unwrap(), &old));
    assert!(storage.read(&other_name).unwrap().is_none());

    // The next write cleans this name's leftovers, and only those.
    let newest = sample(3);
    storage.write(NAME, &newest).unwrap();
    assert!(!complete.exists());
    assert!(!torn.exists());
    assert!(other.exists());
    assert!(same_snapshot(
        &storage.read(NAME).unwrap().unwrap(),
        &newest
    ));
    assert_eq!(dir.files().len(), 2);
}

// ---- names ----------------------------------------------------------------------

#[test]
fn unsafe_names_are_rejected_everywhere() {
    let dir = TempDir::new();
    let file = FileStorage::new(&dir.0);
    let memory = MemoryStorage::new();
    let long = "A".repeat(MAX_ENCODED_NAME + 1);
    for name in [
        "",
        "a/b",
        "/etc/passwd",
        "a\\b",
        "..",
        "../x",
        "a..b",
        ".",
        ".hidden",
        "a\0b",
        long.as_str(),
    ] {
        for store in [&file as &dyn Storage, &memory] {
            let err = store.write(name, &sample(1)).unwrap_err();
            assert!(matches!(err, StorageError::UnsafeName { .. }), "{name:?}");
            let err = store.read(name).unwrap_err();
            assert!(matches!(err, StorageError::UnsafeName { .. }), "{name:?}");
        }
    }
    assert!(dir.files().is_empty());
}

#[test]
fn names_map_one_to_one_onto_plain_file_names() {
    let dir = TempDir::new();
    let storage = FileStorage::new(&dir.0);
    assert_eq!(
        storage.path_for(NAME).unwrap(),
        dir.0.join("Elixir.MyApp.Registry.Crdt.bpcrdt")
    );
    assert_eq!(
        storage.path_for("a b:é%").unwrap(),
        dir.0.join("a%20b%3A%C3%A9%25.bpcrdt")
    );
    // `%` is itself encoded, so "a%20b" and "a b" stay distinct.
    let names = ["a b", "a%20b", "a.bpcrdt", "a"];
    for (i, name) in names.iter().enumerate() {
        storage.write(name, &sample(i as i64)).unwrap();
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(storage.read(name).unwrap().unwrap().node_id, i as i64);
    }
    assert_eq!(dir.files().len(), names.len());
}

// ---- concurrency ----------------------------------------------------------------

#[test]
fn concurrent_writers_to_different_names() {
    let dir = TempDir::new();
    let storage = Arc::new(FileStorage::new(&dir.0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let storage = Arc::clone(&storage);
            std::thread::spawn(move || {
                let name = format!("Elixir.Crdt{t}");
                for i in 0..20 {
                    let s = Snapshot {
                        sequence_number: i,
                        ..sample(t)
                    };
                    storage.write(&name, &s).unwrap();
                    // Every read sees a complete snapshot, never a torn one.
                    let back = storage.read(&name).unwrap().unwrap();
                    assert_eq!((back.node_id, back.sequence_number), (t, i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for t in 0..8 {
        let back = storage.read(&format!("Elixir.Crdt{t}")).unwrap().unwrap();
        assert_eq!((back.node_id, back.sequence_number), (t, 19));
    }
    assert_eq!(
        dir.files().len(),
        8,
        "no temp files left: {:?}",
        dir.files()
    );
}

#[test]
fn concurrent_writers_to_one_name_leave_one_whole_snapshot() {
    let dir = TempDir::new();
    let storage = Arc::new(FileStorage::new(&dir.0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let storage = Arc::clone(&storage);
            std::thread::spawn(move || {
                for _ in 0..10 {
                    storage.write(NAME, &sample(t)).unwrap();
                    assert!(storage.read(NAME).unwrap().is_some());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let back = storage.read(NAME).unwrap().unwrap();
    assert!((0..4).contains(&back.node_id));
    assert_eq!(dir.files().len(), 1);
}

// ---- properties -----------------------------------------------------------------

fn leaf_term() -> impl Strategy<Value = Term> {
    prop_oneof![
        any::<i64>().prop_map(int),
        (-300i64..300).prop_map(int),
        (-1e9f64..1e9).prop_map(|value| Term::Float(Float { value })),
        "[a-zA-Z_.]{0,12}".prop_map(|s| atom(&s)),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(binary),
        (any::<u32>(), any::<u32>())
            .prop_map(|(id, serial)| { Term::Pid(Pid::new("n@host", id, serial, 1)) }),
        proptest::collection::vec(any::<u32>(), 1..=3).prop_map(|id| {
            Term::Reference(Box::new(Reference {
                node: "n@host".into(),
                id,
                creation: 2,
            }))
        }),
        Just(list(vec![])),
    ]
}

fn small_term() -> impl Strategy<Value = Term> {
    leaf_term().prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(tuple),
            proptest::collection::vec(inner.clone(), 0..5).prop_map(list),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(|kv| {
                Term::Map(Map {
                    map: kv.into_iter().collect(),
                })
            }),
        ]
    })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<i64>(),
        any::<i64>(),
        small_term(),
        proptest::option::of(small_term()),
    )
        .prop_map(
            |(node_id, sequence_number, crdt_state, merkle_map)| Snapshot {
                node_id,
                sequence_number,
                crdt_state,
                merkle_map,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_file(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_our_magic_never_panic(
        version in prop_oneof![Just(FORMAT_VERSION), any::<u8>()],
        rest in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(version);
        bytes.extend(rest);
        let _ = decode_file(&bytes);
    }

    /// The checksum is right, so the payload reaches the walk and the decoder.
    #[test]
    fn arbitrary_payload_with_a_valid_header_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut payload = vec![131];
        payload.extend(body);
        match decode_file(&framed(&payload)) {
            Ok(_) | Err(Corruption::Term(_) | Corruption::Shape(_)) => {}
            Err(other) => prop_assert!(false, "header check failed: {other}"),
        }
    }

    #[test]
    fn snapshots_round_trip_through_the_bytes(s in snapshot()) {
        let back = decode_file(&encode_file(&s).unwrap()).unwrap();
        prop_assert!(same_snapshot(&back, &s), "{s:?} came back as {back:?}");
    }

    #[test]
    fn every_single_byte_change_is_detected(
        s in snapshot(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = encode_file(&s).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(decode_file(&bytes).is_err());
    }

    #[test]
    fn every_truncation_is_detected(s in snapshot(), at in any::<prop::sample::Index>()) {
        let bytes = encode_file(&s).unwrap();
        let cut = at.index(bytes.len());
        prop_assert!(decode_file(&bytes[..cut]).is_err());
    }
}

proptest! {
    // These touch the file system (two fsyncs per write): fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn arbitrary_bytes_as_a_store_file_never_panic_read(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let dir = TempDir::new();
        let storage = FileStorage::new(&dir.0);
        fs::write(storage.path_for(NAME).unwrap(), &bytes).unwrap();
        match storage.read(NAME) {
            Ok(_) | Err(StorageError::Corrupt { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error: {other}"),
        }
    }

    #[test]
    fn snapshots_round_trip_through_files(a in snapshot(), b in snapshot()) {
        let dir = TempDir::new();
        let storage = FileStorage::new(&dir.0);
        storage.write(NAME, &a).unwrap();
        prop_assert!(same_snapshot(&storage.read(NAME).unwrap().unwrap(), &a));
        storage.write(NAME, &b).unwrap();
        prop_assert!(same_snapshot(&storage.read(NAME).unwrap().unwrap(), &b));
        let memory = MemoryStorage::new();
        memory.write(NAME, &a).unwrap();
        prop_assert!(same_snapshot(&memory.read(NAME).unwrap().unwrap(), &a));
    }
}
