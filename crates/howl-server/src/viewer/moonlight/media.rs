//! The Moonlight data plane: per-viewer tasks that take the producer's encoded output,
//! packetize it for this one client (its keys, its packet size, its FEC) and send it from the
//! shared media sockets to the address the client pinged from.
//!
//! Each sender follows the producer through a [`Feed`] (lag → next keyframe, counted), so a
//! slow client costs only itself. Frame indices stay contiguous for the client: they count
//! frames *sent*, which is what the client's loss detection expects.

use crate::viewer::ViewerStats;
use crate::viewer::feed::{Feed, FeedItem, Tracks, WorkerWatch};
use howl_proto::video::{FrameType, PacketizerConfig, VideoFrame, VideoPacketizer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::UdpSocket;
use tokio::sync::watch;
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
    /// The client's `(kbps, fps)` when small frames may fill their share of its bitrate with
    /// extra parity (howl_proto's `PacketizerConfig::small_frame_bitrate`).
    pub small_frame_bitrate: Option<(u32, u32)>,
    /// The codec allows a one-shard frame to be padded to two shards (H.264, HEVC).
    pub pad_single_shard: bool,
    /// Testing only: fraction of datagrams dropped at random before sending.
    pub fault_drop_fraction: f64,
}

impl std::fmt::Debug for SenderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderSettings")
            .field("packet_size", &self.packet_size)
            .field("fec_percentage", &self.fec_percentage)
            .field("small_frame_bitrate", &self.small_frame_bitrate)
            .field("video_encrypted", &self.video_key.is_some())
            .field("audio_encrypted", &self.audio_key.is_some())
            .finish_non_exhaustive()
    }
}

/// Where one sender sends, and the session it belongs to.
pub struct SenderLink {
    pub sock: Arc<UdpSocket>,
    pub addr_rx: watch::Receiver<Option<SocketAddr>>,
    pub worker_rx: WorkerWatch,
    pub cancel: CancellationToken,
    pub stats: Arc<ViewerStats>,
}

/// Waits until the client's address is known; `None` when the session ended.
async fn wait_for_address(link: &mut SenderLink) -> Option<SocketAddr> {
    loop {
        if let Some(a) = *link.addr_rx.borrow_and_update() {
            return Some(a);
        }
        tokio::select! {
            r = link.addr_rx.changed() => r.ok()?,
            () = link.cancel.cancelled() => return None,
        }
    }
}

/// What a sender does next.
enum Next {
    Item(FeedItem),
    /// The client's address went away: wait for a new one, then start over at a keyframe.
    Restart,
    /// The session ended.
    Stop,
}

/// The next feed item, while following the client's address (a NAT rebinding moves it).
async fn next(feed: &mut Feed, link: &mut SenderLink, addr: &mut SocketAddr) -> Next {
    loop {
        tokio::select! {
            item = feed.next() => return match item {
                FeedItem::Closed => Next::Stop,
                item => Next::Item(item),
            },
            r = link.addr_rx.changed() => {
                if r.is_err() {
                    return Next::Stop;
                }
                match *link.addr_rx.borrow_and_update() {
                    Some(a) => *addr = a,
                    None => return Next::Restart,
                }
            }
            () = link.cancel.cancelled() => return Next::Stop,
        }
    }
}

fn fault_drop(fraction: f64) -> bool {
    fraction > 0.0 && rand::random::<f64>() < fraction
}

/// Sends datagrams to `addr`, counting them (and the ones fault injection drops).
async fn send_all(
    settings: &SenderSettings,
    link: &SenderLink,
    addr: SocketAddr,
    datagrams: impl Iterator<Item = impl AsRef<[u8]>>,
    count_datagrams: bool,
) {
    let stats = &link.stats;
    for d in datagrams {
        let d = d.as_ref();
        if fault_drop(settings.fault_drop_fraction) {
            stats
                .datagrams_fault_dropped
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // A full socket buffer or an ICMP error costs this datagram only.
        if link.sock.send_to(d, addr).await.is_ok() {
            if count_datagrams {
                stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
            }
            stats
                .bytes_sent
                .fetch_add(d.len() as u64, Ordering::Relaxed);
        }
    }
}

/// Starts the video sender of one session. It ends when `cancel` fires.
pub fn spawn_video_sender(settings: SenderSettings, mut link: SenderLink) {
    tokio::spawn(async move {
        let mut cfg = PacketizerConfig::new(settings.packet_size);
        cfg.fec_percentage = settings.fec_percentage;
        cfg.min_required_fec_packets = settings.min_required_fec_packets;
        cfg.encryption_key = settings.video_key;
        cfg.small_frame_bitrate = settings.small_frame_bitrate;
        cfg.pad_single_shard = settings.pad_single_shard;
        let mut packetizer = match VideoPacketizer::new(&cfg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the video packetizer");
                return;
            }
        };
        let mut frame_index: u32 = 0;
        loop {
            let Some(mut addr) = wait_for_address(&mut link).await else {
                return;
            };
            // Subscribed only once there is somewhere to send: the first frame sent is the
            // keyframe the feed asked for.
            let mut feed = Feed::new(link.worker_rx.clone(), Tracks::VIDEO, link.stats.clone());
            loop {
                let frame = match next(&mut feed, &mut link, &mut addr).await {
                    Next::Item(FeedItem::Video(f)) => f,
                    Next::Item(_) => continue,
                    Next::Restart => break,
                    Next::Stop => return,
                };
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
                        let stats = &link.stats;
                        stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        stats
                            .frames_dropped_unpacketizable
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                send_all(&settings, &link, addr, datagrams.iter(), true).await;
                link.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Starts the audio sender of one session. It ends when `cancel` fires.
pub fn spawn_audio_sender(settings: SenderSettings, mut link: SenderLink) {
    use howl_proto::audio::{AudioEncryption, AudioPacketizer, AudioStreamConfig};
    tokio::spawn(async move {
        // The packetizer follows the worker's Opus layout; `None` until a worker runs.
        let build = |opus_streams| {
            let mut cfg = AudioStreamConfig::new(settings.audio_packet_ms);
            cfg.encryption = settings.audio_key.map(|key| AudioEncryption {
                key,
                rikeyid: settings.rikeyid,
            });
            cfg.opus_streams = opus_streams;
            AudioPacketizer::new(&cfg)
                .map_err(|e| tracing::error!(error = %e, "cannot build the audio packetizer"))
                .ok()
        };
        loop {
            let Some(mut addr) = wait_for_address(&mut link).await else {
                return;
            };
            let mut feed = Feed::new(link.worker_rx.clone(), Tracks::AUDIO, link.stats.clone());
            let mut packetizer = feed.worker().and_then(|w| build(w.opus.streams));
            loop {
                let packet = match next(&mut feed, &mut link, &mut addr).await {
                    Next::Item(FeedItem::Audio(p)) => p,
                    Next::Item(FeedItem::Worker(w)) => {
                        packetizer = w.and_then(|w| build(w.opus.streams));
                        continue;
                    }
                    Next::Item(_) => continue,
                    Next::Restart => break,
                    Next::Stop => return,
                };
                let Some(p) = packetizer.as_mut() else {
                    continue;
                };
                let datagrams = match p.push(&packet.data) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::debug!(error = %e, "audio packet dropped");
                        continue;
                    }
                };
                send_all(&settings, &link, addr, datagrams.iter(), false).await;
                link.stats
                    .audio_packets_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}
