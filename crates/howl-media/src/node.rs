//! The protocol between the control plane and a media node (`howl node`), beside (not inside)
//! the worker protocol of [`crate::protocol`].
//!
//! # Transport
//!
//! The node dials out (it may sit behind NAT) to the control plane's node endpoint over TLS,
//! both sides authenticated (see docs/nodes.md). It opens two kinds of connection:
//!
//! - **one control connection**: [`NodeMessage::JoinControl`] first, then heartbeats both ways,
//!   the control plane's orders to start and kill workers, and the node's reports of workers
//!   that ended;
//! - **one connection per worker**: [`NodeMessage::JoinWorker`] first, then the bytes of the
//!   worker protocol, unchanged, end to end between the control plane's supervisor and the
//!   worker process (the node only bridges them). A slow or wedged worker therefore fills only
//!   its own TCP window: no head-of-line blocking between workers.
//!
//! Frames are `len: u32 BE` + `type: u8` + payload, `len` counting the type byte and the
//! payload, at least 1 and at most [`MAX_NODE_FRAME`] (control messages are small; the bulk
//! media never travels in these frames). Strings are `u16 BE length` + UTF-8, lists
//! `u16 BE count` + items, integers big-endian.
//!
//! # Conversation
//!
//! ```text
//! node (control connection)                    control plane
//!   JoinControl{version, name, token, labels, capacity} ->
//!                                         <-  Welcome{name, heartbeat_ms} | Refused{reason}
//!   Heartbeat (every heartbeat_ms)        <-> Heartbeat (every heartbeat_ms)
//!                                         <-  SpawnWorker{worker, args}
//!   (dials a worker connection, below)
//!                                         <-  KillWorker{worker}
//!   WorkerExited{worker, detail}          ->
//!
//! node (worker connection)
//!   JoinWorker{version, worker, pid}      ->  (then the worker protocol, both ways)
//! ```
//!
//! [`NodeDecoder`] is sans-IO and never panics on any input (property-tested): a framing error
//! (length 0 or over the maximum) leaves it failed; a malformed message is an error for that
//! frame only.

/// Version of this protocol, sent first on every connection.
pub const NODE_PROTOCOL_VERSION: u16 = 1;

/// Largest frame on a node connection (type byte + payload). Control messages are a few
/// hundred bytes; 64 KiB leaves room for many labels while bounding what a peer can make the
/// decoder buffer.
pub const MAX_NODE_FRAME: usize = 64 * 1024;

/// Most labels (and encoder entries) one node reports.
pub const MAX_LIST: usize = 256;

/// What a node offers. Zero means "no limit" for the limits, "unknown" for the facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Producer slots (`--max-producers`; 0: unlimited).
    pub max_producers: u32,
    /// Video encoder sessions at once (0: unlimited).
    pub max_encoder_sessions: u32,
    /// CPU cores the node can use.
    pub cores: u32,
    /// GPUs found (render nodes, NVIDIA devices).
    pub gpus: u32,
    /// Codecs its workers encode (`h264`, `hevc`, `av1`), with the encoder sessions each
    /// allows (0: unlimited).
    pub encoders: Vec<(String, u32)>,
}

/// One message on a node connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMessage {
    /// First frame of the control connection. `token` is empty when the node has joined
    /// before (its certificate is pinned).
    JoinControl {
        version: u16,
        name: String,
        token: String,
        labels: Vec<(String, String)>,
        capacity: Capacity,
    },
    /// First frame of a worker connection: the worker the control plane asked for, and its
    /// process id on the node.
    JoinWorker { version: u16, worker: u64, pid: u32 },
    /// The control plane accepted the node under `name`.
    Welcome { name: String, heartbeat_ms: u32 },
    /// The control plane refused the node; it closes the connection after this.
    Refused { reason: String },
    /// Liveness, both ways.
    Heartbeat,
    /// Start a worker (the node spawns `howl-worker` with `args` added) and dial its
    /// connection.
    SpawnWorker { worker: u64, args: Vec<String> },
    /// Kill a worker now (its connection closing kills it too).
    KillWorker { worker: u64 },
    /// A worker the node ran has ended.
    WorkerExited { worker: u64, detail: String },
}

impl NodeMessage {
    fn kind(&self) -> u8 {
        match self {
            NodeMessage::JoinControl { .. } => 1,
            NodeMessage::JoinWorker { .. } => 2,
            NodeMessage::Welcome { .. } => 3,
            NodeMessage::Refused { .. } => 4,
            NodeMessage::Heartbeat => 5,
            NodeMessage::SpawnWorker { .. } => 6,
            NodeMessage::KillWorker { .. } => 7,
            NodeMessage::WorkerExited { .. } => 8,
        }
    }

    /// Its name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            NodeMessage::JoinControl { .. } => "JoinControl",
            NodeMessage::JoinWorker { .. } => "JoinWorker",
            NodeMessage::Welcome { .. } => "Welcome",
            NodeMessage::Refused { .. } => "Refused",
            NodeMessage::Heartbeat => "Heartbeat",
            NodeMessage::SpawnWorker { .. } => "SpawnWorker",
            NodeMessage::KillWorker { .. } => "KillWorker",
            NodeMessage::WorkerExited { .. } => "WorkerExited",
        }
    }
}

/// What went wrong on a node connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeProtocolError {
    /// The length prefix is 0 or above [`MAX_NODE_FRAME`]: the stream cannot be framed.
    #[error("frame length {0} outside 1..={MAX_NODE_FRAME}")]
    Framing(usize),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A message to encode does not fit the limits (a string over 64 KiB, a list too long).
    #[error("message too large to encode: {0}")]
    TooLarge(&'static str),
}

fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), NodeProtocolError> {
    let n = u16::try_from(s.len()).map_err(|_| NodeProtocolError::TooLarge(what))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_count(out: &mut Vec<u8>, n: usize, what: &'static str) -> Result<(), NodeProtocolError> {
    if n > MAX_LIST {
        return Err(NodeProtocolError::TooLarge(what));
    }
    // Cannot truncate: n <= MAX_LIST < 2^16.
    out.extend_from_slice(&(n as u16).to_be_bytes());
    Ok(())
}

/// Appends one framed message to `out`.
pub fn encode_node(msg: &NodeMessage, out: &mut Vec<u8>) -> Result<(), NodeProtocolError> {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, msg.kind()]);
    let r = encode_payload(msg, out);
    if let Err(e) = r {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - 4;
    if len > MAX_NODE_FRAME {
        out.truncate(start);
        return Err(NodeProtocolError::TooLarge("frame"));
    }
    // Cannot truncate: len <= MAX_NODE_FRAME < 2^32.
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn encode_payload(msg: &NodeMessage, out: &mut Vec<u8>) -> Result<(), NodeProtocolError> {
    match msg {
        NodeMessage::JoinControl {
            version,
            name,
            token,
            labels,
            capacity,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            put_str(out, name, "name")?;
            put_str(out, token, "token")?;
            put_count(out, labels.len(), "labels")?;
            for (k, v) in labels {
                put_str(out, k, "label")?;
                put_str(out, v, "label")?;
            }
            for n in [
                capacity.max_producers,
                capacity.max_encoder_sessions,
                capacity.cores,
                capacity.gpus,
            ] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            put_count(out, capacity.encoders.len(), "encoders")?;
            for (codec, sessions) in &capacity.encoders {
                put_str(out, codec, "codec")?;
                out.extend_from_slice(&sessions.to_be_bytes());
            }
        }
        NodeMessage::JoinWorker {
            version,
            worker,
            pid,
        } => {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&worker.to_be_bytes());
            out.extend_from_slice(&pid.to_be_bytes());
        }
        NodeMessage::Welcome { name, heartbeat_ms } => {
            put_str(out, name, "name")?;
            out.extend_from_slice(&heartbeat_ms.to_be_bytes());
        }
        NodeMessage::Refused { reason } => put_str(out, reason, "reason")?,
        NodeMessage::Heartbeat => {}
        NodeMessage::SpawnWorker { worker, args } => {
            out.extend_from_slice(&worker.to_be_bytes());
            put_count(out, args.len(), "args")?;
            for a in args {
                put_str(out, a, "arg")?;
            }
        }
        NodeMessage::KillWorker { worker } => out.extend_from_slice(&worker.to_be_bytes()),
        NodeMessage::WorkerExited { worker, detail } => {
            out.extend_from_slice(&worker.to_be_bytes());
            put_str(out, detail, "detail")?;
        }
    }
    Ok(())
}

/// A cursor over one frame's payload; every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NodeProtocolError> {
        if self.buf.len() < n {
            return Err(NodeProtocolError::Malformed(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, NodeProtocolError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, NodeProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, NodeProtocolError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn string(&mut self) -> Result<String, NodeProtocolError> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| NodeProtocolError::Malformed(self.what))
    }
    fn count(&mut self) -> Result<usize, NodeProtocolError> {
        let n = usize::from(self.u16()?);
        if n > MAX_LIST {
            return Err(NodeProtocolError::Malformed(self.what));
        }
        Ok(n)
    }
    fn end(self) -> Result<(), NodeProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(NodeProtocolError::Malformed(self.what))
        }
    }
}

fn decode_payload(kind: u8, payload: &[u8]) -> Result<NodeMessage, NodeProtocolError> {
    let what = match kind {
        1 => "JoinControl",
        2 => "JoinWorker",
        3 => "Welcome",
        4 => "Refused",
        5 => "Heartbeat",
        6 => "SpawnWorker",
        7 => "KillWorker",
        8 => "WorkerExited",
        other => return Err(NodeProtocolError::UnknownType(other)),
    };
    let mut r = Reader { buf: payload, what };
    let msg = match kind {
        1 => {
            let version = r.u16()?;
            let name = r.string()?;
            let token = r.string()?;
            let n = r.count()?;
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                labels.push((r.string()?, r.string()?));
            }
            let max_producers = r.u32()?;
            let max_encoder_sessions = r.u32()?;
            let cores = r.u32()?;
            let gpus = r.u32()?;
            let n = r.count()?;
            let mut encoders = Vec::with_capacity(n);
            for _ in 0..n {
                encoders.push((r.string()?, r.u32()?));
            }
            NodeMessage::JoinControl {
                version,
                name,
                token,
                labels,
                capacity: Capacity {
                    max_producers,
                    max_encoder_sessions,
                    cores,
                    gpus,
                    encoders,
                },
            }
        }
        2 => NodeMessage::JoinWorker {
            version: r.u16()?,
            worker: r.u64()?,
            pid: r.u32()?,
        },
        3 => NodeMessage::Welcome {
            name: r.string()?,
            heartbeat_ms: r.u32()?,
        },
        4 => NodeMessage::Refused {
            reason: r.string()?,
        },
        5 => NodeMessage::Heartbeat,
        6 => {
            let worker = r.u64()?;
            let n = r.count()?;
            let mut args = Vec::with_capacity(n);
            for _ in 0..n {
                args.push(r.string()?);
            }
            NodeMessage::SpawnWorker { worker, args }
        }
        7 => NodeMessage::KillWorker { worker: r.u64()? },
        _ => NodeMessage::WorkerExited {
            worker: r.u64()?,
            detail: r.string()?,
        },
    };
    r.end()?;
    Ok(msg)
}

/// Incremental decoder of node frames: `push` bytes, then `next` until `Ok(None)`.
#[derive(Debug, Default)]
pub struct NodeDecoder {
    buf: Vec<u8>,
    failed: bool,
}

impl NodeDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes received but not yet part of a returned message. On a worker connection, what
    /// follows `JoinWorker` already belongs to the worker protocol.
    pub fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. (Not an Iterator:
    /// it distinguishes "need more bytes" from errors, like the worker protocol's decoder.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<NodeMessage>, NodeProtocolError> {
        if self.failed {
            return Err(NodeProtocolError::Framing(0));
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_NODE_FRAME {
            self.failed = true;
            self.buf = Vec::new();
            return Err(NodeProtocolError::Framing(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = self.buf.drain(..4 + len).collect();
        decode_payload(frame[4], &frame[5..]).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<NodeMessage> {
        vec![
            NodeMessage::JoinControl {
                version: NODE_PROTOCOL_VERSION,
                name: "gpu-1".into(),
                token: "hn1.abc.def".into(),
                labels: vec![("gpu".into(), "nvidia".into()), ("zone".into(), "b".into())],
                capacity: Capacity {
                    max_producers: 2,
                    max_encoder_sessions: 8,
                    cores: 16,
                    gpus: 1,
                    encoders: vec![("h264".into(), 8), ("hevc".into(), 8)],
                },
            },
            NodeMessage::JoinWorker {
                version: 1,
                worker: 7,
                pid: 4242,
            },
            NodeMessage::Welcome {
                name: "gpu-1".into(),
                heartbeat_ms: 1000,
            },
            NodeMessage::Refused {
                reason: "token expired".into(),
            },
            NodeMessage::Heartbeat,
            NodeMessage::SpawnWorker {
                worker: 9,
                args: vec!["--desktop-isolation".into(), "cookie".into()],
            },
            NodeMessage::KillWorker { worker: 9 },
            NodeMessage::WorkerExited {
                worker: 9,
                detail: "exited: 0".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_even_split_bytewise() {
        let mut out = Vec::new();
        for m in samples() {
            encode_node(&m, &mut out).expect("fits");
        }
        let mut dec = NodeDecoder::new();
        let mut got = Vec::new();
        for b in &out {
            dec.push(std::slice::from_ref(b));
            while let Some(m) = dec.next().expect("valid") {
                got.push(m);
            }
        }
        assert_eq!(got, samples());
        assert!(dec.take_rest().is_empty());
    }

    #[test]
    fn bytes_after_join_worker_are_left_for_the_worker_protocol() {
        let mut out = Vec::new();
        encode_node(
            &NodeMessage::JoinWorker {
                version: 1,
                worker: 1,
                pid: 2,
            },
            &mut out,
        )
        .expect("fits");
        out.extend_from_slice(b"worker bytes");
        let mut dec = NodeDecoder::new();
        dec.push(&out);
        assert!(matches!(
            dec.next(),
            Ok(Some(NodeMessage::JoinWorker { worker: 1, .. }))
        ));
        assert_eq!(dec.take_rest(), b"worker bytes");
    }

    #[test]
    fn oversized_and_zero_lengths_fail_the_stream() {
        let mut dec = NodeDecoder::new();
        dec.push(&((MAX_NODE_FRAME as u32) + 1).to_be_bytes());
        assert!(matches!(dec.next(), Err(NodeProtocolError::Framing(_))));
        assert!(dec.next().is_err(), "stays failed");
        let mut dec = NodeDecoder::new();
        dec.push(&[0, 0, 0, 0]);
        assert!(dec.next().is_err());
    }

    #[test]
    fn a_truncated_payload_is_malformed_not_a_panic() {
        let mut dec = NodeDecoder::new();
        // JoinWorker with a 2-byte payload.
        dec.push(&[0, 0, 0, 3, 2, 0, 1]);
        assert_eq!(dec.next(), Err(NodeProtocolError::Malformed("JoinWorker")));
        // The decoder goes on after a message error.
        dec.push(&[0, 0, 0, 1, 5]);
        assert_eq!(dec.next(), Ok(Some(NodeMessage::Heartbeat)));
    }

    proptest! {
        /// Random bytes, in random chunks, never panic the node endpoint's parser.
        #[test]
        fn random_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut dec = NodeDecoder::new();
            for c in &chunks {
                dec.push(c);
                for _ in 0..64 {
                    match dec.next() {
                        Ok(Some(_)) | Err(NodeProtocolError::UnknownType(_))
                        | Err(NodeProtocolError::Malformed(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }

        /// Valid frames with random type bytes and payloads decode or fail cleanly.
        #[test]
        fn random_payloads_in_valid_frames_never_panic(kind in 0u8..12,
            payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut frame = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
            frame.push(kind);
            frame.extend_from_slice(&payload);
            let mut dec = NodeDecoder::new();
            dec.push(&frame);
            let _ = dec.next();
        }
    }
}
