//! Reads a webhook body into memory for verification: whole, never past the size limit,
//! and holding no more memory than what arrived. Knows nothing about signatures.
//!
//! The signature covers the raw bytes, so a webhook body must be held whole before it
//! can be judged; an attacker can make the gateway hold many at once. Three things keep
//! that bounded: nothing is reserved from `Content-Length` (a claim, not bytes), the
//! bytes are copied out of the connection's read buffers into blocks as they arrive (so
//! a body trickled in tiny frames costs its bytes, not a frame header per byte nor the
//! connection buffers the frames pointed into), and the count stops at the limit.

use std::borrow::Cow;

use bytes::Buf;
use http_body_util::BodyExt;

/// The first block's capacity: a typical Stripe event (2–8 KB) fits in one or two.
const FIRST_BLOCK: usize = 8 * 1024;
/// The largest block. Blocks double up to it, so what is reserved beyond the bytes that
/// arrived is always less than one block.
const MAX_BLOCK: usize = 64 * 1024;

/// A body as a list of filled blocks, in order.
#[derive(Debug, Default)]
pub(crate) struct BodyBlocks {
    blocks: Vec<Vec<u8>>,
    len: usize,
}

impl BodyBlocks {
    /// The bytes in order, in pieces (for an incremental MAC).
    pub(crate) fn pieces(&self) -> &[Vec<u8>] {
        &self.blocks
    }

    /// The whole body in one slice: borrowed when it fits in one block (the usual
    /// case), else copied once into an allocation of exactly its length.
    pub(crate) fn contiguous(&self) -> Cow<'_, [u8]> {
        match self.blocks.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one),
            many => {
                let mut whole = Vec::with_capacity(self.len);
                for block in many {
                    whole.extend_from_slice(block);
                }
                Cow::Owned(whole)
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`, filling the last block before starting a new one.
    fn extend(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.blocks.last().map_or(0, |b| b.capacity() - b.len());
            if room == 0 {
                let next = self
                    .blocks
                    .last()
                    .map_or(FIRST_BLOCK, |b| (b.capacity() * 2).min(MAX_BLOCK));
                self.blocks.push(Vec::with_capacity(next));
                continue;
            }
            let (now, rest) = data.split_at(room.min(data.len()));
            if let Some(block) = self.blocks.last_mut() {
                block.extend_from_slice(now);
            }
            self.len += now.len();
            data = rest;
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// More than the limit arrived (a chunked body, or one longer than declared).
    TooLarge,
    /// The client's framing broke or the connection closed mid-body.
    Broken,
}

/// Reads `body` to its end, refusing it once it passes `max` bytes. Trailers are
/// ignored. Dropping the future (a timeout) frees everything read so far.
pub(crate) async fn read<B>(body: B, max: u64) -> Result<BodyBlocks, ReadError>
where
    B: http_body::Body,
{
    let mut body = std::pin::pin!(body);
    let mut blocks = BodyBlocks::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Broken)?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let arrived = (blocks.len as u64).saturating_add(data.remaining() as u64);
        if arrived > max {
            return Err(ReadError::TooLarge);
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            blocks.extend(chunk);
            data.advance(n);
        }
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Full, StreamBody};

    fn frames(pieces: Vec<Vec<u8>>) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> {
        let stream = futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(p)))),
        );
        StreamBody::new(stream)
    }

    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order_whatever_the_framing() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for sizes in [vec![200_000], vec![1; 3], vec![7, 8191, 1, 65_536, 100_000]] {
            let mut pieces = Vec::new();
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at >= payload.len() {
                    break;
                }
                let end = (at + size).min(payload.len());
                pieces.push(payload[at..end].to_vec());
                at = end;
            }
            let blocks = read(frames(pieces), 1 << 20)
                .await
                .expect("within the limit");
            assert_eq!(blocks.len(), payload.len());
            assert_eq!(&*blocks.contiguous(), &payload[..]);
            assert_eq!(blocks.pieces().concat(), payload);
        }
    }

    #[tokio::test]
    async fn reserves_less_than_one_block_beyond_what_arrived() {
        for len in [0, 1, 5_000, FIRST_BLOCK, FIRST_BLOCK + 1, 300_000, 2 << 20] {
            // One byte per frame is the worst framing a client can choose.
            let per_frame = if len < 10_000 { 1 } else { 4096 };
            let pieces = vec![0u8; len]
                .chunks(per_frame)
                .map(<[u8]>::to_vec)
                .collect();
            let blocks = read(frames(pieces), 4 << 20)
                .await
                .expect("within the limit");
            let reserved: usize = blocks.pieces().iter().map(Vec::capacity).sum();
            assert!(
                reserved >= len && reserved < len + MAX_BLOCK,
                "{len}: {reserved}"
            );
            assert!(blocks.pieces().iter().all(|b| b.capacity() <= MAX_BLOCK));
        }
    }

    #[tokio::test]
    async fn one_block_is_borrowed_whole() {
        let blocks = read(Full::new(Bytes::from_static(b"{}")), 10)
            .await
            .unwrap();
        assert!(matches!(blocks.contiguous(), Cow::Borrowed(b"{}")));
        let empty = read(Full::new(Bytes::new()), 10).await.unwrap();
        assert_eq!(&*empty.contiguous(), b"");
    }

    #[tokio::test]
    async fn the_limit_counts_bytes_not_frames() {
        assert_eq!(
            read(Full::new(Bytes::from(vec![0; 10])), 10)
                .await
                .unwrap()
                .len(),
            10
        );
        assert_eq!(
            read(Full::new(Bytes::from(vec![0; 11])), 10)
                .await
                .unwrap_err(),
            ReadError::TooLarge
        );
        let pieces = vec![vec![0; 6], vec![0; 5]];
        assert_eq!(
            read(frames(pieces), 10).await.unwrap_err(),
            ReadError::TooLarge
        );
    }

    #[tokio::test]
    async fn a_broken_body_is_broken() {
        let stream = futures_util::stream::iter(vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("reset")),
        ]);
        assert_eq!(
            read(StreamBody::new(stream), 10).await.unwrap_err(),
            ReadError::Broken
        );
    }
}
