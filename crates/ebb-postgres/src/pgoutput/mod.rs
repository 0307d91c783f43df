//! The pgoutput logical decoding protocol (versions 1 to 4): message types, a zero-copy
//! [`Decoder`] and an encoder for tests.
//!
//! The decoder never panics on bytes from the network: every read is bounds-checked and a
//! malformed message becomes a [`DecodeError`] naming the message type and byte offset.
//! Row data is not copied: an [`Insert`]'s tuple is a slice of the received [`bytes::Bytes`].

mod decode;
mod encode;
mod error;
mod message;
#[cfg(test)]
mod tests;

pub use decode::Decoder;
pub use error::{DecodeError, DecodeErrorKind, MessageTag};
pub use message::*;
