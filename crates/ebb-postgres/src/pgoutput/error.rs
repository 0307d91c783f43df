use std::fmt;

use crate::retry::RetryClass;

/// A pgoutput message could not be decoded.
///
/// Carries the message type and the byte offset inside the message where decoding stopped,
/// so a corrupt or unexpected message can be located in a captured stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pgoutput {message} message, byte {offset}: {kind}")]
pub struct DecodeError {
    /// The message's type byte (`b'I'` for Insert …), or 0 for an empty message.
    pub message: MessageTag,
    /// Offset inside the message at which decoding failed.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// A stream that does not decode will not decode on a retry either.
    pub fn retry_class(&self) -> RetryClass {
        RetryClass::Fatal
    }
}

/// The type byte of a pgoutput message, displayed with its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTag(pub u8);

impl MessageTag {
    /// The protocol's name for this message type.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            b'B' => "Begin",
            b'C' => "Commit",
            b'O' => "Origin",
            b'R' => "Relation",
            b'Y' => "Type",
            b'I' => "Insert",
            b'U' => "Update",
            b'D' => "Delete",
            b'T' => "Truncate",
            b'M' => "Message",
            b'S' => "Stream Start",
            b'E' => "Stream Stop",
            b'c' => "Stream Commit",
            b'A' => "Stream Abort",
            b'b' => "Begin Prepare",
            b'P' => "Prepare",
            b'K' => "Commit Prepared",
            b'r' => "Rollback Prepared",
            b'p' => "Stream Prepare",
            _ => return None,
        })
    }
}

impl fmt::Display for MessageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ('{}')", char::from(self.0)),
            None if self.0.is_ascii_graphic() => write!(f, "unknown ('{}')", char::from(self.0)),
            None => write!(f, "unknown (0x{:02x})", self.0),
        }
    }
}

/// The ways a pgoutput message can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The message is empty: no type byte.
    #[error("empty message")]
    Empty,
    /// The type byte is not one pgoutput sends.
    #[error("unknown message type")]
    UnknownMessageType,
    /// The message ends before a field does.
    #[error("message ends inside {field}: {needed} more bytes needed, {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the message.
        available: usize,
    },
    /// A string field has no NUL terminator.
    #[error("{field} has no NUL terminator")]
    Unterminated {
        /// The field being read.
        field: &'static str,
    },
    /// A string field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// A field holds a value the protocol does not allow.
    #[error("{field} has the invalid value {value}")]
    InvalidValue {
        /// The field being read.
        field: &'static str,
        /// The value found.
        value: i64,
    },
    /// Bytes are left after the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// A message type that the negotiated protocol version does not have.
    #[error(
        "this message type needs pgoutput protocol version {required}, the session uses {negotiated}"
    )]
    ProtocolVersion {
        /// The lowest version that has the message.
        required: u32,
        /// The version the decoder was created for.
        negotiated: u32,
    },
    /// A Stream Start inside a streamed block, or a Stream Stop outside one.
    #[error("{0}")]
    StreamState(&'static str),
}
