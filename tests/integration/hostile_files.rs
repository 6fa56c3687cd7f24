//! Data and script files with hostile or broken content: every reader refuses with the file and
//! the reason, never a panic, a hang on a FIFO or device, or an allocation sized by a header.
use crate::common::{eval, stderr, stdout, temp_dir};
use crate::hostile_checkpoints::lt_within;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn path_str(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data);
    b
}

fn npy_err(bytes: &[u8]) -> String {
    lt::data::files::parse_npy(bytes, "x.npy").map(|t| format!("decoded {t:?}")).unwrap_or_else(|e| e.0)
}

#[test]
fn npy_headers_with_hostile_content_are_refused() {
    // non-ASCII dtype text (used to panic: "byte index 1 is not a char boundary")
    for descr in ["é4", "<é", "ü", "<\u{1F600}"] {
        let e = npy_err(&npy(descr, "(1,)", &[0; 4]));
        assert!(e.contains("unsupported .npy dtype"), "{descr}: {e}");
    }
    // sizes the data cannot hold, negative and overflowing dims: refused before allocating
    let e = npy_err(&npy("<f4", "(1099511627776,)", &[0; 8]));
    assert!(e.contains("expected 4398046511104 bytes") && e.contains("found 8"), "{e}");
    let e = npy_err(&npy("<f4", "(4294967296, 4294967296, 4294967296)", &[0; 8]));
    assert!(e.contains("more than 2^64"), "{e}");
    let e = npy_err(&npy("<f4", "(-1,)", &[0; 8]));
    assert!(e.contains("bad shape"), "{e}");
    // a header length beyond the file, a huge v2 header length, an unknown version
    let mut b = npy("<f4", "(1,)", &[0; 4]);
    b[8] = 0xff;
    b[9] = 0xff;
    assert!(npy_err(&b).contains("truncated .npy header"), "{}", npy_err(&b));
    let mut v2 = b"\x93NUMPY\x02\x00\xf0\xff\xff\xff".to_vec();
    v2.extend([b' '; 64]);
    assert!(npy_err(&v2).contains("larger than the 65536 accepted"), "{}", npy_err(&v2));
    assert!(npy_err(b"\x93NUMPY\x09\x00\x00\x00\x00\x00").contains("version 9"));
    // a bool array holding other bytes
    assert!(npy_err(&npy("|b1", "(2,)", &[1, 7])).contains("bool"));
    // still fine: a plain array
    let t = lt::data::files::parse_npy(&npy("<i2", "(2, 1)", &[1, 0, 2, 0]), "x.npy").unwrap();
    assert_eq!(Vec::<i16>::try_from(t.flatten(0, -1)).unwrap(), [1, 2]);

    // the same inside an .npz, through the script API
    let dir = temp_dir("npz_hostile");
    let write_npz = |name: &str, entries: &[(&str, Vec<u8>)]| {
        let mut w = zip::ZipWriter::new(std::fs::File::create(dir.join(name)).unwrap());
        for (n, data) in entries {
            w.start_file(*n, zip::write::FileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        path_str(&dir.join(name))
    };
    let p = write_npz("uni.npz", &[("a.npy", npy("<f4", "(1,)", &[0; 4])), ("b.npy", npy("é4", "(1,)", &[0; 4]))]);
    let e = eval(&format!(r#"data::load_npz("{p}")"#)).unwrap_err();
    assert!(e.contains("uni.npz:b") && e.contains("unsupported .npy dtype 'é4'"), "{e}");
    let p = write_npz("big.npz", &[("a.npy", npy("<f8", "(1000000000000,)", &[0; 16]))]);
    let e = eval(&format!(r#"data::load_npz("{p}")"#)).unwrap_err();
    assert!(e.contains("big.npz:a") && e.contains("truncated .npy data"), "{e}");
    // an entry that claims a terabyte in a small archive
    let entries = vec![("a.npy".to_string(), npy("<f4", "(1,)", &[0; 4]))];
    std::fs::write(dir.join("claim.npz"), crate::hostile_pickle::zip64(&entries, Some(("a.npy", 1 << 40)))).unwrap();
    let e = lt::data::files::read_npz(&dir.join("claim.npz")).unwrap_err().0;
    assert!(e.contains("run past the end"), "{e}");
    // ZIP64 .npz archives (over 4 GiB) read like any other
    std::fs::write(dir.join("z64.npz"), crate::hostile_pickle::zip64(&entries, None)).unwrap();
    assert_eq!(lt::data::files::read_npz(&dir.join("z64.npz")).unwrap()[0].0, "a");
}

#[test]
fn a_zip_directory_claiming_billions_of_entries_is_refused() {
    // A sparse 64 GiB file whose ZIP64 end record claims 2^35 entries: the zip crate would
    // reserve memory for all of them (terabytes) and abort.
    let dir = temp_dir("zip_count");
    let path = dir.join("huge.npz");
    let len: u64 = 64 << 30;
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    let mut tail = Vec::new();
    let eocd64 = len - 22 - 20 - 56;
    tail.extend(0x06064b50u32.to_le_bytes());
    tail.extend(44u64.to_le_bytes());
    tail.extend([45u8, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    tail.extend((1u64 << 35).to_le_bytes());
    tail.extend((1u64 << 35).to_le_bytes());
    tail.extend((1u64 << 30).to_le_bytes());
    tail.extend(0u64.to_le_bytes());
    tail.extend(0x07064b50u32.to_le_bytes());
    tail.extend(0u32.to_le_bytes());
    tail.extend(eocd64.to_le_bytes());
    tail.extend(1u32.to_le_bytes());
    tail.extend(0x06054b50u32.to_le_bytes());
    tail.extend([0u8; 4]);
    tail.extend([0xff; 12]);
    tail.extend(0u16.to_le_bytes());
    use std::os::unix::fs::FileExt;
    f.write_all_at(&tail, eocd64).unwrap();
    drop(f);
    std::fs::write(dir.join("probe.rhai"), format!("data::load_npz(\"{}\")", path_str(&path))).unwrap();
    let out = lt_within(&dir, &["run", "probe.rhai"], Duration::from_secs(60));
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("claims 34359738368 entries"), "{}", stderr(&out));
}

fn png_chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(ty);
    crc.update(data);
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend(ty);
    c.extend(data);
    c.extend(crc.sum().to_be_bytes());
    c
}

#[test]
fn images_claiming_huge_sizes_are_refused_from_the_header() {
    let root = temp_dir("bomb_png");
    std::fs::create_dir_all(root.join("c")).unwrap();
    // a PNG whose header claims 60000 x 60000 RGB (10.8 GB decoded), with a few bytes of data
    let mut ihdr = 60000u32.to_be_bytes().to_vec();
    ihdr.extend(60000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&[0u8; 1000]).unwrap();
    let png = [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        png_chunk(b"IHDR", &ihdr),
        png_chunk(b"IDAT", &z.finish().unwrap()),
        png_chunk(b"IEND", &[]),
    ]
    .concat();
    std::fs::write(root.join("c/big.png"), png).unwrap();
    let r = path_str(&root);
    let e = eval(&format!(r#"data::image_folder("{r}")[0]"#)).unwrap_err();
    assert!(e.contains("big.png") && e.contains("60000x60000 pixels, more than the 178956970 accepted"), "{e}");
    // a JPEG frame header claiming 65535 x 65535
    let mut jpg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0x03];
    jpg.extend([1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpg.extend([0xFF, 0xD9]);
    std::fs::remove_file(root.join("c/big.png")).unwrap();
    std::fs::write(root.join("c/big.jpg"), jpg).unwrap();
    let e = eval(&format!(r#"data::image_folder("{r}")[0]"#)).unwrap_err();
    assert!(e.contains("big.jpg") && e.contains("65535x65535 pixels"), "{e}");
}

#[test]
fn idx_headers_claiming_more_than_the_file_holds_are_refused() {
    let dir = temp_dir("idx_hostile");
    // raw: 2^48 bytes claimed, 4 present
    let mut raw = vec![0, 0, 0x08, 3];
    for _ in 0..3 {
        raw.extend(65536u32.to_be_bytes());
    }
    raw.extend([1, 2, 3, 4]);
    std::fs::write(dir.join("raw-idx"), &raw).unwrap();
    let e = lt::data::idx::read_idx(&dir.join("raw-idx")).unwrap_err().0;
    assert!(e.contains("truncated IDX data: expected 281474976710656 bytes"), "{e}");
    // dims whose product overflows
    let mut over = vec![0, 0, 0x0E, 5];
    for _ in 0..5 {
        over.extend(u32::MAX.to_be_bytes());
    }
    std::fs::write(dir.join("over-idx"), &over).unwrap();
    assert!(lt::data::idx::read_idx(&dir.join("over-idx")).unwrap_err().0.contains("more than 2^64"));
    // gzip: more than the compressed bytes can expand to, refused before inflating anything
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    std::fs::write(dir.join("gz-idx.gz"), gz.finish().unwrap()).unwrap();
    let e = lt::data::idx::read_idx(&dir.join("gz-idx.gz")).unwrap_err().0;
    assert!(e.contains("more than") && e.contains("bytes of gzip data can hold"), "{e}");
    // a truncated gzip body is an error, not a panic
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[0, 0, 0x08, 1, 0, 0, 0, 100]).unwrap();
    gz.write_all(&[7; 10]).unwrap();
    std::fs::write(dir.join("short-idx.gz"), gz.finish().unwrap()).unwrap();
    let e = lt::data::idx::read_idx(&dir.join("short-idx.gz")).unwrap_err().0;
    assert!(e.contains("truncated IDX data"), "{e}");
    // big-endian multi-byte data still reads right
    let mut ok = vec![0, 0, 0x0B, 1, 0, 0, 0, 2];
    ok.extend([0x01, 0x02, 0xff, 0xfe]);
    std::fs::write(dir.join("ok-idx"), &ok).unwrap();
    let t = lt::data::idx::read_idx(&dir.join("ok-idx")).unwrap();
    assert_eq!(Vec::<i16>::try_from(&t).unwrap(), [0x0102, -2]);
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_string_lossy().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

#[test]
fn fifos_devices_and_folders_are_refused_wherever_lt_reads_a_file() {
    let dir = temp_dir("fifo");
    for name in ["f.npy", "f.npz", "f.safetensors", "f-idx", "f.csv", "f.txt", "f.pt", "f.ckpt", "f.rhai", "fmod.rhai"]
    {
        mkfifo(&dir.join(name));
    }
    std::fs::create_dir(dir.join("folder.npy")).unwrap();
    let model = "fn init(h) { this.w = torch::zeros([1], #{requires_grad: true}); }\nfn train_dataloader() { [[torch::ones([1])]] }\nfn training_step(b, i) { this.w.sum() }\nfn configure_optimizers() { optim::sgd([this.w], #{lr: 0.1}) }\n";
    std::fs::write(dir.join("m.rhai"), model).unwrap();
    let calls = [
        ("load_npy", r#"data::load_npy("f.npy")"#),
        ("load_npz", r#"data::load_npz("f.npz")"#),
        ("npz", r#"data::npz("f.npz")"#),
        ("load_safetensors", r#"data::load_safetensors("f.safetensors")"#),
        ("read_idx", r#"data::read_idx("f-idx")"#),
        ("csv", r#"data::csv("f.csv")"#),
        ("text_file", r#"data::text_file("f.txt", #{seq_len: 4})"#),
        ("nn_load_pt", r#"nn::load("f.pt")"#),
        ("nn_load_st", r#"nn::load("f.safetensors")"#),
        ("load_from_checkpoint", r#"nn::load_from_checkpoint("m.rhai", "f.ckpt")"#),
        ("load_module", r#"nn::load_module("f.rhai")"#),
        ("folder", r#"data::load_npy("folder.npy")"#),
        ("device", r#"data::load_npy("/dev/zero")"#),
        ("device_weights", r#"nn::load("/dev/zero")"#),
    ];
    let mut probe = String::new();
    for (name, call) in calls {
        probe.push_str(&format!(
            "try {{ {call}; print(\"OK {name}\"); }} catch (e) {{ print(`ERR {name}: ${{e}}`); }}\n"
        ));
    }
    std::fs::write(dir.join("probe.rhai"), probe).unwrap();
    let out = lt_within(&dir, &["run", "probe.rhai"], Duration::from_secs(60));
    let s = stdout(&out);
    assert!(out.status.success(), "{}\n{}", s, stderr(&out));
    for (name, _) in calls {
        let line = s
            .lines()
            .find(|l| l.starts_with(&format!("ERR {name}:")))
            .unwrap_or_else(|| panic!("no error for {name}:\n{s}"));
        let want = match name {
            "folder" => "(it is a directory)",
            "device" | "device_weights" => "(it is a device)",
            _ => "(it is a named pipe (FIFO))",
        };
        assert!(line.contains("not a regular file") && line.contains(want), "{line}");
    }
    // the command line: a script, an imported module, a checkpoint, a metrics file
    let out = lt_within(&dir, &["run", "f.rhai"], Duration::from_secs(30));
    assert!(
        !out.status.success() && stderr(&out).contains("f.rhai: not a regular file (it is a named pipe (FIFO))"),
        "{}",
        stderr(&out)
    );
    std::fs::write(dir.join("imp.rhai"), "import \"fmod\" as m;\nprint(1);\n").unwrap();
    let out = lt_within(&dir, &["run", "imp.rhai"], Duration::from_secs(30));
    assert!(!out.status.success() && stderr(&out).contains("not a regular file"), "{}", stderr(&out));
    let out = lt_within(&dir, &["ckpt", "show", "f.ckpt"], Duration::from_secs(30));
    assert!(!out.status.success() && stderr(&out).contains("f.ckpt: not a regular file"), "{}", stderr(&out));
    let out = lt_within(&dir, &["fit", "m.rhai", "--ckpt", "f.ckpt"], Duration::from_secs(30));
    assert!(!out.status.success() && stderr(&out).contains("f.ckpt: not a regular file"), "{}", stderr(&out));
    let out = lt_within(&dir, &["plot", "f.csv"], Duration::from_secs(30));
    assert!(!out.status.success() && stderr(&out).contains("not a regular file"), "{}", stderr(&out));
}
