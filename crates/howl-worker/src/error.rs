//! Worker errors, sorted by where they come from.

use howl_media::protocol::{Codec, ParamsError, ProtocolError};

/// Why the worker could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The server sent parameters the worker cannot honour (API misuse on the server's side).
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// No usable encoder element for the codec (unsupported on this host).
    #[error("no usable encoder for {}", .0.name())]
    NoEncoder(Codec),
    /// This source/layout is not implemented yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A GStreamer element is missing or refused a property or link (host set-up).
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// The wire protocol broke (peer misbehaved).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Socket I/O.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

impl From<gstreamer::glib::BoolError> for WorkerError {
    fn from(e: gstreamer::glib::BoolError) -> Self {
        WorkerError::Pipeline(e.to_string())
    }
}

impl From<gstreamer::StateChangeError> for WorkerError {
    fn from(e: gstreamer::StateChangeError) -> Self {
        WorkerError::Pipeline(format!("state change failed: {e}"))
    }
}
