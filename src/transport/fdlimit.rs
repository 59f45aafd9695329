//! The process's open-file limit: every connection is a file descriptor, so a server
//! meant to hold `--max-conns` connections raises its soft limit towards that at
//! start-up, and says so plainly when the hard limit does not allow it.

/// File descriptors kept for listeners, the database, logs and the like.
const HEADROOM: u64 = 64;

/// Raises the soft limit to fit `connections` (never lowers it). Returns a warning
/// for the operator when the limit stays too low.
pub(crate) fn fit(connections: usize) -> Option<String> {
    let wanted = connections as u64 + HEADROOM;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Some(
            "cannot read the open-file limit; connections may run out of file descriptors".into(),
        );
    }
    if limit.rlim_cur >= wanted {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: wanted.min(limit.rlim_max),
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0;
    let now = if ok { raised.rlim_cur } else { limit.rlim_cur };
    if now >= wanted {
        log::info!(
            "raised the open-file limit from {} to {now}",
            limit.rlim_cur
        );
        return None;
    }
    Some(format!(
        "the open-file limit is {now} (hard limit {}), too low for --max-conns {connections}: \
         about {} connections fit; raise the limit (`ulimit -n {wanted}`, or LimitNOFILE= in a systemd unit) or lower --max-conns",
        limit.rlim_max,
        now.saturating_sub(HEADROOM)
    ))
}
