//! Text: read_text, char/word tokenizers (checked against BERT's BasicTokenizer split and
//! torchtext's vocabulary order in tests/fixtures/data/text_reference.json), text_windows.
use crate::common::{eval, eval_bool, root, temp_dir};
use lt::data::tokenizer::{split_words, Level, Tokenizer, VocabOptions};

fn reference() -> serde_json::Value {
    let p = root().join("tests/fixtures/data/text_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn word_tokenizer_matches_bert_split_and_torchtext_vocab() {
    let r = reference();
    let corpus = r["corpus"].as_str().unwrap();
    let tests = strings(&r["tests"]);
    for case in r["word"].as_array().unwrap() {
        let lower = case["lower"].as_bool().unwrap();
        assert_eq!(split_words(corpus, lower), strings(&case["words"]), "lower={lower}");
        let specials = strings(&case["specials"]);
        let unk_token = specials.iter().find(|s| *s == "<unk>").cloned();
        let opts = VocabOptions { specials, unk_token, min_freq: case["min_freq"].as_u64().unwrap() as usize };
        let tok = Tokenizer::build(corpus, Level::Word { lower }, &opts).unwrap();
        assert_eq!(tok.vocab(), strings(&case["vocab"]).as_slice(), "{case}");
        for (t, want) in tests.iter().zip(case["encoded"].as_array().unwrap()) {
            let got = tok.encode(t);
            if want.is_null() {
                let e = got.unwrap_err().to_string();
                assert!(e.contains("is not in the vocabulary") && e.contains("unk_token"), "{e}");
            } else {
                let want: Vec<i64> = want.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                assert_eq!(got.unwrap(), want, "{t:?} in {case}");
            }
        }
    }
}

#[test]
fn char_tokenizer_matches_text_file_vocab_and_round_trips() {
    let r = reference();
    let corpus = r["corpus"].as_str().unwrap();
    let tok = Tokenizer::build(corpus, Level::Char, &VocabOptions::default()).unwrap();
    assert_eq!(tok.vocab(), strings(&r["char_vocab"]).as_slice());
    let first = &strings(&r["tests"])[0];
    let ids = tok.encode(first).unwrap();
    let want: Vec<i64> = r["char_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&ids).unwrap(), *first);
    // the same ids as data::text_file's char mode over the same text
    let dir = temp_dir("text_chars");
    let p = dir.join("c.txt");
    std::fs::write(&p, corpus).unwrap();
    let ds = lt::data::text::TextDataset::load(&p, 4, None, true).unwrap();
    assert_eq!(ds.vocab().unwrap(), tok.vocab());
    // specials come first; unk_token maps unseen characters
    let opts = VocabOptions { specials: vec!["<unk>".into()], unk_token: Some("<unk>".into()), min_freq: 1 };
    let tok = Tokenizer::build("ba", Level::Char, &opts).unwrap();
    assert_eq!(tok.vocab(), ["<unk>", "a", "b"]);
    assert_eq!(tok.encode("abz").unwrap(), [1, 2, 0]);
    assert!(tok.decode(&[3]).unwrap_err().to_string().contains("id 3 is out of range for a vocabulary of 3"));
}

#[test]
fn script_tokenizers_read_text_and_text_windows() {
    let dir = temp_dir("text_script");
    let p = dir.join("corpus.txt");
    std::fs::write(&p, "to be or not to be").unwrap();
    let src = format!(
        r#"
        let text = data::read_text("{p}");
        let tok = data::word_tokenizer(text);
        if tok.vocab != ["be", "to", "not", "or"] {{ throw `vocab ${{tok.vocab}}`; }}
        if tok.vocab_size != 4 || tok.token_to_id("not") != 2 || tok.id_to_token(3) != "or" {{ throw "lookup"; }}
        if tok.token_to_id("nope") != () || tok.id_to_token(9) != () {{ throw "missing lookups are ()"; }}
        let ids = tok.encode(text);
        if ids.dtype != "int64" || ids.shape != [6] {{ throw `ids ${{ids}}`; }}
        if tok.decode(ids) != text || tok.decode([1, 0]) != "to be" {{ throw "decode"; }}
        let ds = data::text_windows(ids, #{{seq_len: 2, stride: 1}});
        if ds.len() != 4 {{ throw `len ${{ds.len()}}`; }}
        let s = ds[3];
        if !s[0].equal(torch::tensor([2, 1])) || !s[1].equal(torch::tensor([1, 0])) {{ throw `sample ${{s}}`; }}
        let c = data::char_tokenizer("abca", #{{specials: ["<pad>"]}});
        c.vocab == ["<pad>", "a", "b", "c"] && c.decode(c.encode("cab")) == "cab"
        "#,
        p = p.display()
    );
    assert!(eval_bool(&src));
}

#[test]
fn text_errors_are_clear() {
    let dir = temp_dir("text_bad");
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"ok\xff\xfe").unwrap();
    let cases = [
        (format!(r#"data::read_text("{}")"#, bad.display()), "not valid UTF-8 at byte 2"),
        (format!(r#"data::read_text("{}/missing.txt")"#, dir.display()), "missing.txt"),
        (r#"data::char_tokenizer("ab").encode("abc")"#.into(), r#"token "c" is not in the vocabulary"#),
        (r#"data::word_tokenizer("a b", #{min_freq: 0})"#.into(), "min_freq must be at least 1"),
        (r#"data::word_tokenizer("a b", #{lowercase: true})"#.into(), "lower"),
        (
            r#"data::word_tokenizer("a b", #{unk_token: "<unk>"})"#.into(),
            "unk_token \"<unk>\" is not in the vocabulary",
        ),
        (r#"data::word_tokenizer("a", #{specials: ["x", "x"]})"#.into(), "listed twice"),
        (r#"data::word_tokenizer("a a", #{min_freq: 3})"#.into(), "empty vocabulary"),
        (r#"data::char_tokenizer("ab").decode([0, -1])"#.into(), "id -1 is out of range"),
        (r#"data::char_tokenizer("ab").decode(torch::ones([2]))"#.into(), "must be integers"),
        (r#"data::text_windows(torch::arange(4), #{seq_len: 4})"#.into(), "4 tokens is too short"),
        (r#"data::text_windows(torch::ones([4]), #{seq_len: 2})"#.into(), "token ids must be integers"),
        (r#"data::text_windows(torch::zeros([2, 4]).to("int64"))"#.into(), "must be a 1-D tensor"),
        (r#"data::text_windows(torch::arange(8) - 1, #{seq_len: 2})"#.into(), "non-negative, found -1"),
        (r#"data::text_windows(torch::arange(8), #{seq_len: 2, stride: 0})"#.into(), "stride must be positive"),
        (r#"data::text_windows(torch::arange(8), #{seq_len: 2, strides: 1})"#.into(), "stride"),
    ];
    for (src, want) in cases {
        let e = eval(&src).map(|v| v.to_string()).expect_err(&src);
        assert!(e.contains(want), "{src}: missing {want:?} in {e}");
    }
}

#[test]
fn hugging_face_tokenizer_json_matches_python_tokenizers() {
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/data/tokenizers_reference.json")).unwrap(),
    )
    .unwrap();
    for (name, f) in r["files"].as_object().unwrap() {
        let path = root().join("tests/fixtures/data").join(f["path"].as_str().unwrap());
        let src = format!(
            "let tok = data::tokenizer(\"{}\"); let out = [tok.vocab_size, tok.token_to_id(\"[UNK]\")]; \
             for t in {} {{ let ids = tok.encode(t); out.push([ids.to_array(), tok.decode(ids), ids.dtype]); }} out",
            path.display(),
            r["tests"]
        );
        let v = eval(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = lt::script::lightning::to_json(&v);
        assert_eq!(got[0], f["vocab_size"], "{name}");
        assert_eq!(got[1], f["token_to_id"]["[UNK]"], "{name}");
        for (i, case) in f["cases"].as_array().unwrap().iter().enumerate() {
            assert_eq!(got[2 + i][0], case["ids"], "{name}: {}", case["text"]);
            assert_eq!(got[2 + i][1], case["decoded"], "{name}: {}", case["text"]);
            assert_eq!(got[2 + i][2], "int64");
        }
    }
    let dir = temp_dir("hf_tok_bad");
    let bad = dir.join("tokenizer.json");
    std::fs::write(&bad, "{\"version\": \"1.0\", \"model\": 3}").unwrap();
    let e = eval(&format!("data::tokenizer(\"{}\")", bad.display())).unwrap_err();
    assert!(e.contains("not a Hugging Face tokenizer.json file"), "{e}");
    let p = root().join("tests/fixtures/data/tokenizer_bpe.json");
    let e = eval(&format!("data::tokenizer(\"{}\").decode([100000])", p.display())).unwrap_err();
    assert!(e.contains("id 100000 is out of range for a vocabulary of 300"), "{e}");
}
