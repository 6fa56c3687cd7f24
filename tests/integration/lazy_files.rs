//! Data files read lazily (`mmap_mode: "r"`): a lazy safetensors dataset gives the same batches
//! as the eager one, reads only the rows asked for, and refuses a header that lies, by tensor.
use crate::common::{eval, eval_bool, temp_dir};

/// A safetensors file of `header` (JSON) and `data`.
fn st_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn lazy_safetensors_equals_eager_batch_for_batch() {
    let dir = temp_dir("st_lazy");
    let p = dir.join("d.safetensors");
    let src = format!(
        r#"
        let p = "{p}";
        data::save_safetensors(#{{
            x: torch::randn([11, 3, 2]), y: torch::arange(11), m: torch::randn([11]) > 0.0,
            u: torch::randint(0, 255, [11, 4]).to("uint8"), h: torch::randn([11, 2]).to("float16"),
            other: torch::zeros([5]),
        }}, p);
        let keys = ["y", "x", "m", "u", "h"];
        let eager = data::safetensors(p, #{{keys: keys}});
        let lazy = data::safetensors(p, #{{keys: keys, mmap_mode: "r"}});
        if lazy.len() != 11 || eager.len() != 11 {{ throw `len ${{lazy.len()}}`; }}
        if !lazy[-1].x.equal(eager[10].x) || lazy[3].y.item() != 3 {{ throw "indexing"; }}
        let n = 0;
        for w in [0, 2] {{
            let a = [];
            for b in data::loader(eager, #{{batch_size: 3, shuffle: true, seed: 7}}) {{ a.push(b); }}
            let i = 0;
            for b in data::loader(lazy, #{{batch_size: 3, shuffle: true, seed: 7, num_workers: w}}) {{
                let e = a[i];
                if b.keys() != e.keys() {{ throw `keys ${{b.keys()}} vs ${{e.keys()}}`; }}
                for k in keys {{
                    if b[k].dtype != e[k].dtype || !b[k].equal(e[k]) {{ throw `batch ${{i}} key ${{k}} differs (workers ${{w}})`; }}
                }}
                i += 1;
                n += 1;
            }}
            if i != a.len() || i != 4 {{ throw `batches ${{i}} vs ${{a.len()}}`; }}
        }}
        // no keys: every tensor, sorted by name; `other` has 5 rows, so both refuse alike
        let e1 = ""; let e2 = "";
        try {{ data::safetensors(p); }} catch (e) {{ e1 = `${{e}}`; }}
        try {{ data::safetensors(p, #{{mmap_mode: "r"}}); }} catch (e) {{ e2 = `${{e}}`; }}
        if !e1.contains("size mismatch") || !e2.contains("size mismatch") {{ throw `${{e1}} / ${{e2}}`; }}
        // mmap_mode () is the eager reading
        let unit = data::safetensors(p, #{{keys: ["x"], mmap_mode: ()}});
        n == 8 && unit.len() == 11
        "#,
        p = p.display()
    );
    assert!(eval_bool(&src));
    let e =
        eval(&format!(r#"data::safetensors("{}", #{{keys: ["x", "zz"], mmap_mode: "r"}})"#, p.display())).unwrap_err();
    assert!(e.contains("no array named 'zz'; the file has: h, m, other, u, x, y"), "{e}");
}

#[test]
fn a_lazy_safetensors_reads_only_the_rows_asked_for() {
    use std::os::unix::fs::FileExt;
    let dir = temp_dir("st_lazy_big");
    // 2^28 rows of 4 float32: a 4 GiB tensor in a sparse file (no disk used, nothing to load)
    let rows: u64 = 1 << 28;
    let header = format!(r#"{{"x":{{"dtype":"F32","shape":[{rows},4],"data_offsets":[0,{}]}}}}"#, rows * 16);
    let head = st_bytes(&header, &[]);
    let p = dir.join("big.safetensors");
    let f = std::fs::File::create(&p).unwrap();
    f.write_all_at(&head, 0).unwrap();
    f.set_len(head.len() as u64 + rows * 16).unwrap();
    let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    f.write_all_at(&bytes, head.len() as u64 + (rows - 1) * 16).unwrap();
    drop(f);
    let src = format!(
        r#"
        let ds = data::safetensors("{p}", #{{mmap_mode: "r"}});
        let b = [];
        for batch in data::loader(data::subset(ds, [{last}, 0]), #{{batch_size: 2, num_workers: 2}}) {{ b.push(batch.x); }}
        ds.len() == {rows} && ds[-1].x.to_array() == [1.0, 2.0, 3.0, 4.0] && b.len() == 1 && b[0].sum().item() == 10.0
        "#,
        p = p.display(),
        last = rows - 1
    );
    assert!(eval_bool(&src));
}

#[test]
fn a_safetensors_header_that_lies_is_refused_naming_the_tensor() {
    let dir = temp_dir("st_lazy_bad");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let good = st_bytes(
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"I64","shape":[2],"data_offsets":[16,32]}}"#,
        &[0u8; 32],
    );
    let truncated = write("truncated.safetensors", &good[..good.len() - 5]);
    let past = write(
        "past.safetensors",
        &st_bytes(r#"{"big":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}"#, &[0u8; 16]),
    );
    let mismatch = write(
        "mismatch.safetensors",
        &st_bytes(r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &[0u8; 8]),
    );
    let dtype = write(
        "dtype.safetensors",
        &st_bytes(r#"{"q":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#, &[0u8; 4]),
    );
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let huge = write("huge.safetensors", &huge);
    let gap = write(
        "gap.safetensors",
        &st_bytes(
            r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"c":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
            &[0u8; 6],
        ),
    );
    let boolean = write(
        "bool.safetensors",
        &st_bytes(r#"{"f":{"dtype":"BOOL","shape":[4],"data_offsets":[0,4]}}"#, &[0, 1, 7, 1]),
    );
    let cases = [
        (truncated.as_str(), "b: byte range [16, 32] runs past the 27 bytes of data after the header (truncated?)"),
        (past.as_str(), "big: byte range [0, 4000000] runs past the 16 bytes of data"),
        (mismatch.as_str(), "w: shape [3] does not match its byte range [0, 8]"),
        (dtype.as_str(), "q: safetensors: dtype F8_E4M3 is not supported"),
        (huge.as_str(), "header size 18446744073709551615 does not fit a file of 10 bytes"),
        (gap.as_str(), "c: byte range [4, 6] leaves a gap or overlaps"),
    ];
    for (p, want) in cases {
        for mode in [r#""r""#, "()"] {
            let src = format!(r#"data::safetensors("{p}", #{{mmap_mode: {mode}}})"#);
            let e = eval(&src).map(|v| v.to_string()).expect_err(&src);
            assert!(e.contains(want) && e.contains(p), "{src}: missing {want:?} in {e}");
        }
    }
    // zero rows of rows too large for a tensor's strides: refused alike, before anything is made
    let strides = write(
        "strides.safetensors",
        &st_bytes(r#"{"z":{"dtype":"F32","shape":[0,1099511627776,1099511627776],"data_offsets":[0,0]}}"#, &[]),
    );
    for mode in [r#""r""#, "()"] {
        let e = eval(&format!(r#"data::safetensors("{strides}", #{{mmap_mode: {mode}}})"#)).unwrap_err();
        assert!(e.contains("z: shape [0, 1099511627776, 1099511627776] is too large for a tensor's strides"), "{e}");
    }
    let empty =
        write("empty.safetensors", &st_bytes(r#"{"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#, &[]));
    assert!(eval_bool(&format!(
        r#"data::safetensors("{empty}", #{{mmap_mode: "r"}}).len() == 0 && data::safetensors("{empty}").len() == 0"#
    )));
    // a bool row of a byte other than 0 / 1 is refused when it is read
    let e = eval(&format!(r#"data::safetensors("{boolean}", #{{mmap_mode: "r"}})[2]"#)).unwrap_err();
    assert!(e.contains("f: a bool array holds bytes other than 0 and 1"), "{e}");
    assert!(eval_bool(&format!(r#"data::safetensors("{boolean}", #{{mmap_mode: "r"}})[1].f.item() == true"#)));
    let e = eval(&format!(r#"data::safetensors("{truncated}", #{{mmap_mode: "w+"}})"#)).unwrap_err();
    assert!(e.contains(r#"mmap_mode must be "r" (read lazily; lt never writes to a data file) or absent / () (read whole), got "w+""#), "{e}");
    let e = eval(&format!(r#"data::safetensors("{truncated}", #{{mmap: "r"}})"#)).unwrap_err();
    assert!(e.contains("keys") && e.contains("mmap_mode"), "{e}");
    let e =
        eval(&format!(r#"data::safetensors("{}/none.safetensors", #{{mmap_mode: "r"}})"#, dir.display())).unwrap_err();
    assert!(e.contains("no such file") && e.contains("none.safetensors"), "{e}");
}
