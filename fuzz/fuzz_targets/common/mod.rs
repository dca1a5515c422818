//! Shared by the fuzz targets: a chunking plan taken from the input, and a reader that hands
//! out a body in those chunks (a pipe or socket splits a stream anywhere).

#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::task::Context;
use std::task::Poll;

use tokio::io::AsyncRead;
use tokio::io::ReadBuf;

/// Splits `data` into (chunk sizes, body): the first byte says how many size bytes follow
/// (0-15); each size byte gives a chunk of 1-64 bytes, cycled. No size bytes: 1-byte chunks.
pub fn plan(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (vec![1], data);
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, body) = rest.split_at(n);
    let sizes = if sizes.is_empty() {
        vec![1]
    } else {
        sizes.iter().map(|s| usize::from(s % 64) + 1).collect()
    };
    (sizes, body)
}

/// `body` cut into consecutive chunks of the cycled `sizes`.
pub fn chunks<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(sizes[i % sizes.len()].min(rest.len()));
        out.push(chunk);
        rest = tail;
        i += 1;
    }
    out
}

/// An `AsyncRead` that returns `body` in chunks of the cycled `sizes`, never more per read.
pub struct ChunkedReader {
    body: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl ChunkedReader {
    pub fn new(body: &[u8], sizes: &[usize]) -> Self {
        Self {
            body: body.to_vec(),
            pos: 0,
            sizes: if sizes.is_empty() {
                vec![usize::MAX]
            } else {
                sizes.to_vec()
            },
            turn: 0,
        }
    }

    /// The whole body in one read (as far as the caller's buffer allows).
    pub fn whole(body: &[u8]) -> Self {
        Self::new(body, &[usize::MAX])
    }
}

impl AsyncRead for ChunkedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = this.body.len() - this.pos;
        let size = this.sizes[this.turn % this.sizes.len()]
            .min(left)
            .min(buf.remaining());
        buf.put_slice(&this.body[this.pos..this.pos + size]);
        this.pos += size;
        this.turn += 1;
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

/// Runs `fut` to completion on this thread's runtime (no I/O or timer driver: none is needed).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(fut))
}
