//! Data plane senders: per-session tasks that take the instance worker's encoded output,
//! packetize it for this one client (its keys, its packet size, its FEC) and send it from the
//! shared media sockets to the address the client pinged from.
//!
//! A sender subscribes to the worker's fan-out. When it falls behind, the broadcast channel
//! tells it how many frames it lost; it then drops everything up to the next keyframe (asking
//! the worker for one), so a slow client costs only itself. Frame indices stay contiguous for
//! the client: they count frames *sent*, which is what the client's loss detection expects.

use crate::stream::SessionStats;
use crate::worker::Worker;
use howl_proto::video::{FrameType, PacketizerConfig, VideoFrame, VideoPacketizer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Which shared UDP port a datagram arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Video,
    Audio,
}

/// Per-session settings of the senders (negotiated in RTSP ANNOUNCE).
#[derive(Clone)]
pub struct SenderSettings {
    pub packet_size: usize,
    pub fec_percentage: u8,
    pub min_required_fec_packets: u32,
    pub video_key: Option<[u8; 16]>,
    pub audio_key: Option<[u8; 16]>,
    pub rikeyid: i32,
    pub audio_packet_ms: u32,
    /// Testing only: fraction of datagrams dropped at random before sending.
    pub fault_drop_fraction: f64,
}

impl std::fmt::Debug for SenderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderSettings")
            .field("packet_size", &self.packet_size)
            .field("fec_percentage", &self.fec_percentage)
            .field("video_encrypted", &self.video_key.is_some())
            .field("audio_encrypted", &self.audio_key.is_some())
            .finish_non_exhaustive()
    }
}

/// Waits until both a worker and a destination are known; `None` when cancelled.
async fn wait_ready(
    worker_rx: &mut watch::Receiver<Option<Arc<Worker>>>,
    addr_rx: &mut watch::Receiver<Option<SocketAddr>>,
    cancel: &CancellationToken,
) -> Option<(Arc<Worker>, SocketAddr)> {
    loop {
        let w = worker_rx.borrow_and_update().clone();
        let a = *addr_rx.borrow_and_update();
        if let (Some(w), Some(a)) = (w, a) {
            return Some((w, a));
        }
        tokio::select! {
            r = worker_rx.changed() => r.ok()?,
            r = addr_rx.changed() => r.ok()?,
            () = cancel.cancelled() => return None,
        }
    }
}

/// What a sender does next.
enum Next<T> {
    /// An item (or the news that the sender lagged behind).
    Item(Result<T, broadcast::error::RecvError>),
    /// The worker or the destination went away or changed: wait and subscribe again.
    Resubscribe,
    /// The session ended.
    Stop,
}

/// Waits for the next item of a subscription while following the session's destination
/// (updated in `addr`) and worker; shared by the video and audio senders.
async fn next_item<T: Clone>(
    items: &mut broadcast::Receiver<T>,
    worker_rx: &mut watch::Receiver<Option<Arc<Worker>>>,
    addr_rx: &mut watch::Receiver<Option<SocketAddr>>,
    addr: &mut SocketAddr,
    cancel: &CancellationToken,
) -> Next<T> {
    loop {
        tokio::select! {
            r = items.recv() => return Next::Item(r),
            r = worker_rx.changed() => {
                return if r.is_err() { Next::Stop } else { Next::Resubscribe };
            }
            r = addr_rx.changed() => {
                if r.is_err() {
                    return Next::Stop;
                }
                match *addr_rx.borrow_and_update() {
                    // A NAT rebinding moves the client: follow it.
                    Some(a) => *addr = a,
                    None => return Next::Resubscribe,
                }
            }
            () = cancel.cancelled() => return Next::Stop,
        }
    }
}

fn fault_drop(fraction: f64) -> bool {
    fraction > 0.0 && rand::random::<f64>() < fraction
}

/// Starts the video sender of one session. It ends when `cancel` fires.
pub fn spawn_video_sender(
    settings: SenderSettings,
    sock: Arc<UdpSocket>,
    mut addr_rx: watch::Receiver<Option<SocketAddr>>,
    mut worker_rx: watch::Receiver<Option<Arc<Worker>>>,
    cancel: CancellationToken,
    stats: Arc<SessionStats>,
) {
    tokio::spawn(async move {
        let mut cfg = PacketizerConfig::new(settings.packet_size);
        cfg.fec_percentage = settings.fec_percentage;
        cfg.min_required_fec_packets = settings.min_required_fec_packets;
        cfg.encryption_key = settings.video_key;
        let mut packetizer = match VideoPacketizer::new(&cfg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the video packetizer");
                return;
            }
        };
        let mut frame_index: u32 = 0;
        'outer: loop {
            let Some((worker, mut addr)) = wait_ready(&mut worker_rx, &mut addr_rx, &cancel).await
            else {
                return;
            };
            let mut frames = worker.subscribe_video();
            // A joiner starts at a fresh keyframe, never at a delta or an old frame.
            worker.request_keyframe();
            let mut need_keyframe = true;
            loop {
                let frame = match next_item(
                    &mut frames,
                    &mut worker_rx,
                    &mut addr_rx,
                    &mut addr,
                    &cancel,
                )
                .await
                {
                    Next::Item(r) => r,
                    Next::Resubscribe => continue 'outer,
                    Next::Stop => return,
                };
                let frame = match frame {
                    Ok(f) => f,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        stats.frames_dropped.fetch_add(n, Ordering::Relaxed);
                        stats.frames_dropped_lagged.fetch_add(n, Ordering::Relaxed);
                        need_keyframe = true;
                        worker.request_keyframe();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => continue 'outer,
                };
                // How far behind the producer this viewer is, in frames (a live gauge).
                stats
                    .video_queue_depth
                    .store(frames.len() as u64, Ordering::Relaxed);
                stats.video_queue_bytes.store(
                    worker.stats.video_bytes.queued_after(frame.seq),
                    Ordering::Relaxed,
                );
                if need_keyframe && !frame.keyframe {
                    stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    stats
                        .frames_dropped_awaiting_keyframe
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                need_keyframe = false;
                frame_index = frame_index.wrapping_add(1);
                let vf = VideoFrame {
                    frame_index,
                    // 90 kHz RTP clock from the worker's microsecond timestamps.
                    rtp_timestamp: (frame.pts_us.wrapping_mul(9) / 100) as u32,
                    frame_type: if frame.keyframe {
                        FrameType::Idr
                    } else {
                        FrameType::P
                    },
                    host_processing_latency: 0,
                    ltr: false,
                    access_unit: &frame.data,
                };
                let datagrams = match packetizer.packetize(&vf) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, len = frame.data.len(), "frame cannot be packetized; dropped");
                        frame_index = frame_index.wrapping_sub(1);
                        stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        stats
                            .frames_dropped_unpacketizable
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                for d in datagrams.iter() {
                    if fault_drop(settings.fault_drop_fraction) {
                        stats
                            .datagrams_fault_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // A full socket buffer or an ICMP error costs this datagram only.
                    if sock.send_to(d, addr).await.is_ok() {
                        stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                        stats
                            .bytes_sent
                            .fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                }
                stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Starts the audio sender of one session. It ends when `cancel` fires.
pub fn spawn_audio_sender(
    settings: SenderSettings,
    sock: Arc<UdpSocket>,
    mut addr_rx: watch::Receiver<Option<SocketAddr>>,
    mut worker_rx: watch::Receiver<Option<Arc<Worker>>>,
    cancel: CancellationToken,
    stats: Arc<SessionStats>,
) {
    use howl_proto::audio::{AudioEncryption, AudioPacketizer, AudioStreamConfig};
    tokio::spawn(async move {
        'outer: loop {
            let Some((worker, mut addr)) = wait_ready(&mut worker_rx, &mut addr_rx, &cancel).await
            else {
                return;
            };
            let mut cfg = AudioStreamConfig::new(settings.audio_packet_ms);
            cfg.encryption = settings.audio_key.map(|key| AudioEncryption {
                key,
                rikeyid: settings.rikeyid,
            });
            cfg.opus_streams = worker.opus.streams;
            let mut packetizer = match AudioPacketizer::new(&cfg) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the audio packetizer");
                    return;
                }
            };
            let mut packets = worker.subscribe_audio();
            loop {
                let packet = match next_item(
                    &mut packets,
                    &mut worker_rx,
                    &mut addr_rx,
                    &mut addr,
                    &cancel,
                )
                .await
                {
                    Next::Item(r) => r,
                    Next::Resubscribe => continue 'outer,
                    Next::Stop => return,
                };
                let packet = match packet {
                    Ok(p) => p,
                    // Audio has no keyframes: a lagging sender just skips ahead; the client
                    // conceals the gap.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => continue 'outer,
                };
                let datagrams = match packetizer.push(&packet.data) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::debug!(error = %e, "audio packet dropped");
                        continue;
                    }
                };
                for d in datagrams.iter() {
                    if fault_drop(settings.fault_drop_fraction) {
                        stats
                            .datagrams_fault_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if sock.send_to(d, addr).await.is_ok() {
                        stats
                            .bytes_sent
                            .fetch_add(d.len() as u64, Ordering::Relaxed);
                    }
                }
                stats.audio_packets_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}
