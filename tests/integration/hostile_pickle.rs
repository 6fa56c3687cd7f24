//! The restricted unpickler and zip reader behind `nn::load` of `torch.save` files: every opcode
//! family on hand-built pickles, hostile pickles (deep nesting, memo bombs, forbidden globals,
//! truncation, huge length prefixes, random mutations) and hostile or ZIP64 archives. Each case
//! either decodes right or is a clean error, fast.
use crate::common::root;
use lt::nn::torch_pickle::{describe_pickle, load};
use std::io::Write;
use std::time::{Duration, Instant};

fn describe(pkl: &[u8]) -> Result<String, String> {
    describe_pickle(pkl, 10_000)
}

fn ok(pkl: &[u8]) -> String {
    describe(pkl).unwrap_or_else(|e| panic!("{pkl:?}: {e}"))
}

fn err(pkl: &[u8]) -> String {
    match describe(pkl) {
        Ok(v) => panic!("{:?} decoded to {v}, expected an error", &pkl[..pkl.len().min(40)]),
        Err(e) => e,
    }
}

/// `f` within `limit`, or a failure naming `what`.
fn fast<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let t0 = Instant::now();
    let r = f();
    assert!(t0.elapsed() < limit, "{what} took {:?}", t0.elapsed());
    r
}

fn unicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.as_bytes());
    v
}

fn int(i: i32) -> Vec<u8> {
    let mut v = vec![b'J'];
    v.extend(i.to_le_bytes());
    v
}

fn ints(xs: &[i32]) -> Vec<u8> {
    let mut v = vec![b'('];
    for &x in xs {
        v.extend(int(x));
    }
    v.push(b't');
    v
}

const ORDERED_DICT: &[u8] = b"ccollections\nOrderedDict\n)R";

/// `_rebuild_tensor_v2(storage(key, ty), offset, size, stride, False, OrderedDict())`.
fn rebuild(key: &str, storage_type: &str, offset: i32, size: &[i32], stride: &[i32]) -> Vec<u8> {
    let mut v = b"ctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
    v.push(b'(');
    v.extend(unicode("storage"));
    v.extend(format!("ctorch\n{storage_type}\n").as_bytes());
    v.extend(unicode(key));
    v.extend(unicode("cpu"));
    v.extend(int(size.iter().product()));
    v.extend(b"tQ");
    v.extend(int(offset));
    v.extend(ints(size));
    v.extend(ints(stride));
    v.push(0x89);
    v.extend(ORDERED_DICT);
    v.extend(b"tR");
    v
}

/// A state_dict pickle: `OrderedDict` with `(name, value pickle)` items.
fn state_dict(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = b"\x80\x02".to_vec();
    v.extend(ORDERED_DICT);
    v.push(b'(');
    for (k, val) in items {
        v.extend(unicode(k));
        v.extend(val);
    }
    v.extend(b"u.");
    v
}

/// A torch.save-style archive (stored entries under `archive/`).
fn torch_zip(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("archive/data.pkl", o).unwrap();
    w.write_all(pkl).unwrap();
    w.start_file("archive/byteorder", o).unwrap();
    w.write_all(b"little").unwrap();
    for (k, data) in storages {
        w.start_file(format!("archive/data/{k}"), o).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn floats(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn values(t: &tch::Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
}

#[test]
fn every_opcode_family_decodes() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\x80\x02N.".to_vec(), "None"),
        (b"\x88.".to_vec(), "True"),
        (b"\x89.".to_vec(), "False"),
        (b"K\x05.".to_vec(), "5"),
        (b"M\x00\x01.".to_vec(), "256"),
        (b"J\xff\xff\xff\xff.".to_vec(), "-1"),
        (b"\x8a\x02\x00\x80.".to_vec(), "-32768"),
        (b"\x8a\x00.".to_vec(), "0"),
        (b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f.".to_vec(), "9223372036854775807"),
        (b"\x8b\x01\x00\x00\x00\x7f.".to_vec(), "127"),
        ([b"G".as_slice(), &1.5f64.to_be_bytes(), b"."].concat(), "1.5"),
        (b"X\x03\x00\x00\x00abc.".to_vec(), "\"abc\""),
        (b"\x8c\x02hi.".to_vec(), "\"hi\""),
        (b"\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi.".to_vec(), "\"hi\""),
        (b"U\x02hi.".to_vec(), "\"hi\""),
        (b"T\x02\x00\x00\x00hi.".to_vec(), "\"hi\""),
        (b"C\x02hi.".to_vec(), "b\"hi\""),
        (b"B\x02\x00\x00\x00hi.".to_vec(), "b\"hi\""),
        (b"\x8e\x02\x00\x00\x00\x00\x00\x00\x00hi.".to_vec(), "b\"hi\""),
        (b").".to_vec(), "()"),
        (b"].".to_vec(), "[]"),
        (b"}.".to_vec(), "{}"),
        (b"(K\x01K\x02t.".to_vec(), "(1, 2)"),
        (b"K\x01\x85.".to_vec(), "(1,)"),
        (b"K\x01K\x02\x86.".to_vec(), "(1, 2)"),
        (b"K\x01K\x02K\x03\x87.".to_vec(), "(1, 2, 3)"),
        (b"](K\x01K\x02e.".to_vec(), "[1, 2]"),
        (b"]K\x01a.".to_vec(), "[1]"),
        (b"(K\x01K\x02l.".to_vec(), "[1, 2]"),
        (b"}K\x01K\x02s.".to_vec(), "{1: 2}"),
        (b"}(K\x01K\x02K\x03K\x04u.".to_vec(), "{1: 2, 3: 4}"),
        (b"(K\x01K\x02d.".to_vec(), "{1: 2}"),
        // memo: BINPUT/BINGET, LONG_BINPUT/LONG_BINGET, MEMOIZE
        (b"K\x07q\x00h\x00\x86.".to_vec(), "(7, 7)"),
        (b"K\x07r\x00\x01\x00\x00j\x00\x01\x00\x00\x86.".to_vec(), "(7, 7)"),
        (b"K\x07\x94h\x00\x86.".to_vec(), "(7, 7)"),
        // the memo holds the object, not a copy: an APPEND after BINPUT shows through BINGET
        (b"]q\x00K\x01a0h\x00.".to_vec(), "[1]"),
        // POP, POP_MARK, DUP; PROTO and FRAME
        (b"K\x01K\x020.".to_vec(), "1"),
        (b"K\x01(K\x02K\x031.".to_vec(), "1"),
        (b"K\x012\x86.".to_vec(), "(1, 1)"),
        (b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N.".to_vec(), "None"),
        // GLOBAL, STACK_GLOBAL, REDUCE, BUILD (the state is dropped)
        ([ORDERED_DICT, b"."].concat(), "{}"),
        (b"\x8c\x0bcollections\x8c\x0bOrderedDict\x93)R.".to_vec(), "{}"),
        ([ORDERED_DICT, b"}X\x01\x00\x00\x00aK\x01sb."].concat(), "{}"),
        (b"ctorch\nfloat32\n.".to_vec(), "torch.float32"),
        // BINPERSID: a storage reference
        (
            [
                b"(".as_slice(),
                &unicode("storage"),
                b"ctorch\nFloatStorage\n",
                &unicode("0"),
                &unicode("cpu"),
                b"K\x04tQ.",
            ]
            .concat(),
            "<storage Float 0>",
        ),
    ];
    for (pkl, want) in cases {
        assert_eq!(ok(&pkl), want, "{pkl:?}");
    }
    // a list that contains itself: decodes, and describing it is bounded
    let s = describe_pickle(b"]q\x00h\x00a.", 50).unwrap();
    assert!(s.starts_with("[[[[") && s.ends_with('…') && s.chars().count() <= 52, "{s}");
}

#[test]
fn state_dicts_rebuild_tensors_from_storages() {
    let data: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let pkl = state_dict(&[
        ("w", rebuild("0", "FloatStorage", 0, &[2, 3], &[3, 1])),
        ("wt", rebuild("0", "FloatStorage", 0, &[3, 2], &[1, 3])), // a transposed view: copied
        ("tail", rebuild("0", "FloatStorage", 4, &[2], &[1])),     // an offset view
        ("n", int(3)),                                             // not a tensor: skipped
        ("i", rebuild("1", "LongStorage", 0, &[2], &[1])),
        ("empty", rebuild("0", "FloatStorage", 0, &[0, 5], &[5, 1])),
        ("w", rebuild("0", "FloatStorage", 0, &[6], &[1])), // a repeated key: the later value wins, in place
    ]);
    let longs: Vec<u8> = [7i64, -8].iter().flat_map(|x| x.to_le_bytes()).collect();
    let sd = load(&torch_zip(&pkl, &[("0", floats(&data)), ("1", longs)])).unwrap();
    let names: Vec<&str> = sd.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["w", "wt", "tail", "i", "empty"]);
    let get = |k: &str| &sd.iter().find(|(n, _)| n == k).unwrap().1;
    assert_eq!(get("w").size(), [6]);
    assert_eq!(values(get("w")), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(get("wt").size(), [3, 2]);
    assert_eq!(values(get("wt")), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(values(get("tail")), [4.0, 5.0]);
    assert_eq!(get("i").kind(), tch::Kind::Int64);
    assert_eq!(values(get("i")), [7.0, -8.0]);
    assert_eq!(get("empty").size(), [0, 5]);

    // views that do not fit their storage, and storages that do not fit the archive
    let bad = |size: &[i32], stride: &[i32], offset: i32| {
        let pkl = state_dict(&[("w", rebuild("0", "FloatStorage", offset, size, stride))]);
        load(&torch_zip(&pkl, &[("0", floats(&data))])).unwrap_err()
    };
    assert!(bad(&[7], &[1], 0).contains("reach past its 6 elements"), "{}", bad(&[7], &[1], 0));
    assert!(bad(&[2], &[1], 5).contains("reach past"));
    assert!(bad(&[2], &[-1], 1).contains("bad tensor"));
    assert!(bad(&[-2], &[1], 0).contains("bad tensor"));
    assert!(bad(&[2, 3], &[3], 0).contains("bad tensor"));
    // stride 0 repeats one element: copies of such views are bounded by the file's size
    let e = fast("an expanded view", Duration::from_secs(5), || bad(&[1 << 30, 1 << 30], &[0, 0], 0));
    assert!(e.contains("copies of strided views would take"), "{e}");
    let odd =
        load(&torch_zip(&state_dict(&[("w", rebuild("0", "FloatStorage", 0, &[1], &[1]))]), &[("0", vec![0u8; 7])]))
            .unwrap_err();
    assert!(odd.contains("not a whole number"), "{odd}");
    let missing =
        load(&torch_zip(&state_dict(&[("w", rebuild("9", "FloatStorage", 0, &[1], &[1]))]), &[])).unwrap_err();
    assert!(missing.contains("missing storage 9"), "{missing}");
    let not_dict = load(&torch_zip(b"\x80\x02K\x01.", &[])).unwrap_err();
    assert!(not_dict.contains("does not hold a dict"), "{not_dict}");
}

#[test]
fn hostile_pickles_are_clean_errors_and_fast() {
    let limit = Duration::from_secs(10);
    let n = 2_000_000;
    // 2,000,000 nested lists
    let deep_lists = [b"\x80\x02".to_vec(), vec![b']'; n], vec![b'a'; n - 1], b".".to_vec()].concat();
    let e = fast("nested lists", limit, || err(&deep_lists));
    assert!(e.contains("more than 1000 levels deep"), "{e}");
    // nested MARKs, nested MARK/TUPLE, TUPLE1 of TUPLE1 …
    let e = fast("nested marks", limit, || err(&[vec![b'('; n], b"N.".to_vec()].concat()));
    assert!(e.contains("nested MARKs"), "{e}");
    let e =
        fast("mark/tuple", limit, || err(&[vec![b'('; 1500], b"N".to_vec(), vec![b't'; 1500], b".".to_vec()].concat()));
    assert!(e.contains("more than 1000 nested MARKs"), "{e}");
    assert!(ok(&[vec![b'('; 900], b"N".to_vec(), vec![b't'; 900], b".".to_vec()].concat()).starts_with("(((((("));
    let e = fast("tuple1", limit, || err(&[b"N".to_vec(), vec![0x85; n], b".".to_vec()].concat()));
    assert!(e.contains("levels deep"), "{e}");
    // a list in a dict in a list in a dict …
    let mut nest = Vec::new();
    for i in 0..10_000 {
        nest.extend(if i % 2 == 0 { b"}K\x01".as_slice() } else { b"]" });
    }
    for i in (1..10_000).rev() {
        nest.push(if (i - 1) % 2 == 0 { b's' } else { b'a' });
    }
    nest.push(b'.');
    let e = fast("list in dict", limit, || err(&nest));
    assert!(e.contains("levels deep"), "{e}");
    // fine below the limit
    assert_eq!(ok(&[vec![b'('; 50], b"N".to_vec(), vec![b't'; 50], b"0N.".to_vec()].concat()), "None");

    // memo doubling: each level is a pair of the previous one, 59 levels = 2^59 leaves
    let bomb = [b"\x80\x02]q\x00".to_vec(), b"h\x00h\x00\x86q\x00".repeat(59), b".".to_vec()].concat();
    let s = fast("memo doubling bomb", limit, || describe_pickle(&bomb, 1000).unwrap());
    assert!(s.starts_with("((((") && s.ends_with('…'), "{s}");
    let e = fast("memo bomb in a state_dict", limit, || load(&torch_zip(&bomb, &[])).unwrap_err());
    assert!(e.contains("does not hold a dict"), "{e}");
    // and the bomb as a state_dict value, then the whole state_dict
    let bomb_sd =
        state_dict(&[("x", [b"]q\x000".to_vec(), b"h\x00h\x00\x86q\x000".repeat(59), b"h\x00".to_vec()].concat())]);
    assert!(fast("bomb value", limit, || load(&torch_zip(&bomb_sd, &[])).unwrap()).is_empty());
    // too many values
    let e = fast("value budget", limit, || err(&[vec![b'N'; 5 << 20], b".".to_vec()].concat()));
    assert!(e.contains("more than 4194304 values"), "{e}");

    // globals: nothing outside torch / collections is even named, and only tensors are built
    for (pkl, want) in [
        (b"cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec(), "os.system"),
        (b"\x8c\x08builtins\x8c\x04eval\x93.".to_vec(), "builtins.eval"),
        (b"c__builtin__\nexec\n.".to_vec(), "__builtin__.exec"),
        (b"csubprocess\nPopen\n.".to_vec(), "subprocess.Popen"),
    ] {
        let e = err(&pkl);
        assert!(e.contains(want) && e.contains("never imports"), "{e}");
    }
    let e = err(b"ctorch\nload\nX\x01\x00\x00\x00x\x85R.");
    assert!(e.contains("calls torch.load, which this loader does not build"), "{e}");
    let e = err(b"(X\x07\x00\x00\x00storagectorch\nLoadStorage\nX\x01\x00\x00\x000tQ.");
    assert!(e.contains("unsupported storage type torch.LoadStorage"), "{e}");

    // huge length prefixes and bad keys
    for pkl in [
        b"X\xff\xff\xff\xff".to_vec(),
        b"\x8d\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"B\xff\xff\xff\xffab.".to_vec(),
        b"T\xff\xff\xff\x7f".to_vec(),
        b"\x8b\xff\xff\xff\x7f".to_vec(),
        b"\x8a\xff".to_vec(),
        b"j\xff\xff\xff\xff.".to_vec(),
        b"h\x05.".to_vec(),
        b"\x80\x09N.".to_vec(),
        b"\x95\xff\xff".to_vec(),
        b"cos".to_vec(),
        b"q\x00.".to_vec(),
        b"(.".to_vec(),
        b"a.".to_vec(),
        b"K\x01a.".to_vec(),
        b"]K\x01s.".to_vec(),
        b"}(K\x01u.".to_vec(),
        b"t.".to_vec(),
        b"K\x01K\x01R.".to_vec(),
        b"\xff.".to_vec(),
        b"".to_vec(),
    ] {
        fast("a bad prefix", limit, || err(&pkl));
    }

    // every truncation of a pickle using every family, and random mutations of it: never a panic
    let head = [
        b"\x80\x02".as_slice(),
        ORDERED_DICT,
        b"q\x00(",
        &unicode("a"),
        b"]q\x01(K\x01M\x00\x01J\xff\xff\xff\xff\x8a\x02\x00\x80e",
        &unicode("b"),
        b"}(\x8c\x01xG?\xf8\x00\x00\x00\x00\x00\x00U\x01yC\x01z\x88\x89u",
        &unicode("c"),
        b"(h\x01K\x09\x86\x85)K\x03\x87t",
    ]
    .concat();
    assert_eq!(
        ok(&[head.as_slice(), b"u."].concat()),
        r#"{"a": [1, 256, -1, -32768], "b": {"x": 1.5, "y": b"z", True: False}, "c": (((([1, 256, -1, -32768], 9),), (), 3),)}"#
    );
    let rich = [head.as_slice(), &unicode("d"), &rebuild("0", "FloatStorage", 0, &[2], &[1]), b"u."].concat();
    let sd = load(&torch_zip(&rich, &[("0", floats(&[1.0, 2.0]))])).unwrap();
    assert_eq!(sd.len(), 1);
    assert_eq!(values(&sd[0].1), [1.0, 2.0]);
    for cut in 0..rich.len() {
        assert!(describe(&rich[..cut]).is_err(), "a truncation at {cut} decoded");
    }
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    fast("mutations", Duration::from_secs(20), || {
        for _ in 0..5000 {
            let mut m = rich.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let _ = describe(&m);
            let _ = load(&torch_zip(&m, &[("0", floats(&[1.0, 2.0]))]));
        }
    });
}

// --- archives ---------------------------------------------------------------------------------

/// Writes `entries` (stored) as a ZIP64 archive, as a writer does for files over 4 GiB: sizes and
/// offsets in ZIP64 extra fields, 0xFFFFFFFF in the 32-bit fields, ZIP64 end records. `claim`
/// overrides one entry's declared size.
pub fn zip64(entries: &[(String, Vec<u8>)], claim: Option<(&str, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let size = claim.filter(|(n, _)| n == name).map_or(data.len() as u64, |(_, s)| s);
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u64;
        out.extend(0x04034b50u32.to_le_bytes());
        out.extend([45u8, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
        out.extend(crc.sum().to_le_bytes());
        out.extend([0xff; 8]);
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(20u16.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(1u16.to_le_bytes());
        out.extend(16u16.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(data);
        central.extend(0x02014b50u32.to_le_bytes());
        central.extend([45u8, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made by, needed, flags, method, time, date
        central.extend(crc.sum().to_le_bytes());
        central.extend([0xff; 8]);
        central.extend((name.len() as u16).to_le_bytes());
        central.extend(28u16.to_le_bytes());
        central.extend([0u8; 10]); // comment length, disk, internal and external attributes
        central.extend([0xff; 4]);
        central.extend(name.as_bytes());
        central.extend(1u16.to_le_bytes());
        central.extend(24u16.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(size.to_le_bytes());
        central.extend(offset.to_le_bytes());
    }
    let cd_offset = out.len() as u64;
    out.extend(&central);
    let eocd64 = out.len() as u64;
    out.extend(0x06064b50u32.to_le_bytes());
    out.extend(44u64.to_le_bytes());
    out.extend([45u8, 3, 45, 0]);
    out.extend([0u8; 8]);
    out.extend((entries.len() as u64).to_le_bytes());
    out.extend((entries.len() as u64).to_le_bytes());
    out.extend((central.len() as u64).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0x07064b50u32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(eocd64.to_le_bytes());
    out.extend(1u32.to_le_bytes());
    out.extend(0x06054b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend([0xff; 4]);
    out.extend([0xff; 8]);
    out.extend(0u16.to_le_bytes());
    out
}

fn entries_of(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (e.name().to_string(), v)
        })
        .collect()
}

fn same_state_dicts(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) {
    assert_eq!(a.len(), b.len());
    for ((ka, ta), (kb, tb)) in a.iter().zip(b) {
        assert_eq!(ka, kb);
        assert_eq!(ta.size(), tb.size(), "{ka}");
        assert_eq!(values(ta), values(tb), "{ka}");
    }
}

#[test]
fn zip64_archives_load_like_plain_ones() {
    let pt = std::fs::read(root().join("tests/fixtures/nn/mlp.pt")).unwrap();
    let want = load(&pt).unwrap();
    assert!(!want.is_empty());
    let entries = entries_of(&pt);
    // ZIP64 central directory and end records, as in a file over 4 GiB
    let dir = crate::common::temp_dir("zip64");
    let big = dir.join("mlp64.pt");
    std::fs::write(&big, zip64(&entries, None)).unwrap();
    same_state_dicts(&want, &lt::nn::io::load_any(&big).unwrap());
    // the zip crate's writer with large_file(true): ZIP64 local headers on small entries
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in &entries {
        w.start_file(
            name.as_str(),
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true),
        )
        .unwrap();
        w.write_all(data).unwrap();
    }
    same_state_dicts(&want, &load(&w.finish().unwrap().into_inner()).unwrap());
    // deflated entries are read too (streamed into tensor memory)
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in &entries {
        w.start_file(
            name.as_str(),
            zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        w.write_all(data).unwrap();
    }
    same_state_dicts(&want, &load(&w.finish().unwrap().into_inner()).unwrap());
}

#[test]
fn hostile_archives_are_refused_before_allocating() {
    let pt = std::fs::read(root().join("tests/fixtures/nn/mlp.pt")).unwrap();
    let entries = entries_of(&pt);
    let storage = entries.iter().find(|(n, _)| n.contains("/data/")).unwrap().0.clone();
    // a storage that claims 1 TiB in a small file
    let e = fast("a huge storage claim", Duration::from_secs(5), || {
        load(&zip64(&entries, Some((&storage, 1 << 40)))).unwrap_err()
    });
    assert!(e.contains("run past the end"), "{e}");
    // a pickle that claims 1 TiB
    let e = load(&zip64(&entries, Some(("mlp/data.pkl", 1 << 40)))).unwrap_err();
    assert!(e.contains("run past the end"), "{e}");
    // an end record claiming 2^40 entries
    let mut a = zip64(&entries, None);
    let at = a.len() - 22 - 20 - 56 + 24;
    a[at..at + 16].copy_from_slice(&[[0, 0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0]].concat());
    let e = fast("an entry-count claim", Duration::from_secs(5), || load(&a).unwrap_err());
    assert!(e.contains("claims 1099511627776 entries"), "{e}");
    // truncations and garbage
    for cut in [0, 4, 30, pt.len() / 2, pt.len() - 10] {
        assert!(load(&pt[..cut]).is_err(), "cut at {cut}");
    }
    assert!(load(b"PK\x03\x04 not really a zip").is_err());
}
