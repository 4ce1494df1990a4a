//! Video and audio receive tasks: each owns one UDP socket, pings the host's stream port from
//! it every [`UDP_PING_INTERVAL`] (that is how the host learns where to send, part 2 §1.2) and
//! feeds what arrives to the sans-IO receivers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use howl_proto::audio::{AudioDepacketizer, AudioEvent};
use howl_proto::control::ClientMessage;
use howl_proto::rtsp::PingPayload;
use howl_proto::video::{FrameType, ReceivedFrame, VideoDepacketizer, VideoEvent};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::control::{ControlCommand, ControlThread};
use crate::error::ClientError;
use crate::stats::SessionStats;

/// Interval of the audio and video UDP pings (moonlight-common-c: 500 ms, whole session).
pub const UDP_PING_INTERVAL: Duration = Duration::from_millis(500);
/// Receive buffer for one datagram; larger than any valid video or audio datagram so that an
/// oversized one is seen (and rejected) rather than silently truncated.
pub const MAX_DATAGRAM: usize = 65_536;
/// The legacy ping, used when the host gave no valid `X-SS-Ping-Payload`.
pub const LEGACY_PING: &[u8; 4] = b"PING";
/// RTP payload type of audio data packets.
pub const AUDIO_PT_DATA: u8 = howl_proto::audio::PAYLOAD_TYPE_AUDIO;
/// RTP payload type of audio FEC packets.
pub const AUDIO_PT_FEC: u8 = howl_proto::audio::PAYLOAD_TYPE_FEC;

/// One UDP ping: the 16-byte token then `BE32(counter)` (counter starts at 1), or the 4-byte
/// legacy `PING` without a token.
pub fn ping_datagram(token: Option<&PingPayload>, counter: u32) -> Vec<u8> {
    match token {
        Some(t) => {
            let mut d = Vec::with_capacity(20);
            d.extend_from_slice(t.as_bytes());
            d.extend_from_slice(&counter.to_be_bytes());
            d
        }
        None => LEGACY_PING.to_vec(),
    }
}

/// Binds an ephemeral UDP socket of the server's address family.
pub(crate) async fn bind_for(
    server: SocketAddr,
    what: &'static str,
) -> Result<UdpSocket, ClientError> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(bind)
        .await
        .map_err(|source| ClientError::Io {
            what,
            peer: server,
            source,
        })
}

/// Sends pings and collects datagrams until `stop` flips or its sender goes away. Returns when
/// told to; UDP errors other than "port unreachable" style noise end the loop.
async fn ping_and_receive(
    socket: &UdpSocket,
    server: SocketAddr,
    token: Option<PingPayload>,
    mut stop: watch::Receiver<bool>,
    mut on_datagram: impl FnMut(&[u8]),
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut ticker = tokio::time::interval(UDP_PING_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counter: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = ticker.tick() => {
                counter = counter.wrapping_add(1);
                // A lost ping is harmless: the next one follows in 500 ms.
                let _ = socket.send_to(&ping_datagram(token.as_ref(), counter), server).await;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _from)) => on_datagram(&buf[..n]),
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                ) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "media socket failed");
                    return;
                }
            },
            r = stop.changed() => if r.is_err() { return },
        }
    }
}

/// Video: depacketize, count, deliver frames, and ask for an IDR after a loss the way the
/// client does (on the next complete frame, once per loss episode).
pub(crate) struct VideoReceiver {
    pub depacketizer: VideoDepacketizer,
    pub stats: Arc<SessionStats>,
    pub frames: mpsc::Sender<ReceivedFrame>,
    pub control: Arc<ControlThread>,
    need_idr: bool,
}

impl VideoReceiver {
    pub(crate) fn new(
        depacketizer: VideoDepacketizer,
        stats: Arc<SessionStats>,
        frames: mpsc::Sender<ReceivedFrame>,
        control: Arc<ControlThread>,
    ) -> Self {
        Self {
            depacketizer,
            stats,
            frames,
            control,
            need_idr: false,
        }
    }

    fn handle(&mut self, datagram: &[u8]) {
        SessionStats::add(&self.stats.video_datagrams, 1);
        SessionStats::add(&self.stats.video_bytes, datagram.len() as u64);
        if self.depacketizer.handle_datagram(datagram).is_err() {
            SessionStats::add(&self.stats.video_rejected, 1);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(ev) = self.depacketizer.poll_event() {
            match ev {
                VideoEvent::Frame(frame) => {
                    let keyframe = frame.frame_type() == Some(FrameType::Idr);
                    self.stats.frame(
                        frame.frame_index,
                        keyframe,
                        frame.recovered_shards,
                        frame.access_unit.len(),
                    );
                    if keyframe {
                        self.need_idr = false;
                    } else if self.need_idr {
                        self.need_idr = false;
                        let cmd = ControlCommand::Send(ClientMessage::RequestIdr);
                        if self.control.send(cmd).is_ok() {
                            SessionStats::add(&self.stats.idr_requests, 1);
                        }
                    }
                    if self.frames.try_send(frame).is_err() {
                        SessionStats::add(&self.stats.frames_dropped_by_consumer, 1);
                    }
                }
                VideoEvent::Lost { count, .. } => {
                    SessionStats::add(&self.stats.frames_lost, u64::from(count));
                    self.need_idr = true;
                }
            }
        }
    }

    /// Runs until `stop`; then resolves whatever is pending.
    pub(crate) async fn run(
        mut self,
        socket: UdpSocket,
        server: SocketAddr,
        token: Option<PingPayload>,
        stop: watch::Receiver<bool>,
    ) {
        ping_and_receive(&socket, server, token, stop, |d| self.handle(d)).await;
        self.depacketizer.flush();
        self.drain();
    }
}

/// Audio: howl-proto's depacketizer (FEC recovery, AES-CBC decryption), counted. The Opus
/// packets themselves are not decoded.
#[derive(Debug)]
pub(crate) struct AudioReceiver {
    pub depacketizer: AudioDepacketizer,
    pub stats: Arc<SessionStats>,
}

impl AudioReceiver {
    pub(crate) fn new(depacketizer: AudioDepacketizer, stats: Arc<SessionStats>) -> Self {
        Self {
            depacketizer,
            stats,
        }
    }

    pub(crate) fn handle(&mut self, d: &[u8]) {
        SessionStats::add(&self.stats.audio_bytes, d.len() as u64);
        match self.depacketizer.handle_datagram(d) {
            Ok(()) if d.get(1).is_some_and(|pt| pt & 0x7f == AUDIO_PT_FEC) => {
                SessionStats::add(&self.stats.audio_fec_packets, 1);
            }
            Ok(()) => {}
            Err(_) => SessionStats::add(&self.stats.audio_rejected, 1),
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(ev) = self.depacketizer.poll_event() {
            match ev {
                AudioEvent::Packet(p) => {
                    SessionStats::add(&self.stats.audio_packets, 1);
                    if p.recovered {
                        SessionStats::add(&self.stats.audio_recovered, 1);
                    }
                }
                AudioEvent::Lost { count, .. } => {
                    SessionStats::add(&self.stats.audio_lost, u64::from(count));
                }
            }
        }
    }

    pub(crate) async fn run(
        mut self,
        socket: UdpSocket,
        server: SocketAddr,
        token: Option<PingPayload>,
        stop: watch::Receiver<bool>,
    ) {
        ping_and_receive(&socket, server, token, stop, |d| self.handle(d)).await;
        self.depacketizer.flush();
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::audio::{
        AudioEncryption, AudioPacketizer, AudioReceiverConfig, AudioStreamConfig,
    };

    #[test]
    fn ping_format_matches_the_reference_example() {
        let token = PingPayload::from_ascii(b"9C0F2A61D3B4E587").unwrap();
        assert_eq!(
            hex::encode(ping_datagram(Some(&token), 3)),
            "39433046324136314433423445353837".to_owned() + "00000003"
        );
        assert_eq!(ping_datagram(None, 7), b"PING");
    }

    fn audio_receiver(enc: Option<AudioEncryption>) -> (AudioReceiver, Arc<SessionStats>) {
        let stats = Arc::new(SessionStats::new());
        let mut cfg = AudioReceiverConfig::new(5);
        cfg.encryption = enc;
        let d = AudioDepacketizer::new(&cfg).unwrap();
        (AudioReceiver::new(d, stats.clone()), stats)
    }

    /// Real datagrams from howl-proto's packetizer, encrypted, with two packets of one block
    /// dropped (FEC recovers them) and one whole block dropped (reported lost).
    #[test]
    fn audio_recovers_with_fec_and_counts_losses() {
        let enc = AudioEncryption {
            key: [7; 16],
            rikeyid: -559_038_737,
        };
        let mut pcfg = AudioStreamConfig::new(5);
        pcfg.encryption = Some(enc.clone());
        let mut pk = AudioPacketizer::new(&pcfg).unwrap();
        let (mut rx, stats) = audio_receiver(Some(enc));
        for n in 0u16..16 {
            let opus = [0xfc, n as u8, 1, 2, 3, 4, 5, 6, 7, 8];
            let out: Vec<Vec<u8>> = pk.push(&opus).unwrap().iter().map(<[u8]>::to_vec).collect();
            for d in out {
                let seq = u16::from_be_bytes([d[2], d[3]]);
                let is_data = d[1] == AUDIO_PT_DATA;
                // Block 1 (seq 4..7) loses 5 and 6; block 2 (8..11) is gone entirely.
                if is_data && (seq == 5 || seq == 6) {
                    continue;
                }
                if (8..12).contains(&n) {
                    continue;
                }
                rx.handle(&d);
            }
        }
        rx.depacketizer.flush();
        rx.drain();
        let s = stats.snapshot();
        assert_eq!(s.audio_recovered, 2);
        assert_eq!(s.audio_lost, 4);
        assert_eq!(s.audio_packets, 12);
        assert_eq!(s.audio_rejected, 0);
        assert_eq!(s.audio_fec_packets, 6);
        rx.handle(&[0x80]);
        assert_eq!(stats.snapshot().audio_rejected, 1);
    }
}
