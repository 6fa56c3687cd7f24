//! Unit tests of pure pieces that the end-to-end tests reach only indirectly: the TFRecord framing
//! and its CRC, the hparams.yaml writer, the CSV reader, the validation schedule.
use lt::trainer::config::{Limit, TrainerConfig};
use lt::trainer::tensorboard::{crc32c, masked_crc32c, tfrecord};
use lt::trainer::val_schedule::val_due;
use serde_json::Value;

// ---- TFRecord ----

#[test]
fn crc32c_matches_the_published_check_values() {
    // the CRC catalogue's check value, and RFC 3720 (iSCSI) appendix B.4's vectors
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    assert_eq!(crc32c(&(0u8..32).collect::<Vec<_>>()), 0x46DD_794E);
    assert_eq!(crc32c(&(0u8..32).rev().collect::<Vec<_>>()), 0x113F_DB5C);
    assert_eq!(crc32c(b""), 0);
    // TFRecord's mask (tensorflow/core/lib/hash/crc32c.h): ((c >> 15) | (c << 17)) + 0xa282ead8,
    // worked out by hand for the check value
    assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
}

#[test]
fn crc32c_fast_path_agrees_with_the_table_version_at_every_length_and_alignment() {
    use lt::checksum::{crc32c_append, crc32c_software, hex, parse_hex};
    for v in [&b"123456789"[..], &[0u8; 32], &[0xFFu8; 32]] {
        assert_eq!(crc32c(v), crc32c_software(v));
    }
    // pseudo-random bytes (xorshift), long enough for several of the fast path's 3 x 8 KiB blocks
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..200_003)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let block = 3 * 8192;
    let mut lens: Vec<usize> = (0..70).collect();
    lens.extend([block - 1, block, block + 1, 2 * block + 7, 5 * block, data.len() - 3]);
    for len in lens {
        for start in [0, 1, 3] {
            let d = &data[start..start + len];
            assert_eq!(crc32c(d), crc32c_software(d), "length {len} from {start}");
        }
    }
    // in pieces, split anywhere
    for cut in [0, 1, 8191, 8192, 24_577, 100_000, data.len()] {
        assert_eq!(crc32c_append(crc32c(&data[..cut]), &data[cut..]), crc32c(&data), "cut at {cut}");
    }
    assert_eq!(hex(0xE306_9283), "e3069283");
    assert_eq!(parse_hex("e3069283"), Some(0xE306_9283));
    assert_eq!(parse_hex("E3069283"), Some(0xE306_9283));
    for bad in ["", "e306928", "e30692830", "e306928g", "+3069283"] {
        assert_eq!(parse_hex(bad), None, "{bad}");
    }
}

#[test]
fn checkpoint_floats_keep_nan_and_infinities() {
    use lt::checkpoint::float::{from_json, to_json};
    for x in [0.0, -1.5, 1e300, f64::MIN_POSITIVE, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(from_json(&to_json(x)), Some(x), "{x}");
    }
    assert!(from_json(&to_json(f64::NAN)).unwrap().is_nan());
    assert_eq!(to_json(f64::NAN), Value::String("nan".into()));
    // format 1 wrote every non-finite value as null
    assert!(from_json(&Value::Null).unwrap().is_nan());
    assert_eq!(from_json(&Value::String("NaN".into())), None);
    assert_eq!(from_json(&Value::Bool(true)), None);
}

#[test]
fn tfrecord_frames_length_crcs_and_data() {
    for data in [&b""[..], b"x", b"brain.Event:2", &[0xABu8; 1000][..]] {
        let r = tfrecord(data);
        assert_eq!(r.len(), data.len() + 16);
        let len = &r[0..8];
        assert_eq!(u64::from_le_bytes(len.try_into().unwrap()), data.len() as u64);
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), masked_crc32c(len));
        assert_eq!(&r[12..12 + data.len()], data);
        assert_eq!(u32::from_le_bytes(r[12 + data.len()..].try_into().unwrap()), masked_crc32c(data));
    }
}

// ---- hparams.yaml ----

fn fixture(name: &str) -> String {
    std::fs::read_to_string(crate::common::root().join("tests/fixtures/loggers").join(name)).unwrap()
}

/// A YAML 1.2 document (yaml-rust2) as JSON, for comparison with what was written.
fn yaml_to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => serde_json::json!(s.parse::<f64>().unwrap()),
        Yaml::Integer(i) => serde_json::json!(i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter().map(|(k, v)| (k.as_str().expect("string key").to_string(), yaml_to_json(v))).collect(),
        ),
        other => panic!("unexpected YAML node {other:?}"),
    }
}

#[test]
fn hparams_yaml_round_trips_tricky_keys_and_values() {
    // keys and values YAML would misread if written plain: `on`, `yes`, `null`, `a: b`, `#x`,
    // leading spaces, numbers as strings, `1e-5` (PyYAML: a string) and `1:20` (YAML 1.1: 80)
    let want: Value = serde_json::from_str(&fixture("hparams_tricky.json")).unwrap();
    let dir = crate::common::temp_dir("hparams_yaml");
    lt::trainer::logger::write_hparams_yaml(&dir, &want).unwrap();
    let text = std::fs::read_to_string(dir.join("hparams.yaml")).unwrap();
    // a YAML 1.2 parser reads back exactly the input
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(docs.len(), 1);
    assert_eq!(yaml_to_json(&docs[0]), want, "{text}");
    // the text is the file PyYAML (YAML 1.1) was shown to read back as the input
    // (tests/fixtures/loggers/gen_hparams_yaml.py wrote hparams_tricky.pyyaml.json)
    assert_eq!(text, fixture("hparams_tricky.yaml"), "the writer changed: rerun gen_hparams_yaml.py");
    let pyyaml: Value = serde_json::from_str(&fixture("hparams_tricky.pyyaml.json")).unwrap();
    assert_eq!(pyyaml, want);
}

#[test]
fn hparams_yaml_of_nothing_is_an_empty_map() {
    let dir = crate::common::temp_dir("hparams_empty");
    lt::trainer::logger::write_hparams_yaml(&dir, &serde_json::json!({})).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("hparams.yaml")).unwrap(), "{}\n");
}

// ---- CSV ----

#[test]
fn csv_fields_may_quote_delimiters_quotes_and_newlines() {
    use lt::data::csv::parse_records;
    let text = "a,b,c\n1,\"x, y\",3\n\n\"4\",\"say \"\"hi\"\"\",6\n7,\"two\nlines\",9\n  10 , 11 ,12\n";
    let (header, rows) = parse_records(text.as_bytes(), ',', true, "t.csv").unwrap();
    assert_eq!(header.unwrap(), ["a", "b", "c"]);
    let fields: Vec<Vec<String>> = rows.iter().map(|r| r.1.clone()).collect();
    assert_eq!(
        fields,
        [vec!["1", "x, y", "3"], vec!["4", "say \"hi\"", "6"], vec!["7", "two\nlines", "9"], vec!["10", "11", "12"]]
    );
    // each row knows the line it starts on (blank lines skipped, a quoted newline counted)
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 4, 5, 7]);
    // other delimiters; no header
    let (h, rows) = parse_records(b"1;2\n3;\"4;5\"\n", ';', false, "t.csv").unwrap();
    assert!(h.is_none());
    assert_eq!(rows[1].1, ["3", "4;5"]);
    // a non-ASCII delimiter, an empty file with a header: clear errors
    assert!(parse_records(b"1,2\n", '→', false, "t.csv").unwrap_err().to_string().contains("ASCII"));
    assert!(parse_records(b"", ',', true, "t.csv").unwrap_err().to_string().contains("empty"));
}

#[test]
fn csv_dataset_reads_a_quoted_newline_field_as_one_row() {
    let dir = crate::common::temp_dir("csv_quoted");
    let p = dir.join("d.csv");
    std::fs::write(&p, "x,label\n1.5,\"cat\"\n2.5,\"big\ndog\"\n3.5,cat\n").unwrap();
    let ok = crate::common::eval_bool(&format!(
        r#"let ds = data::csv("{}", #{{target: "label"}}); ds.len() == 3 && ds.classes == ["big\ndog", "cat"] && ds[1][1].item() == 0"#,
        p.display()
    ));
    assert!(ok);
}

// ---- the validation schedule ----

fn config(interval: Limit, every_n_epoch: Option<i64>) -> TrainerConfig {
    TrainerConfig { val_check_interval: interval, check_val_every_n_epoch: every_n_epoch, ..TrainerConfig::default() }
}

/// The 1-based batch numbers after which one epoch of `n` batches validates (epoch `epoch`, after
/// `before` batches of earlier epochs).
fn points(c: &TrainerConfig, n: usize, epoch: usize, before: usize) -> Vec<usize> {
    (0..n).filter(|&b| val_due(c, b, Some(n), epoch, before + b + 1)).map(|b| b + 1).collect()
}

#[test]
fn validation_schedule_follows_lightning() {
    // default: after the last batch of every epoch
    let c = config(Limit::Fraction(1.0), Some(1));
    assert_eq!(points(&c, 5, 0, 0), [5]);
    // a fraction: every floor(n·f) batches, not also after the last (Lightning: 0.5 of 5 → 2, 4)
    assert_eq!(points(&config(Limit::Fraction(0.5), Some(1)), 5, 0, 0), [2, 4]);
    assert_eq!(points(&config(Limit::Fraction(0.25), Some(1)), 8, 0, 0), [2, 4, 6, 8]);
    assert_eq!(points(&config(Limit::Fraction(0.1), Some(1)), 5, 0, 0), [1, 2, 3, 4, 5]);
    // an int: every k batches of the epoch, restarting each epoch
    let c = config(Limit::Count(2), Some(1));
    assert_eq!(points(&c, 5, 0, 0), [2, 4]);
    assert_eq!(points(&c, 5, 1, 5), [2, 4]);
    // check_val_every_n_epoch: only in epochs 2, 4, … (1-based)
    let c = config(Limit::Fraction(1.0), Some(2));
    assert_eq!(points(&c, 3, 0, 0), Vec::<usize>::new());
    assert_eq!(points(&c, 3, 1, 3), [3]);
    // check_val_every_n_epoch None + int: every k batches of the whole fit, across epochs
    let c = config(Limit::Count(3), None);
    assert_eq!(points(&c, 2, 0, 0), Vec::<usize>::new());
    assert_eq!(points(&c, 2, 1, 2), [1]);
    assert_eq!(points(&c, 2, 2, 4), [2]);
    // an unknown epoch length: a fraction below 1 never fires; 1.0 waits for the end
    assert!(!val_due(&config(Limit::Fraction(0.5), Some(1)), 3, None, 0, 4));
}

/// Checkpoint filenames format NaN and the infinities as Python's `format` does (`nan`, `inf`,
/// `-inf`; width padding with zeros or spaces; `%` kept).
#[test]
fn filename_specs_spell_non_finite_values_as_python() {
    use lt::callbacks::filename::format_spec;
    let nan = f64::NAN;
    let cases = [
        (nan, ".2f", "nan"),
        (nan, "08.2f", "00000nan"),
        (nan, "8.2f", "     nan"),
        (nan, ".1e", "nan"),
        (nan, ".0%", "nan%"),
        (nan, "", "nan"),
        (f64::NEG_INFINITY, ".2f", "-inf"),
        (f64::NEG_INFINITY, "08.2f", "-0000inf"),
        (f64::INFINITY, "e", "inf"),
    ];
    for (v, spec, want) in cases {
        assert_eq!(format_spec(v, spec, false).unwrap(), want, "format({v}, '{spec}')");
    }
}
