//! Entry points for the fuzz targets (`fuzz/`) and the property tests
//! (`tests/properties.rs`) only: thin public wrappers over the crate-private frame
//! splitter and request parser, so they can be driven without a socket. Not part of
//! the API; they may change or go away in any release.

use crate::protocol::framing::{Split, Splitter};
use crate::protocol::request::{self as protocol, OpKind};

/// One thing the splitter makes of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A frame, without its `\n` (or `\r\n`): what the server parses as a request.
    Frame(Vec<u8>),
    /// A line longer than `max_frame` ended: the server answers `frame_too_large`.
    TooLarge,
}

/// What [`split`] made of a stream, and how much of it had to be kept around.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splitting {
    /// Frames and too-large markers, in stream order.
    pub pieces: Vec<Piece>,
    /// The most bytes held between two reads, once everything that could be consumed
    /// was: the memory a connection keeps while it waits for more input.
    pub peak_held: usize,
    /// Bytes of an unfinished line held at the end of the stream (a disconnect now
    /// would drop them).
    pub held: usize,
}

/// Splits a stream that arrives as `chunks`, one read each, the way the chat service
/// does: after each read it takes every complete frame and consumes what the splitter
/// says, then waits for the next read. For fuzzing and property tests only.
pub fn split(chunks: &[&[u8]], max_frame: usize) -> Splitting {
    let mut splitter = Splitter::new(max_frame);
    // Consumed bytes stay in front of `start` until the next read, as in the server's
    // input buffer, so `data` is the unconsumed tail.
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut pieces = Vec::new();
    let mut peak_held = 0;
    for chunk in chunks {
        buf.drain(..start);
        start = 0;
        buf.extend_from_slice(chunk);
        loop {
            let data = &buf[start..];
            match splitter.next(data) {
                Split::Frame { end, next } => {
                    pieces.push(Piece::Frame(data[..end].to_vec()));
                    start += next;
                }
                Split::TooLarge { next } => {
                    pieces.push(Piece::TooLarge);
                    start += next;
                }
                Split::Skip { next } | Split::Blank { next } => start += next,
                Split::Incomplete => break,
            }
        }
        peak_held = peak_held.max(buf.len() - start);
    }
    Splitting {
        pieces,
        peak_held,
        held: buf.len() - start,
    }
}

/// Parses one frame (without its newline) as the chat service does before it looks at
/// names, lengths or state: `Ok` with the op's name when the request is well formed,
/// `Err` with the wire error code it would be answered with otherwise. Only the
/// built-in ops are known, so a custom command's name is `unknown_op` here. For
/// fuzzing and property tests only.
pub fn parse(frame: &[u8]) -> Result<String, String> {
    let code = |fault: protocol::Fault<'_>| fault.code.as_str().to_owned();
    let head = protocol::parse_head(frame).map_err(code)?;
    let Some(&(name, kind)) = OpKind::ALL.iter().find(|(name, _)| head.op == *name) else {
        return Err(code(protocol::unknown_op(&head)));
    };
    protocol::parse_request(&head, kind)
        .map(|_| name.to_owned())
        .map_err(code)
}
