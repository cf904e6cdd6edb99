//! A bill read from a file (or anything `Read`) a batch of lines at a time.

use std::collections::VecDeque;
use std::io::Read;

use super::{BillError, BillLine, BillParser, BillSummary};

/// How much of the file is read at once.
const CHUNK: usize = 64 * 1024;

pub struct BillReader<R> {
    src: R,
    parser: BillParser,
    pending: VecDeque<BillLine>,
    buf: Vec<u8>,
    eof: bool,
}

impl<R: Read> BillReader<R> {
    pub fn new(src: R) -> BillReader<R> {
        BillReader {
            src,
            parser: BillParser::new(),
            pending: VecDeque::new(),
            buf: vec![0; CHUNK],
            eof: false,
        }
    }

    /// The next `max` data lines at most; empty once the file is read.
    pub fn next_lines(&mut self, max: usize) -> Result<Vec<BillLine>, BillError> {
        while self.pending.len() < max && !self.eof {
            let n = self
                .src
                .read(&mut self.buf)
                .map_err(|e| BillError::Io(e.to_string()))?;
            if n == 0 {
                self.eof = true;
            } else {
                self.parser.feed(&self.buf[..n])?;
                self.pending.extend(self.parser.take_lines());
            }
        }
        let take = max.min(self.pending.len());
        Ok(self.pending.drain(..take).collect())
    }

    /// The summary, once every line has been taken and it agrees with them.
    pub fn finish(mut self) -> Result<BillSummary, BillError> {
        while !self.next_lines(CHUNK)?.is_empty() {}
        self.parser.finish()
    }
}
