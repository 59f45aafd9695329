//! How many bytes one list answer (a `rooms` page, a `history` answer) may hold, and
//! taking entries within that: the rule both ops follow, so no answer outgrows the
//! outbound queue of the client that asked (issue 14).

/// Most bytes of messages one `history` answer holds, whatever the outbound limit:
/// the protocol's 1 MiB (docs/protocol.md).
const HISTORY_MAX_BYTES: usize = 1 << 20;

/// How many list answers fit in one connection's outbound queue: each holds at most
/// `max_outbound / ANSWERS_PER_OUTBOUND` bytes of entries. An answer larger than
/// `max_outbound` would cut the honest client that asked off as a slow consumer; a
/// quarter leaves room for a few pipelined answers and the events arriving meanwhile.
const ANSWERS_PER_OUTBOUND: usize = 4;

/// The byte budgets of list answers on a server whose outbound limit is
/// `max_outbound` bytes per connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnswerBudget {
    /// Most bytes of entries in a `rooms` page.
    pub(crate) rooms: usize,
    /// Most bytes of messages in a `history` answer: the smaller of the list budget
    /// and the protocol's 1 MiB.
    pub(crate) history: usize,
    /// Most bytes of kept direct messages handed over at one `login` or `resume`
    /// (the rest stay kept, stored, for the next one).
    pub(crate) kept_dms: usize,
}

impl AnswerBudget {
    pub(crate) fn new(max_outbound: usize) -> AnswerBudget {
        let list = (max_outbound / ANSWERS_PER_OUTBOUND).max(1);
        AnswerBudget {
            rooms: list,
            history: list.min(HISTORY_MAX_BYTES),
            kept_dms: list,
        }
    }
}

/// Takes encoded entries in order while their bytes stay within `budget`, and always
/// the first, so a client paging on always makes progress.
pub(crate) fn take_within<B: AsRef<[u8]>>(
    entries: impl Iterator<Item = B>,
    budget: usize,
) -> Vec<B> {
    let mut picked = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        bytes += entry.as_ref().len();
        if bytes > budget && !picked.is_empty() {
            break;
        }
        picked.push(entry);
    }
    picked
}
