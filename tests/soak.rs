//! A light soak and fault test, short enough for CI: `examples/soak.rs`, the same
//! program `benches/soak.sh` runs for a minute with thousands of connections, given
//! a few seconds and 60 connections against an in-process server. It mixes chat
//! traffic with misbehaving clients (slow readers, abrupt disconnects, garbage bytes,
//! over-long lines, clients that reconnect), then checks that the server still
//! answers and that every acknowledged message is in its history exactly once; it
//! exits non-zero if not. This test also holds it to cutting the slow readers off and
//! to giving back the memory the faults took.
//!
//! Run it with `--nocapture` to see the figures.

use std::process::Command;

use parlor::{Config, Storage};

mod common;

/// Queue limit per connection: small, so slow readers are cut off within the run.
const MAX_OUTBOUND: usize = 256 * 1024;
/// How much more resident memory the process may hold after the run than before it:
/// the messages sent are kept (in memory), allocators keep freed pages and per-thread
/// arenas. A leak of what the faults put through (over-long lines, slow consumers'
/// queues, dropped connections) is far larger.
const RSS_MARGIN_KIB: u64 = 32 * 1024;

/// The number after each of `labels` in `line`, each label looked for after the one
/// before it.
fn numbers_after(line: &str, labels: &[&str]) -> Vec<u64> {
    let mut rest = line;
    labels
        .iter()
        .map(|label| {
            let at = rest
                .find(label)
                .unwrap_or_else(|| panic!("no `{label}` in {line:?}"));
            rest = rest[at + label.len()..].trim_start();
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no number after `{label}` in {line:?}"))
        })
        .collect()
}

#[test]
fn server_survives_mixed_faults_and_loses_nothing() {
    let mut config = Config::default();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.storage = Storage::InMemory;
    config.bcrypt_cost = 4;
    config.max_outbound = MAX_OUTBOUND;
    let max_frame = config.max_frame.to_string();
    let (handle, addr) = common::start_with(config);
    // The server runs in this process: its memory is this process's.
    let pid = std::process::id().to_string();
    let output = Command::new(common::example("soak"))
        .args(["--addr", &addr.to_string(), "--secs", "6", "--conns", "60"])
        .args(["--max-frame", &max_frame, "--server-pid", &pid])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "soak: {}\n--- stdout\n{stdout}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The example's own verdict: nothing lost, nothing out of order, still answering.
    assert!(output.status.success(), "the soak example failed");
    let line = |start: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no `{start}` line"))
    };
    let lost = numbers_after(line("lost = "), &["lost = "]);
    assert_eq!(lost, [0]);
    let faults = line("faults injected:");
    let slow = numbers_after(faults, &["slow readers", "(", "cut off"]);
    assert!(
        slow[1] > 0 && slow[2] == slow[1],
        "every slow reader checked must have been cut off: {faults}"
    );
    let rss = numbers_after(line("server RSS:"), &["before", "after"]);
    assert!(
        rss[1] <= rss[0] + RSS_MARGIN_KIB,
        "RSS grew from {} KiB to {} KiB",
        rss[0],
        rss[1]
    );
    handle.shutdown();
}
