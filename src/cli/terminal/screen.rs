//! The keyboard and the screen: through a line editor on a terminal, plain lines
//! otherwise.

use std::fmt;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::client::ClientError;
use crate::terminal::TerminalError;
use crate::terminal::error::Described;
use crate::terminal::format::printable;

/// What the keyboard thread hands the main loop.
pub(super) enum Input {
    /// A line, without its newline.
    Line(String),
    /// The end of input: EOF on stdin, or Ctrl-D / Ctrl-C at the prompt.
    End,
    /// Reading failed.
    Failed(io::Error),
}

/// The main loop's end of the keyboard thread.
pub(super) struct Keyboard {
    lines: Receiver<Input>,
    /// With the line editor: asks for the next line, with this prompt. The editor
    /// reads one line per request, so each prompt shows the room current by then.
    prompts: Option<Sender<String>>,
    /// Whether the editor is reading a line now: a prompt was sent, no line came back.
    editing: bool,
}

impl Keyboard {
    /// The next input, waiting at most `timeout`.
    pub(super) fn next(&mut self, timeout: Duration) -> Option<Input> {
        let input = match self.lines.recv_timeout(timeout) {
            Ok(input) => input,
            Err(RecvTimeoutError::Timeout) => return None,
            // The thread ends only after sending End or Failed, so this is after those.
            Err(RecvTimeoutError::Disconnected) => Input::End,
        };
        self.editing = false;
        Some(input)
    }

    /// Lets the line editor read the next line. Plain stdin reads ahead by itself.
    /// Whether the line editor reads the keyboard: it reads only after [`Keyboard::ready`],
    /// so in between the terminal is free for a prompt of one's own (a password).
    pub(super) fn waits_for_prompt(&self) -> bool {
        self.prompts.is_some()
    }

    pub(super) fn ready(&mut self, prompt: String) {
        if let Some(prompts) = &self.prompts {
            self.editing = prompts.send(prompt).is_ok();
        }
    }

    /// Asks for one line outside the chat (a password, a confirmation): on a
    /// terminal, a password is read without echo as the login prompt reads it, and
    /// other answers through the line editor with `prompt`; otherwise the prompt is a
    /// notice and the answer is the next line of stdin. `Ok(None)` if input ended.
    pub(super) fn ask(
        &mut self,
        screen: &mut Screen,
        prompt: &str,
        secret: bool,
    ) -> io::Result<Option<String>> {
        match &self.prompts {
            // The editor is idle between lines, so the terminal is free to read from.
            Some(_) if secret => return rpassword::prompt_password(prompt).map(Some),
            Some(_) => self.ready(prompt.to_owned()),
            None => screen.notice(prompt.trim_end()),
        }
        let input = self.lines.recv();
        self.editing = false;
        match input {
            Ok(Input::Line(line)) => Ok(Some(line)),
            Ok(Input::Failed(e)) => Err(e),
            Ok(Input::End) | Err(_) => Ok(None),
        }
    }

    /// Before exiting on an error: the editor holds the terminal in raw mode while it
    /// reads a line and gives it back only when the line ends, so wait for that.
    pub(super) fn release(&mut self, screen: &mut Screen, why: &TerminalError) {
        if self.editing {
            screen.notice(format!("{why}; press Enter to exit"));
            let _ = self.lines.recv();
            self.editing = false;
        }
    }
}

/// Where the chat's output goes.
pub(super) struct Screen {
    sink: Sink,
    /// The first write that failed; the main loop stops on it.
    failure: Option<io::Error>,
}

/// How [`Screen`] prints.
enum Sink {
    /// Plain lines on stdout.
    Plain,
    /// Through the line editor, which prints above the prompt and redraws it.
    Editor(Box<dyn ExternalPrinter + Send>),
}

impl Screen {
    /// Prints one line, with control characters escaped whatever their source (names
    /// and topics come from the server too). A failure is kept for [`Screen::check`]
    /// rather than returned, so that everything that prints need not also handle a
    /// broken terminal.
    pub(super) fn line(&mut self, text: impl AsRef<str>) {
        if self.failure.is_some() {
            return;
        }
        let mut text = printable(text.as_ref());
        text.push('\n');
        let written = match &mut self.sink {
            Sink::Plain => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Sink::Editor(printer) => printer.print(text).map_err(readline_io),
        };
        if let Err(e) = written {
            self.failure = Some(e);
        }
    }

    /// Prints a note from the client itself (not from the server).
    pub(super) fn notice(&mut self, text: impl fmt::Display) {
        self.line(format!("-- {text}"));
    }

    /// Prints a failed request as `error: <message> (<code>)`.
    pub(super) fn error(&mut self, e: &ClientError) {
        self.line(format!("error: {}", Described(e)));
    }

    /// The first write that failed, if any.
    pub(super) fn check(&mut self) -> Result<(), TerminalError> {
        match self.failure.take() {
            Some(e) => Err(TerminalError::Output(e)),
            None => Ok(()),
        }
    }
}

/// The line editor's error as an I/O error, which is what it almost always wraps.
fn readline_io(e: ReadlineError) -> io::Error {
    match e {
        ReadlineError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The keyboard and screen through a line editor, for a terminal.
fn line_editor() -> Result<(Keyboard, Screen), ReadlineError> {
    let mut editor = DefaultEditor::new()?;
    let printer = editor.create_external_printer()?;
    let (line_tx, lines) = mpsc::channel();
    let (prompts, prompt_rx) = mpsc::channel::<String>();
    thread::Builder::new()
        .name("parlor-keyboard".into())
        .spawn(move || {
            for prompt in prompt_rx {
                let input = match editor.readline(&prompt) {
                    Ok(line) => {
                        // Up-arrow recall is a convenience: a failure to record is harmless.
                        let _ = editor.add_history_entry(line.as_str());
                        Input::Line(line)
                    }
                    Err(ReadlineError::Eof | ReadlineError::Interrupted) => Input::End,
                    Err(e) => Input::Failed(readline_io(e)),
                };
                let last = !matches!(input, Input::Line(_));
                if line_tx.send(input).is_err() || last {
                    return;
                }
            }
        })?;
    let keyboard = Keyboard {
        lines,
        prompts: Some(prompts),
        editing: false,
    };
    let screen = Screen {
        sink: Sink::Editor(Box::new(printer)),
        failure: None,
    };
    Ok((keyboard, screen))
}

/// The keyboard and the screen: through the line editor when both ends are a
/// terminal, plain lines otherwise.
pub(super) fn open_terminal(tty: bool) -> Result<(Keyboard, Screen), TerminalError> {
    // A terminal the line editor cannot drive (TERM=dumb, say) still works plain.
    if tty && let Ok(terminal) = line_editor() {
        return Ok(terminal);
    }
    plain().map_err(TerminalError::Input)
}

/// The keyboard as plain lines from stdin, and the screen as plain lines on stdout.
fn plain() -> io::Result<(Keyboard, Screen)> {
    let (line_tx, lines) = mpsc::channel();
    // Never joined: it blocks in `read` until a line or EOF comes, and the process may
    // exit meanwhile.
    thread::Builder::new()
        .name("parlor-stdin".into())
        .spawn(move || {
            for line in io::stdin().lines() {
                let input = match line {
                    Ok(line) => Input::Line(line),
                    Err(e) => Input::Failed(e),
                };
                let failed = matches!(input, Input::Failed(_));
                if line_tx.send(input).is_err() || failed {
                    return;
                }
            }
            let _ = line_tx.send(Input::End);
        })?;
    let keyboard = Keyboard {
        lines,
        prompts: None,
        editing: false,
    };
    let screen = Screen {
        sink: Sink::Plain,
        failure: None,
    };
    Ok((keyboard, screen))
}
