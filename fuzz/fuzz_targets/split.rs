//! Fuzzes the chat frame splitter: arbitrary bytes, cut into arbitrary reads, with an
//! arbitrary `max_frame`. It must not panic, must hold fewer than `max_frame` bytes
//! between reads however long a line is, and must make of the reads exactly what it
//! makes of the same bytes in one read.
//!
//! Input layout: 2 bytes of `max_frame` (little endian, taken mod 512 so that
//! over-long lines are common), 1 byte `k`, `k` bytes of read lengths (used in turn,
//! over and over, until the stream runs out), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parlor::fuzzing::{Piece, split};

fuzz_target!(|input: &[u8]| {
    let Some((head, rest)) = input.split_first_chunk::<3>() else {
        return;
    };
    let max_frame = usize::from(u16::from_le_bytes([head[0], head[1]]) % 512);
    let cuts = rest.len().min(usize::from(head[2]));
    let (lengths, stream) = rest.split_at(cuts);

    let reads = cut(stream, lengths);
    let chunked = split(&reads, max_frame);
    let whole = split(&[stream], max_frame);

    assert!(
        chunked.peak_held < max_frame.max(1),
        "held {} bytes between reads with max_frame {max_frame}",
        chunked.peak_held
    );
    assert_eq!(chunked.pieces, whole.pieces, "reads {:?}", lengths);
    assert_eq!(chunked.held, whole.held);
    for piece in &chunked.pieces {
        if let Piece::Frame(frame) = piece {
            // The frame plus at least its `\n` fits in `max_frame`.
            assert!(frame.len() < max_frame, "frame of {} bytes", frame.len());
            assert!(!frame.contains(&b'\n'));
            assert!(!frame.iter().all(u8::is_ascii_whitespace));
        }
    }
});

/// Cuts `stream` into reads of the given lengths, cycling through them; a round that
/// takes nothing (all lengths zero) ends the cycling, and the rest is one last read.
fn cut<'a>(mut stream: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    let mut reads = Vec::new();
    'rounds: while !lengths.is_empty() {
        let mut took = false;
        for &len in lengths {
            if stream.is_empty() {
                break 'rounds;
            }
            let (read, rest) = stream.split_at(usize::from(len).min(stream.len()));
            reads.push(read);
            took |= !read.is_empty();
            stream = rest;
        }
        if !took {
            break;
        }
    }
    reads.push(stream);
    reads
}
