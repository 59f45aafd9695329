//! Property tests of the frame splitter and the request parser, through the
//! `parlor::fuzzing` wrappers: the same frames whatever the read boundaries, bounded
//! memory, CRLF as LF, and a parser that answers every input without panicking.
//!
//! The case counts are capped so the whole file runs in a few seconds; `fuzz/` runs the
//! same kind of checks for as long as one likes.

use parlor::fuzzing::{Piece, Splitting, parse, split};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Every built-in op's name.
const OPS: [&str; 16] = [
    "ping", "echo", "signup", "login", "resume", "logout", "whoami", "create", "join", "leave",
    "rooms", "members", "send", "dm", "history", "quit",
];

/// The error codes the parser itself gives (the rest come from the chat layer).
const PARSER_CODES: [&str; 3] = ["bad_json", "bad_request", "unknown_op"];

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Bytes with newlines, CRs and blanks common enough that lines are short and varied.
/// (A plain byte vector mapped afterwards: a per-byte `prop_oneof!` is many times
/// slower to generate in a debug build.)
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u16>(), 0..1500).prop_map(|raw| {
        raw.into_iter()
            .map(|r| match r % 18 {
                0..=2 => b'\n',
                3 => b'\r',
                4 | 5 => b' ',
                _ => (r >> 8) as u8,
            })
            .collect()
    })
}

/// Cuts `stream` at the given offsets (taken modulo its length, sorted), as reads.
fn cut_at(stream: &[u8], offsets: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = offsets.iter().map(|&o| o % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut reads = Vec::new();
    let mut from = 0;
    for to in cuts.into_iter().chain([stream.len()]) {
        reads.push(stream[from..to].to_vec());
        from = to;
    }
    reads
}

fn split_reads(reads: &[Vec<u8>], max_frame: usize) -> Splitting {
    let reads: Vec<&[u8]> = reads.iter().map(Vec::as_slice).collect();
    split(&reads, max_frame)
}

/// Lines holding neither `\r` nor `\n`, blanks common (so some lines are blank).
fn lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let line = prop::collection::vec(any::<u16>(), 0..120).prop_map(|raw| {
        raw.into_iter()
            .map(|r| match (r % 10, (r >> 8) as u8) {
                (0, _) => b' ',
                (1, _) => b'\t',
                (_, b'\n' | b'\r') => b'x',
                (_, byte) => byte,
            })
            .collect::<Vec<u8>>()
    });
    prop::collection::vec(line, 0..40)
}

fn joined(lines: &[Vec<u8>], ending: &[u8]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| [l.as_slice(), ending])
        .flatten()
        .copied()
        .collect()
}

/// A JSON value of any kind, small.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop::sample::select(OPS.to_vec()).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with the protocol's field names (and others), holding anything.
fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "op", "id", "user", "password", "session", "room", "topic", "text", "to", "data",
            "before", "after", "limit",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,8}",
    ];
    prop::collection::btree_map(key, json_value(), 0..8).prop_map(|m| m.into_iter().collect())
}

fn assert_answerable(result: &Result<String, String>) {
    match result {
        Ok(op) => assert!(OPS.contains(&op.as_str()), "parsed an unknown op {op:?}"),
        Err(code) => assert!(PARSER_CODES.contains(&code.as_str()), "code {code:?}"),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Read boundaries change nothing: the same frames, the same too-large markers, the
    /// same unfinished tail; and between reads fewer than `max_frame` bytes are held.
    #[test]
    fn any_read_boundaries_give_the_frames_of_one_read(
        stream in stream(),
        offsets in prop::collection::vec(any::<usize>(), 0..40),
        max_frame in 1usize..300,
    ) {
        let whole = split(&[&stream], max_frame);
        let chunked = split_reads(&cut_at(&stream, &offsets), max_frame);
        prop_assert_eq!(&chunked.pieces, &whole.pieces);
        prop_assert_eq!(chunked.held, whole.held);
        prop_assert!(chunked.peak_held < max_frame, "held {}", chunked.peak_held);
    }

    /// Byte-at-a-time reads, the worst case for rescanning, give the same frames too.
    #[test]
    fn byte_at_a_time_reads_give_the_frames_of_one_read(
        stream in stream(),
        max_frame in 1usize..300,
    ) {
        let whole = split(&[&stream], max_frame);
        let reads: Vec<&[u8]> = stream.chunks(1).collect();
        let chunked = split(&reads, max_frame);
        prop_assert_eq!(&chunked.pieces, &whole.pieces);
        prop_assert!(chunked.peak_held < max_frame);
    }

    /// A frame and its newline always fit in `max_frame`; frames hold no newline and
    /// are never blank.
    #[test]
    fn frames_never_exceed_max_frame(
        stream in stream(),
        offsets in prop::collection::vec(any::<usize>(), 0..40),
        max_frame in 1usize..300,
    ) {
        for piece in split_reads(&cut_at(&stream, &offsets), max_frame).pieces {
            if let Piece::Frame(frame) = piece {
                prop_assert!(frame.len() < max_frame, "frame of {} bytes", frame.len());
                prop_assert!(!frame.contains(&b'\n'));
                prop_assert!(!frame.iter().all(u8::is_ascii_whitespace));
            }
        }
    }

    /// With room to spare, every non-blank line comes out as one frame, whatever it holds.
    #[test]
    fn short_lines_come_out_as_they_went_in(lines in lines()) {
        let stream = joined(&lines, b"\n");
        let expected: Vec<Piece> = lines
            .iter()
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(|l| Piece::Frame(l.clone()))
            .collect();
        prop_assert_eq!(split(&[&stream], 200).pieces, expected);
    }

    /// `\r\n` and `\n` endings give the same frames. The `\r` counts toward
    /// `max_frame`, so the same lines fit in one more byte with CRLF.
    #[test]
    fn crlf_and_lf_give_the_same_frames(
        lines in lines(),
        offsets in prop::collection::vec(any::<usize>(), 0..20),
        max_frame in 1usize..150,
    ) {
        let lf = joined(&lines, b"\n");
        let crlf = joined(&lines, b"\r\n");
        prop_assert_eq!(
            split_reads(&cut_at(&crlf, &offsets), max_frame + 1).pieces,
            split(&[&lf], max_frame).pieces
        );
        // With room to spare, one limit does for both.
        prop_assert_eq!(
            split_reads(&cut_at(&crlf, &offsets), 200).pieces,
            split(&[&lf], 200).pieces
        );
    }

    /// Any bytes: no panic, and an answer the protocol has.
    #[test]
    fn parser_answers_arbitrary_bytes(frame in prop::collection::vec(any::<u8>(), 0..300)) {
        let result = parse(&frame);
        assert_answerable(&result);
        if std::str::from_utf8(&frame).is_err() {
            prop_assert_eq!(result, Err("bad_json".to_owned()));
        }
    }

    /// Any JSON object with the protocol's field names holding values of any type: no
    /// panic, and an answer the protocol has.
    #[test]
    fn parser_answers_arbitrary_objects(object in json_object()) {
        let frame = serde_json::to_vec(&object).expect("a JSON object serializes");
        let result = parse(&frame);
        assert_answerable(&result);
        match object.get("op") {
            None => prop_assert_eq!(result, Err("bad_request".to_owned())),
            Some(Value::String(op)) if !OPS.contains(&op.as_str()) => {
                // A bad `id` is found before the op is looked up.
                prop_assert!(result.is_err());
            }
            _ => {}
        }
    }

    /// Any JSON value that is not an object is `bad_json`.
    #[test]
    fn parser_refuses_non_objects(value in json_value()) {
        prop_assume!(!value.is_object());
        let frame = serde_json::to_vec(&value).expect("a JSON value serializes");
        prop_assert_eq!(parse(&frame), Err("bad_json".to_owned()));
    }

    /// Well-formed requests of every op parse as that op, whatever else they carry.
    #[test]
    fn parser_accepts_well_formed_requests(
        op in prop::sample::select(OPS.to_vec()),
        name in "[A-Za-z0-9_.-]{1,32}",
        text in ".{1,40}",
        id in prop_oneof![
            Just(None),
            any::<u32>().prop_map(|n| Some(Value::from(n))),
            "[a-z0-9]{0,20}".prop_map(|s| Some(Value::from(s))),
        ],
        extra in json_value(),
    ) {
        let mut request = json!({
            "op": op, "user": name, "password": text, "session": text, "room": name,
            "topic": text, "text": text, "to": name, "data": extra, "limit": 10,
            "after": 1, "before": 5, "unknown_field": extra,
        });
        if let Some(id) = id {
            request["id"] = id;
        }
        // `rooms` pages after a room's name (`history`, after a seq).
        if op == "rooms" {
            request["after"] = json!(name);
        }
        let frame = serde_json::to_vec(&request).expect("a JSON object serializes");
        prop_assert_eq!(parse(&frame), Ok(op.to_owned()));
    }
}

/// Crash and edge inputs kept as regressions (the fuzzers found none so far; these
/// are the corners the splitter's own logic has).
#[test]
fn splitter_edges() {
    // A line of exactly `max_frame` bytes with its `\n` fits; one more byte does not,
    // and the `\r` of `\r\n` counts.
    assert_eq!(
        split(&[b"abc\n"], 4).pieces,
        [Piece::Frame(b"abc".to_vec())]
    );
    assert_eq!(split(&[b"abcd\n"], 4).pieces, [Piece::TooLarge]);
    assert_eq!(split(&[b"abc\r\n"], 4).pieces, [Piece::TooLarge]);
    // A long line whose first read fills `max_frame` exactly is dropped as it comes.
    let s = split(&[b"abcd", b"efgh", b"\nok\n"], 4);
    assert_eq!(s.pieces, [Piece::TooLarge, Piece::Frame(b"ok".to_vec())]);
    assert_eq!(s.peak_held, 0);
    // A blank line that is too long is still too long.
    assert_eq!(split(&[b"      \n"], 4).pieces, [Piece::TooLarge]);
    // Empty reads change nothing.
    assert_eq!(
        split(&[b"", b"a", b"", b"\n", b""], 4).pieces,
        [Piece::Frame(b"a".to_vec())]
    );
}

#[test]
fn parser_edges() {
    assert_eq!(parse(b""), Err("bad_json".to_owned()));
    assert_eq!(parse(b"{\"op\":null}"), Err("bad_request".to_owned()));
    assert_eq!(parse(b"{\"op\":\"nope\"}"), Err("unknown_op".to_owned()));
    assert_eq!(
        parse(b"{\"id\":null,\"op\":\"ping\"}"),
        Err("bad_request".to_owned())
    );
    assert_eq!(
        parse(b"{\"op\":\"history\",\"room\":\"r\",\"limit\":0}"),
        Err("bad_request".to_owned())
    );
    assert_eq!(
        parse(b"{\"op\":\"history\",\"room\":\"r\",\"after\":-1}"),
        Err("bad_request".to_owned())
    );
    assert_eq!(
        parse(b"{\"op\":\"send\",\"room\":\"r\",\"text\":\"\"}"),
        Err("bad_request".to_owned())
    );
    assert_eq!(parse(b"{\"op\":\"p\\u0069ng\"}"), Ok("ping".to_owned()));
    // Deep nesting in a value kept raw (`data`) is skipped without recursion: no stack
    // overflow, and `echo` sends it back as it came.
    let deep = format!(
        "{{\"op\":\"echo\",\"data\":{}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(parse(deep.as_bytes()), Ok("echo".to_owned()));
    // Where a field is typed, nesting is refused at serde_json's recursion limit.
    let deep = format!(
        "{{\"op\":\"send\",\"room\":{}{},\"text\":\"x\"}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(parse(deep.as_bytes()), Err("bad_request".to_owned()));
}
