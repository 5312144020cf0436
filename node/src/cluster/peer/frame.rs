//! Peer frames: the bytes of one request or response on a peer stream (pure; no IO).
//!
//! One request per QUIC bidirectional stream, as on the client protocol: the dialer writes a
//! request frame and finishes its side; the node answers with one response frame. All
//! integers are big-endian.
//!
//! ```text
//! request:  version u8 (0) | kind u16       | request_id u64 | body_bytes u32 | body
//! response: version u8 (0) | request_id u64 | status u8      | body_bytes u32 | body
//! ```
//!
//! A response's status is [`PeerStatus`]: `Ok` carries the handler's bytes, every other
//! status carries a UTF-8 message. Decoding never trusts a length: a frame whose body length
//! disagrees with its bytes, or that exceeds the limit, is refused with a [`FrameError`].

use bytes::{BufMut, Bytes, BytesMut};

/// Version byte of both frames.
pub const FRAME_VERSION: u8 = 0;
/// Bytes before a request's body.
pub const REQUEST_HEADER_BYTES: usize = 1 + 2 + 8 + 4;
/// Bytes before a response's body.
pub const RESPONSE_HEADER_BYTES: usize = 1 + 8 + 1 + 4;

/// What a peer request asks for; each kind has at most one handler on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum PeerRequestKind {
    /// Raft RequestVote (controller quorum).
    RaftVote = 1,
    /// Raft AppendEntries (controller quorum).
    RaftAppendEntries = 2,
    /// Raft InstallSnapshot (controller quorum).
    RaftInstallSnapshot = 3,
    /// A node registers with the controller and gets its node epoch.
    NodeRegistration = 4,
    /// A node's heartbeat to the controller.
    NodeHeartbeat = 5,
    /// A follower fetches partition data from the leader.
    ReplicaFetch = 6,
    /// A node forwards a topic admin request (create, delete, configs, partitions) to the
    /// active controller.
    ControllerAdmin = 7,
    /// A partition leader asks the active controller to change the partition's ISR.
    AlterPartition = 8,
    /// A replica tells the active controller its copy of a partition is damaged.
    ReplicaDamaged = 9,
}

impl PeerRequestKind {
    /// Every kind, in wire order.
    pub const ALL: [Self; 9] = [
        Self::RaftVote,
        Self::RaftAppendEntries,
        Self::RaftInstallSnapshot,
        Self::NodeRegistration,
        Self::NodeHeartbeat,
        Self::ReplicaFetch,
        Self::ControllerAdmin,
        Self::AlterPartition,
        Self::ReplicaDamaged,
    ];

    /// The kind with wire number `number`.
    pub fn from_wire(number: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u16 == number)
    }
}

/// How a peer request ended, as the response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PeerStatus {
    /// The handler answered; the body is its answer.
    Ok = 0,
    /// The node has no handler for this kind (not registered yet, or an unknown number).
    UnknownKind = 1,
    /// The request frame did not decode.
    InvalidFrame = 2,
    /// The request frame exceeded `cluster.peer_frame_bytes_max`.
    FrameTooLarge = 3,
    /// The handler refused or failed; the message says why.
    HandlerFailed = 4,
}

impl PeerStatus {
    fn from_wire(number: u8) -> Option<Self> {
        [
            Self::Ok,
            Self::UnknownKind,
            Self::InvalidFrame,
            Self::FrameTooLarge,
            Self::HandlerFailed,
        ]
        .into_iter()
        .find(|status| *status as u8 == number)
    }
}

/// A decoded request frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFrame {
    /// What it asks for.
    pub kind: PeerRequestKind,
    /// Chosen by the dialer; the response repeats it.
    pub request_id: u64,
    /// The kind's own encoding.
    pub body: Bytes,
}

/// A decoded response frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The request's id.
    pub request_id: u64,
    /// How it ended.
    pub status: PeerStatus,
    /// The answer (`Ok`) or a UTF-8 message (any other status).
    pub body: Bytes,
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than a header.
    #[error("frame of {bytes} bytes is shorter than its header ({header} bytes)")]
    Truncated {
        /// Bytes received.
        bytes: usize,
        /// Bytes a header takes.
        header: usize,
    },
    /// A version this node does not speak.
    #[error("unknown peer frame version {0}")]
    Version(u8),
    /// A request kind this node does not know (a newer peer); the request id is known.
    #[error("unknown peer request kind {kind}")]
    UnknownKind {
        /// The wire number.
        kind: u16,
        /// The request's id, to answer it.
        request_id: u64,
    },
    /// A response status this node does not know.
    #[error("unknown peer response status {0}")]
    UnknownStatus(u8),
    /// The body length field disagrees with the bytes that follow.
    #[error("body length field says {declared} bytes but {actual} follow")]
    Length {
        /// What the field says.
        declared: u64,
        /// What follows the header.
        actual: usize,
    },
    /// The frame is above the limit.
    #[error("frame of {bytes} bytes exceeds cluster.peer_frame_bytes_max ({max} bytes)")]
    TooLarge {
        /// Its size (or at least this many bytes).
        bytes: usize,
        /// The limit.
        max: u32,
    },
}

/// Encodes a request frame.
pub fn encode_request(kind: PeerRequestKind, request_id: u64, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(REQUEST_HEADER_BYTES + body.len());
    frame.put_u8(FRAME_VERSION);
    frame.put_u16(kind as u16);
    frame.put_u64(request_id);
    frame.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    frame.put_slice(body);
    frame.freeze()
}

/// Encodes a response frame.
pub fn encode_response(request_id: u64, status: PeerStatus, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(RESPONSE_HEADER_BYTES + body.len());
    frame.put_u8(FRAME_VERSION);
    frame.put_u64(request_id);
    frame.put_u8(status as u8);
    frame.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    frame.put_slice(body);
    frame.freeze()
}

/// Decodes a request frame of at most `frame_bytes_max` bytes.
pub fn decode_request(frame: Bytes, frame_bytes_max: u32) -> Result<RequestFrame, FrameError> {
    check_size(&frame, REQUEST_HEADER_BYTES, frame_bytes_max)?;
    let version = frame[0];
    if version != FRAME_VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = u16::from_be_bytes([frame[1], frame[2]]);
    let request_id = u64::from_be_bytes(array(&frame[3..11]));
    let body = body(&frame, REQUEST_HEADER_BYTES, array(&frame[11..15]))?;
    let kind =
        PeerRequestKind::from_wire(kind).ok_or(FrameError::UnknownKind { kind, request_id })?;
    Ok(RequestFrame {
        kind,
        request_id,
        body,
    })
}

/// Decodes a response frame of at most `frame_bytes_max` bytes.
pub fn decode_response(frame: Bytes, frame_bytes_max: u32) -> Result<ResponseFrame, FrameError> {
    check_size(&frame, RESPONSE_HEADER_BYTES, frame_bytes_max)?;
    let version = frame[0];
    if version != FRAME_VERSION {
        return Err(FrameError::Version(version));
    }
    let request_id = u64::from_be_bytes(array(&frame[1..9]));
    let status = PeerStatus::from_wire(frame[9]).ok_or(FrameError::UnknownStatus(frame[9]))?;
    let body = body(&frame, RESPONSE_HEADER_BYTES, array(&frame[10..14]))?;
    Ok(ResponseFrame {
        request_id,
        status,
        body,
    })
}

/// Refuses a frame shorter than its header or above the limit; after it, the header's
/// bytes may be indexed.
fn check_size(frame: &[u8], header: usize, frame_bytes_max: u32) -> Result<(), FrameError> {
    if frame.len() < header {
        return Err(FrameError::Truncated {
            bytes: frame.len(),
            header,
        });
    }
    if frame.len() > frame_bytes_max as usize {
        return Err(FrameError::TooLarge {
            bytes: frame.len(),
            max: frame_bytes_max,
        });
    }
    Ok(())
}

fn body(frame: &Bytes, header: usize, length: [u8; 4]) -> Result<Bytes, FrameError> {
    let declared = u32::from_be_bytes(length);
    let actual = frame.len() - header;
    if u64::from(declared) != actual as u64 {
        return Err(FrameError::Length {
            declared: declared.into(),
            actual,
        });
    }
    Ok(frame.slice(header..))
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes
        .try_into()
        .expect("callers pass a slice of exactly N bytes inside a checked header")
}
