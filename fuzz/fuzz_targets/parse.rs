//! Fuzzes the request parser with arbitrary bytes as one frame: it must not panic, and
//! must either name a built-in op or answer one of the parser's own error codes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parlor::fuzzing::parse;

const OPS: [&str; 16] = [
    "ping", "echo", "signup", "login", "resume", "logout", "whoami", "create", "join", "leave",
    "rooms", "members", "send", "dm", "history", "quit",
];

fuzz_target!(|frame: &[u8]| {
    match parse(frame) {
        Ok(op) => assert!(OPS.contains(&op.as_str()), "parsed an unknown op {op:?}"),
        Err(code) => assert!(
            matches!(code.as_str(), "bad_json" | "bad_request" | "unknown_op"),
            "unexpected error code {code:?}"
        ),
    }
});
