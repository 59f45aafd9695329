//! The process's open-file limit: every connection is a file descriptor, so a server
//! meant to hold `--max-conns` connections raises its soft limit towards that at
//! start-up, and says so plainly when the hard limit does not allow it.

use rlimit::Resource;

/// File descriptors kept for listeners, the database, logs and the like.
const HEADROOM: u64 = 64;

/// Raises the soft limit to fit `connections` (never lowers it). Returns a warning
/// for the operator when the limit stays too low.
pub(crate) fn fit(connections: usize) -> Option<String> {
    let wanted = connections as u64 + HEADROOM;
    let Ok((before, hard)) = Resource::NOFILE.get() else {
        return Some(
            "cannot read the open-file limit; connections may run out of file descriptors".into(),
        );
    };
    if before >= wanted {
        return None;
    }
    // Raises the soft limit as far as the hard limit allows.
    let now = rlimit::increase_nofile_limit(wanted).unwrap_or(before);
    if now >= wanted {
        log::info!("raised the open-file limit from {before} to {now}");
        return None;
    }
    Some(format!(
        "the open-file limit is {now} (hard limit {hard}), too low for --max-conns {connections}: \
         about {} connections fit; raise the limit (`ulimit -n {wanted}`, or LimitNOFILE= in a systemd unit) or lower --max-conns",
        now.saturating_sub(HEADROOM)
    ))
}
