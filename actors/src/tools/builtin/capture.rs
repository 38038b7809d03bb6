//! Bounded capture of a child's output: the first [`HEAD`] bytes and the last [`TAIL`] bytes
//! are kept, what lies between is counted and dropped, and the pipe is always drained so the
//! child never blocks on a full pipe. A command that prints gigabytes costs a few MiB.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes kept from the start.
pub const HEAD: usize = 4 * 1024 * 1024;
/// Bytes kept from the end.
pub const TAIL: usize = 1024 * 1024;
/// Longest line streamed as one chunk; longer lines are streamed in pieces.
const MAX_LINE: usize = 64 * 1024;

/// Output kept so far.
#[derive(Debug, Default)]
pub struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
}

impl Capture {
    /// Appends bytes.
    pub fn push(&mut self, mut bytes: &[u8]) {
        let room = HEAD.saturating_sub(self.head.len());
        let take = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if bytes.is_empty() {
            return;
        }
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(TAIL);
        if excess > 0 {
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Whether nothing has been dropped yet (everything is still being kept).
    pub fn complete(&self) -> bool {
        self.tail.is_empty()
    }

    /// The kept text, with a marker where bytes were dropped.
    pub fn into_text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!(
                "\n… [{} bytes of output dropped] …\n",
                self.dropped
            ));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

/// Reads `pipe` to its end, calling `line` for each line (or piece of an overlong line) while
/// the head is still being kept, and returns the capture.
pub async fn drain_lines(
    mut pipe: impl AsyncRead + Unpin,
    mut line: impl FnMut(String),
) -> Capture {
    let mut capture = Capture::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        capture.push(chunk);
        if !capture.complete() {
            continue; // past the head: stop streaming, keep draining
        }
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            pending.extend_from_slice(piece);
            if pending.ends_with(b"\n") || pending.len() >= MAX_LINE {
                if pending.ends_with(b"\n") {
                    pending.pop();
                }
                line(String::from_utf8_lossy(&pending).into_owned());
                pending.clear();
            }
        }
    }
    if !pending.is_empty() && capture.complete() {
        line(String::from_utf8_lossy(&pending).into_owned());
    }
    capture
}

/// Reads `pipe` to its end into a capture.
pub async fn drain(pipe: impl AsyncRead + Unpin) -> Capture {
    drain_lines(pipe, |_| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_stream_and_huge_output_keeps_head_and_tail() {
        let mut lines = Vec::new();
        let small = drain_lines(&b"one\ntwo\nthree"[..], |l| lines.push(l)).await;
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(small.into_text(), "one\ntwo\nthree");

        let mut big = vec![b'a'; HEAD];
        big.extend(vec![b'b'; 3 * TAIL]);
        big.extend(b"END");
        let mut streamed = 0;
        let kept = drain_lines(&big[..], |l| streamed += l.len()).await;
        assert!(streamed <= HEAD, "streaming stops past the head");
        let text = kept.into_text();
        assert!(text.starts_with("aaaa"));
        assert!(text.ends_with("bbbEND"));
        assert!(text.contains(&format!("[{} bytes of output dropped]", 2 * TAIL + 3)));
        assert!(text.len() < HEAD + TAIL + 100);
    }
}
