//! Newline framing for chat mode: splits received bytes into frames, ignores blank
//! lines, and discards over-long lines up to their newline with bounded memory.

/// One step of splitting, relative to the start of the unconsumed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// A frame: `data[..end]` (without `\r\n`), then consume `next` bytes.
    Frame { end: usize, next: usize },
    /// A line longer than `max_frame` just ended: answer `frame_too_large`, consume.
    TooLarge { next: usize },
    /// A blank line: consume `next` bytes. It is a line all the same (it counts toward
    /// the frame rate).
    Blank { next: usize },
    /// Bytes to drop: part of an over-long line.
    Skip { next: usize },
    /// No complete line yet: read more.
    Incomplete,
}

/// The splitter's state between reads.
#[derive(Debug)]
pub(crate) struct Splitter {
    max_frame: usize,
    /// Inside a line that is already too long: drop until its newline.
    discarding: bool,
    /// Bytes at the start of the input already known to hold no newline, so a frame
    /// arriving a byte at a time is not rescanned from its start each time.
    scanned: usize,
}

impl Split {
    /// Whether this ends a line the client sent (a frame, a blank line, or an
    /// over-long one): what the frame rate counts.
    pub(crate) fn is_line(self) -> bool {
        matches!(
            self,
            Split::Frame { .. } | Split::TooLarge { .. } | Split::Blank { .. }
        )
    }
}

impl Splitter {
    /// The longest frame this splitter passes, newline included, in bytes.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// A splitter for frames of at most `max_frame` bytes, newline included.
    pub(crate) fn new(max_frame: usize) -> Splitter {
        Splitter {
            max_frame,
            discarding: false,
            scanned: 0,
        }
    }

    /// Looks at the unconsumed input and says what comes next. The caller consumes
    /// `next` bytes before calling again (nothing for `Incomplete`).
    pub(crate) fn next(&mut self, data: &[u8]) -> Split {
        let from = self.scanned.min(data.len());
        let Some(pos) = memchr::memchr(b'\n', &data[from..]).map(|i| from + i) else {
            if self.discarding || data.len() >= self.max_frame {
                self.discarding = true;
                self.scanned = 0;
                return if data.is_empty() {
                    Split::Incomplete
                } else {
                    Split::Skip { next: data.len() }
                };
            }
            self.scanned = data.len();
            return Split::Incomplete;
        };
        self.scanned = 0;
        let next = pos + 1;
        if std::mem::take(&mut self.discarding) || next > self.max_frame {
            return Split::TooLarge { next };
        }
        let line = &data[..pos];
        let end = if line.last() == Some(&b'\r') {
            pos - 1
        } else {
            pos
        };
        if line[..end].iter().all(u8::is_ascii_whitespace) {
            Split::Blank { next }
        } else {
            Split::Frame { end, next }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, as reads would deliver it, and
    /// returns frames (as strings) and `!` for each too-large line.
    fn split_all(input: &[u8], step: usize, max: usize) -> Vec<String> {
        let mut splitter = Splitter::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match splitter.next(&buf) {
                    Split::Frame { end, next } => {
                        out.push(String::from_utf8_lossy(&buf[..end]).into_owned());
                        buf.drain(..next);
                    }
                    Split::TooLarge { next } => {
                        out.push("!".into());
                        buf.drain(..next);
                    }
                    Split::Skip { next } | Split::Blank { next } => {
                        buf.drain(..next);
                    }
                    Split::Incomplete => break,
                }
            }
            assert!(buf.len() <= max + step, "buffer grew to {}", buf.len());
        }
        out
    }

    #[test]
    fn splits_lf_crlf_and_skips_blank_lines() {
        let input = b"a\r\nb\n\n \r\n\t\nc\n";
        for step in 1..input.len() {
            assert_eq!(split_all(input, step, 100), ["a", "b", "c"], "step {step}");
        }
    }

    #[test]
    fn max_frame_counts_the_newline_and_the_cr() {
        assert_eq!(split_all(b"abc\n", 4, 4), ["abc"]);
        assert_eq!(split_all(b"abcd\n", 5, 4), ["!"]);
        assert_eq!(split_all(b"abc\r\n", 5, 4), ["!"]);
        assert_eq!(split_all(b"ab\r\n", 1, 4), ["ab"]);
    }

    #[test]
    fn over_long_line_is_discarded_once_and_the_next_frame_survives() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nok\n");
        for step in [1, 7, 100, 4096, 20_000] {
            assert_eq!(split_all(&input, step, 64), ["!", "ok"], "step {step}");
        }
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let mut splitter = Splitter::new(64);
        assert_eq!(splitter.next(b"{\"op\""), Split::Incomplete);
        assert_eq!(
            splitter.next(b"{\"op\":1}\n"),
            Split::Frame { end: 8, next: 9 }
        );
    }
}
