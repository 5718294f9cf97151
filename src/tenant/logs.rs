//! Docker's multiplexed stream framing (containers without a TTY): each
//! frame is an 8-byte header `[stream, 0, 0, 0, size (u32 big-endian)]` and
//! `size` bytes of payload; stream 1 is stdout, 2 stderr (0 stdin).

use bytes::{Buf, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

const HEADER: usize = 8;

/// Splits a multiplexed stream that arrives in arbitrary chunks into frames.
#[derive(Default)]
pub struct Demuxer {
    buf: BytesMut,
}

impl Demuxer {
    /// Adds `chunk`; returns every frame it completes, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<(Stream, Bytes)>, String> {
        self.buf.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while self.buf.len() >= HEADER {
            let stream = match self.buf[0] {
                0 => Stream::Stdin,
                1 => Stream::Stdout,
                2 => Stream::Stderr,
                other => {
                    return Err(format!(
                        "not Docker's stream framing (stream byte {other}); was the container \
                         started with a TTY?"
                    ))
                }
            };
            let size = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
            let size = size as usize;
            if self.buf.len() < HEADER + size {
                break;
            }
            self.buf.advance(HEADER);
            frames.push((stream, self.buf.split_to(size).freeze()));
        }
        Ok(frames)
    }

    /// Bytes of an unfinished frame (an error once the stream has ended).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Demultiplexes a complete stream.
pub fn demux(bytes: &[u8]) -> Result<Vec<(Stream, Bytes)>, String> {
    let mut d = Demuxer::default();
    let frames = d.push(bytes)?;
    if d.pending() != 0 {
        return Err(format!(
            "the stream ends inside a frame ({} bytes)",
            d.pending()
        ));
    }
    Ok(frames)
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn demux_splits_stdout_and_stderr() {
        let mut bytes = frame(1, b"hello\n");
        bytes.extend(frame(2, b"oops\n"));
        bytes.extend(frame(1, b""));
        let frames = demux(&bytes).unwrap();
        assert_eq!(
            frames,
            [
                (Stream::Stdout, Bytes::from_static(b"hello\n")),
                (Stream::Stderr, Bytes::from_static(b"oops\n")),
                (Stream::Stdout, Bytes::new()),
            ]
        );
    }

    #[test]
    fn demuxer_reassembles_frames_split_anywhere() {
        let mut bytes = frame(1, b"first line\n");
        bytes.extend(frame(2, &[b'x'; 300]));
        bytes.extend(frame(1, b"last\n"));
        let whole = demux(&bytes).unwrap();
        for chunk in [1, 3, 7, 8, 9, 100] {
            let mut d = Demuxer::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                got.extend(d.push(piece).unwrap());
            }
            assert_eq!(d.pending(), 0);
            assert_eq!(got, whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn demux_refuses_what_is_not_framed() {
        assert!(demux(b"plain tty output\n").is_err());
        let mut cut = frame(1, b"hello\n");
        cut.pop();
        assert!(demux(&cut).unwrap_err().contains("inside a frame"));
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }
}
