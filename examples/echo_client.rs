//! Talks to a server running `parlor serve --echo`: sends lines, prints what comes
//! back, and fails loudly if any echo differs from what was sent.
//!
//! ```text
//! cargo run --example echo_client -- hello "two words"
//! printf 'a\nb\n' | cargo run --example echo_client -- --addr 127.0.0.1:7878
//! ```

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;

/// Send lines to a parlor echo server and check that each comes back unchanged.
#[derive(FromArgs)]
struct Args {
    /// server address (default 127.0.0.1:7878)
    #[argh(option, default = "String::from(\"127.0.0.1:7878\")")]
    addr: String,

    /// seconds to wait for each echo before giving up (default 10)
    #[argh(option, default = "10")]
    timeout_secs: u64,

    /// lines to send; without any, every line of stdin is sent
    #[argh(positional)]
    lines: Vec<String>,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(&args) {
        Ok(count) => {
            eprintln!("echo_client: {count} lines echoed ok");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("echo_client: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Echoes every line; returns how many, or what went wrong.
fn run(args: &Args) -> Result<usize, String> {
    let mut stream = TcpStream::connect(&args.addr)
        .map_err(|e| format!("cannot connect to {}: {e}", args.addr))?;
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| format!("cannot set up the socket: {e}"))?;

    let mut stdout = io::stdout().lock();
    let mut count = 0;
    let mut echo_one = |line: &[u8]| -> Result<(), String> {
        count += 1;
        let mut sent = line.to_vec();
        sent.push(b'\n');
        let echoed = echo(&mut stream, &sent).map_err(|e| format!("line {count}: {e}"))?;
        stdout
            .write_all(&echoed)
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        if echoed != sent {
            return Err(format!(
                "mismatch on line {count}: sent {:?}, got back {:?} (is the server running with --echo?)",
                String::from_utf8_lossy(&sent),
                String::from_utf8_lossy(&echoed),
            ));
        }
        Ok(())
    };

    if args.lines.is_empty() {
        // Raw bytes rather than `lines()`: the point is to check the echo byte for
        // byte, so neither invalid UTF-8 nor a `\r` may be altered on the way.
        let mut stdin = io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = stdin
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            if n == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            echo_one(&line)?;
        }
    } else {
        for line in &args.lines {
            echo_one(line.as_bytes())?;
        }
    }
    Ok(count)
}

/// Sends `sent` and reads back exactly as many bytes: an echo server does not frame,
/// so the next `sent.len()` bytes are this line's echo.
fn echo(stream: &mut TcpStream, sent: &[u8]) -> Result<Vec<u8>, String> {
    stream
        .write_all(sent)
        .map_err(|e| format!("cannot send: {e}"))?;
    let mut echoed = Vec::with_capacity(sent.len());
    let got = (&mut *stream)
        .take(sent.len() as u64)
        .read_to_end(&mut echoed);
    match got {
        Ok(_) if echoed.len() == sent.len() => Ok(echoed),
        Ok(_) => Err(format!(
            "server closed the connection after echoing {} of {} bytes",
            echoed.len(),
            sent.len()
        )),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "no complete echo in time ({} of {} bytes back)",
                echoed.len(),
                sent.len()
            ))
        }
        Err(e) => Err(format!("cannot receive: {e}")),
    }
}
