//! A streaming session: `/launch` → RTSP handshake → ENet control → UDP video/audio.
//!
//! [`Session`] is the handle; the work happens in a control thread (ENet) and two tokio tasks
//! (video, audio) that it owns. Dropping the handle stops everything without waiting;
//! [`Session::stop`] does it gracefully (media first, then the ENet disconnect with its
//! linger) and returns the final counters.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use howl_proto::audio::{AudioDepacketizer, AudioEncryption, AudioReceiverConfig};
use howl_proto::control::{ClientCrypto, ClientMessage, IvVariant};
use howl_proto::input::InputEvent;
use howl_proto::nvhttp::{LaunchMode, LaunchRequest};
use howl_proto::rtsp::{Method, MoonlightClient, StreamKind};
use howl_proto::sdp::{
    AudioConfig, Bitrate, ChromaSampling, ColorSpace, CscMode, DescribeInfo, DynamicRange,
    EncryptionFlags, MlFeatureFlags, NV_FF_AUDIO_ENCRYPTION, RELIABLE_UDP_ENCRYPTED_CONTROL,
    StreamConfig, VideoCodec,
};
use howl_proto::video::{DepacketizerConfig, ReceivedFrame, VideoDepacketizer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{Client, HostInfo};
use crate::control::{
    ControlCommand, ControlSetup, ControlThread, ENET_CONNECT_DEADLINE, ENET_DISCONNECT_LINGER,
};
use crate::error::ClientError;
use crate::identity::random_bytes;
use crate::media::{AudioReceiver, VideoReceiver, bind_for};
use crate::rtsp::{negotiate_encryption, parse_session_url, patch_announce, transact};
use crate::stats::{EndReason, SessionStats, StatsSnapshot};

/// Frames video task → [`Session::take_frames`] consumer. Full: the frame is dropped and
/// counted in [`StatsSnapshot::frames_dropped_by_consumer`] (never queued without bound).
pub const FRAME_QUEUE_CAPACITY: usize = 32;
/// How long [`Session::stop`] waits for a receive task to finish before aborting it.
pub const TASK_JOIN_DEADLINE: Duration = Duration::from_secs(2);
/// `x-nv-general.featureFlags` base value of current clients (0x07 plus input encryption).
const NV_FEATURE_FLAGS_BASE: u32 = 0x87;
/// The largest bitrate the client puts in the NVIDIA fields.
const MAX_NV_BITRATE_KBPS: u32 = 100_000;
/// `surroundAudioInfo` for stereo: `(0x3 << 16) | 2`.
const SURROUND_AUDIO_INFO_STEREO: u32 = 0x3 << 16 | 2;

/// What to stream and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    pub app_id: i32,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// The user's total bitrate; the NVIDIA fields get 80 % of it, like real clients.
    pub bitrate_kbps: u32,
    /// Wanted codec; falls back to H.264 if the host's DESCRIBE does not offer it.
    pub codec: VideoCodec,
    /// Video payload per packet before the encryption adjustment (rounded down to 16).
    pub packet_size: u32,
    /// Encryption this client wants where the host supports it (the host's requested bits
    /// are always added).
    pub encryption: EncryptionFlags,
    /// `/resume` instead of `/launch`.
    pub resume: bool,
}

impl Default for LaunchOptions {
    /// H.264 1280x720@60, 8000 kbps, packet size 1392, all encryption the host supports.
    fn default() -> Self {
        Self {
            app_id: 0,
            width: 1280,
            height: 720,
            fps: 60,
            bitrate_kbps: 8000,
            codec: VideoCodec::H264,
            packet_size: 1392,
            encryption: EncryptionFlags::ALL,
            resume: false,
        }
    }
}

impl LaunchOptions {
    /// The ANNOUNCE configuration for these options once `enabled` encryption is known.
    pub fn stream_config(&self, enabled: EncryptionFlags) -> StreamConfig {
        let mut packet_size = self.packet_size / 16 * 16;
        if enabled.contains(EncryptionFlags::VIDEO) {
            packet_size = packet_size.saturating_sub(32);
        }
        let nv_kbps = (u64::from(self.bitrate_kbps) * 80 / 100).min(u64::from(MAX_NV_BITRATE_KBPS));
        let nv_kbps = u32::try_from(nv_kbps).unwrap_or(MAX_NV_BITRATE_KBPS);
        let audio_encrypted = enabled.contains(EncryptionFlags::AUDIO);
        StreamConfig {
            width: self.width,
            height: self.height & !1,
            fps: self.fps,
            client_refresh_rate_x100: self.fps.saturating_mul(100),
            packet_size,
            bitrate: Bitrate {
                maximum_kbps: nv_kbps,
                minimum_kbps: Some(nv_kbps),
                initial_kbps: Some(nv_kbps),
                initial_peak_kbps: Some(nv_kbps),
                configured_kbps: self.bitrate_kbps,
            },
            codec: self.codec,
            dynamic_range: DynamicRange::Sdr,
            chroma: ChromaSampling::Yuv420,
            max_ref_frames: 0,
            csc: CscMode {
                color_space: ColorSpace::Bt709,
                full_range: false,
            },
            slices_per_frame: 1,
            fec_enabled: true,
            min_required_fec_packets: 2,
            audio: AudioConfig {
                channels: 2,
                channel_mask: 0x3,
                high_quality: false,
                packet_duration_ms: 5,
            },
            ss_encryption_enabled: enabled,
            nv_feature_flags: NV_FEATURE_FLAGS_BASE
                | if audio_encrypted {
                    NV_FF_AUDIO_ENCRYPTION
                } else {
                    0
                },
            ml_feature_flags: MlFeatureFlags(
                MlFeatureFlags::FEC_STATUS | MlFeatureFlags::SESSION_ID_V1,
            ),
            control_protocol: RELIABLE_UDP_ENCRYPTED_CONTROL,
            video_qos_type: 5,
            audio_qos_type: 4,
        }
    }

    /// The `/launch` parameters, with a fresh session key.
    fn launch_request(&self, rikey: [u8; 16], rikeyid: i32) -> LaunchRequest {
        LaunchRequest {
            app_id: self.app_id,
            mode: Some(LaunchMode {
                width: self.width,
                height: self.height,
                fps: self.fps,
            }),
            rikey,
            rikeyid,
            local_audio_play_mode: Some(false),
            surround_audio_info: Some(SURROUND_AUDIO_INFO_STEREO),
            sops: Some(false),
            hdr_mode: None,
            remote_controllers_bitmap: Some(0),
            gcmap: Some(0),
            gcpersist: Some(false),
            // 0: video/control encryption allowed, no encrypted RTSP (not implemented here).
            corever: Some(0),
        }
    }
}

/// A running stream. See the module docs.
#[must_use = "dropping a Session stops it at once; call stop() for a graceful end"]
#[derive(Debug)]
pub struct Session {
    host: HostInfo,
    rtsp_addr: SocketAddr,
    config: StreamConfig,
    stats: Arc<SessionStats>,
    control: Arc<ControlThread>,
    stop_tx: watch::Sender<bool>,
    ended_rx: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    frames: Option<mpsc::Receiver<ReceivedFrame>>,
}

impl Client {
    /// Launches (or resumes) an app and starts streaming it; returns once the control stream
    /// is connected and the video socket pings the host.
    pub async fn launch(
        &self,
        addr: SocketAddr,
        opts: &LaunchOptions,
    ) -> Result<Session, ClientError> {
        let stats = Arc::new(SessionStats::new());
        let rikey: [u8; 16] = random_bytes()?;
        let rikeyid = i32::from_be_bytes(random_bytes()?);
        let request = opts.launch_request(rikey, rikeyid);
        let (host, url) = self.launch_request(addr, &request, opts.resume).await?;
        let (url_ip, rtsp_port) = parse_session_url(&url)?;
        let server_ip: IpAddr = url_ip
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(addr.ip());
        let rtsp_addr = SocketAddr::new(server_ip, rtsp_port);

        // Dropping stop_tx (any early return below) ends the receive tasks.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut rtsp = MoonlightClient::new(
            format!("rtsp://0.0.0.0:{rtsp_port}"),
            "0.0.0.0",
            server_ip,
            opts.stream_config(EncryptionFlags::NONE),
        );
        let mut config = rtsp.config().clone();
        let mut step = 0usize;
        while let Some(mut req) = rtsp.next_request() {
            let name = step_name(&req.method, step);
            if req.method == Method::Announce {
                patch_announce(&mut req, &config, server_ip, rtsp.ports().video);
            }
            let raw = transact(rtsp_addr, &req).await?;
            rtsp.handle_response_bytes(&raw)
                .map_err(|source| ClientError::Rtsp {
                    step: name,
                    peer: rtsp_addr,
                    source,
                })?;
            match step {
                1 => {
                    // DESCRIBE read: fix the configuration now (the audio receiver needs the
                    // encryption decision before the ANNOUNCE that carries it). Keep what the
                    // client adapted to the offer (codec), add the negotiated encryption.
                    let describe = rtsp
                        .describe()
                        .cloned()
                        .unwrap_or_else(|| DescribeInfo::parse(b""));
                    let enabled = negotiate_encryption(&describe, opts.encryption);
                    let mut want = opts.clone();
                    want.codec = rtsp.config().codec;
                    config = want.stream_config(enabled);
                }
                2 => {
                    // Audio pings start as soon as the audio SETUP is answered.
                    let audio_server = SocketAddr::new(server_ip, rtsp.ports().audio);
                    let socket = bind_for(audio_server, "audio socket").await?;
                    let mut acfg = AudioReceiverConfig::new(config.audio.packet_duration_ms);
                    if config.encryption().contains(EncryptionFlags::AUDIO) {
                        acfg.encryption = Some(AudioEncryption {
                            key: rikey,
                            rikeyid,
                        });
                    }
                    let depacketizer = AudioDepacketizer::new(&acfg)?;
                    let rx = AudioReceiver::new(depacketizer, stats.clone());
                    let token = rtsp.ping_payload(StreamKind::Audio);
                    tasks.push(tokio::spawn(rx.run(
                        socket,
                        audio_server,
                        token,
                        stop_rx.clone(),
                    )));
                }
                _ => {}
            }
            step += 1;
        }

        let describe = rtsp
            .describe()
            .cloned()
            .unwrap_or_else(|| DescribeInfo::parse(b""));
        let supported = describe.encryption_supported.unwrap_or_default();
        let crypto = ClientCrypto::new(rikey, IvVariant::from_advertised(supported.0))?;
        let control_server = SocketAddr::new(server_ip, rtsp.ports().control);
        let (ended_tx, ended_rx) = watch::channel(false);
        let (control, connected) = ControlThread::start(ControlSetup {
            server: control_server,
            connect_data: rtsp.connect_data(),
            crypto,
            stats: stats.clone(),
            ended: ended_tx,
        })?;
        let control = Arc::new(control);
        let control_err = |reason: String| ClientError::Control {
            peer: control_server,
            reason,
        };
        match tokio::time::timeout(ENET_CONNECT_DEADLINE + Duration::from_secs(1), connected).await
        {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(reason))) => return Err(control_err(reason)),
            Ok(Err(_)) => return Err(control_err("control thread exited".into())),
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: "ENet connect",
                    peer: control_server,
                    after: ENET_CONNECT_DEADLINE,
                });
            }
        }

        let video_server = SocketAddr::new(server_ip, rtsp.ports().video);
        let socket = bind_for(video_server, "video socket").await?;
        let mut dcfg = DepacketizerConfig::new(config.packet_size as usize);
        if config.encryption().contains(EncryptionFlags::VIDEO) {
            dcfg.encryption_key = Some(rikey);
        }
        let depacketizer = VideoDepacketizer::new(&dcfg)?;
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE_CAPACITY);
        let video = VideoReceiver::new(depacketizer, stats.clone(), frames_tx, control.clone());
        let token = rtsp.ping_payload(StreamKind::Video);
        tasks.push(tokio::spawn(video.run(
            socket,
            video_server,
            token,
            stop_rx.clone(),
        )));

        Ok(Session {
            host,
            rtsp_addr,
            config,
            stats,
            control,
            stop_tx,
            ended_rx,
            tasks,
            frames: Some(frames_rx),
        })
    }
}

fn step_name(method: &Method, step: usize) -> &'static str {
    match (method, step) {
        (Method::Options, _) => "OPTIONS",
        (Method::Describe, _) => "DESCRIBE",
        (Method::Setup, 2) => "SETUP audio",
        (Method::Setup, 3) => "SETUP video",
        (Method::Setup, _) => "SETUP control",
        (Method::Announce, _) => "ANNOUNCE",
        (Method::Play, _) => "PLAY",
        _ => "request",
    }
}

impl Session {
    /// The host as resolved at launch.
    pub fn host(&self) -> &HostInfo {
        &self.host
    }

    /// The RTSP address from `sessionUrl0`.
    pub fn rtsp_addr(&self) -> SocketAddr {
        self.rtsp_addr
    }

    /// The configuration announced to the host.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The reassembled frames, in frame order (at most [`FRAME_QUEUE_CAPACITY`] queued; the
    /// rest are dropped and counted). Available once; `None` afterwards.
    pub fn take_frames(&mut self) -> Option<mpsc::Receiver<ReceivedFrame>> {
        self.frames.take()
    }

    /// Sends any control message (sealed, on the channel and with the reliability
    /// moonlight-common-c uses for it).
    pub fn send(&self, msg: ClientMessage) -> Result<(), ClientError> {
        if self.is_ended() {
            return Err(ClientError::SessionEnded);
        }
        self.control.send(ControlCommand::Send(msg))
    }

    /// Asks the host for an IDR frame (`0x0302` on the urgent channel).
    pub fn request_idr(&self) -> Result<(), ClientError> {
        self.send(ClientMessage::RequestIdr)
    }

    /// Sends one input event (`0x0206`).
    pub fn send_input(&self, event: &InputEvent) -> Result<(), ClientError> {
        self.send(ClientMessage::input(event))
    }

    /// Whether the session has ended (termination, disconnect, stop).
    pub fn is_ended(&self) -> bool {
        *self.ended_rx.borrow() || self.control.is_finished()
    }

    /// Waits until the session ends or `timeout` passes; returns the reason if it ended.
    pub async fn wait_end(&mut self, timeout: Duration) -> Option<EndReason> {
        let mut rx = self.ended_rx.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|ended| *ended)).await;
        self.stats.snapshot().end
    }

    /// Ends the session gracefully: stops video and audio (their pings stop), then disconnects
    /// ENet (lingering up to 2 s for ACKs). Every wait is bounded. Returns the final counters.
    pub async fn stop(mut self) -> StatsSnapshot {
        let _ = self.stop_tx.send(true);
        for task in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(TASK_JOIN_DEADLINE, task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if self.control.send(ControlCommand::Disconnect).is_err() {
            self.control.signal_stop();
        }
        let mut rx = self.ended_rx.clone();
        let linger = ENET_DISCONNECT_LINGER + Duration::from_millis(500);
        if tokio::time::timeout(linger, rx.wait_for(|ended| *ended))
            .await
            .is_err()
        {
            self.control.signal_stop();
        }
        self.stats.set_end(EndReason::Stopped);
        self.stats.snapshot()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Signal only: tasks see the flag (or the dropped sender), the thread its stop flag.
        let _ = self.stop_tx.send(true);
        self.control.signal_stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_announce_what_the_brief_asks() {
        let o = LaunchOptions::default();
        let plain = o.stream_config(EncryptionFlags::NONE);
        assert_eq!((plain.width, plain.height, plain.fps), (1280, 720, 60));
        assert_eq!(plain.codec, VideoCodec::H264);
        assert_eq!(plain.packet_size, 1392);
        assert_eq!(plain.bitrate.maximum_kbps, 6400);
        assert_eq!(plain.bitrate.configured_kbps, 8000);
        assert_eq!(plain.audio.channels, 2);
        assert!(plain.ml_feature_flags.session_id_v1());
        assert_eq!(plain.encryption(), EncryptionFlags::NONE);
        let enc = o.stream_config(EncryptionFlags::ALL);
        assert_eq!(enc.packet_size, 1360);
        assert_eq!(enc.nv_feature_flags, 0xA7);
        assert_eq!(enc.encryption(), EncryptionFlags::ALL);
        // What we announce parses back identically on the host side.
        let body = enc.to_announce("127.0.0.1".parse().unwrap(), 47998);
        assert_eq!(StreamConfig::parse_announce(&body).unwrap(), enc);
    }

    #[test]
    fn launch_request_round_trips() {
        let o = LaunchOptions {
            app_id: 881_448_767,
            ..LaunchOptions::default()
        };
        let r = o.launch_request([0xab; 16], -559_038_737);
        let q = r.to_query();
        assert_eq!(q.get("mode"), Some("1280x720x60"));
        assert_eq!(q.get("rikeyid"), Some("-559038737"));
        assert_eq!(q.get("surroundAudioInfo"), Some("196610"));
        assert_eq!(q.get("localAudioPlayMode"), Some("0"));
        assert_eq!(LaunchRequest::from_query(&q).unwrap(), r);
    }
}
