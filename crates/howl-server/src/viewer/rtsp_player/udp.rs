//! The shared UDP ports of the RTSP egress: one RTP/RTCP pair per track for every player,
//! and the routes of incoming RTCP (by the player's address) to its connection.

use howl_proto::player::{Track, UdpPorts};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The shared UDP sockets of the egress: one RTP/RTCP pair per track for every player, and
/// the routes of incoming RTCP (by the player's address) to its connection.
#[derive(Debug)]
pub struct PlayerUdp {
    video: [Arc<UdpSocket>; 2],
    audio: [Arc<UdpSocket>; 2],
    pub(super) video_ports: UdpPorts,
    pub(super) audio_ports: UdpPorts,
    pub(super) routes: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
}

impl PlayerUdp {
    /// Binds two port pairs on `ip` (RTP even, RTCP the next, as RFC 3550 recommends; any
    /// two free ports if no pair is found quickly).
    pub async fn bind(ip: IpAddr) -> std::io::Result<Arc<Self>> {
        let (vr, vc) = bind_pair(ip).await?;
        let (ar, ac) = bind_pair(ip).await?;
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port());
        Ok(Arc::new(Self {
            video_ports: UdpPorts {
                rtp: port(&vr)?,
                rtcp: port(&vc)?,
            },
            audio_ports: UdpPorts {
                rtp: port(&ar)?,
                rtcp: port(&ac)?,
            },
            video: [Arc::new(vr), Arc::new(vc)],
            audio: [Arc::new(ar), Arc::new(ac)],
            routes: Mutex::new(HashMap::new()),
        }))
    }

    pub(super) fn socket(&self, track: Track, rtcp: bool) -> &Arc<UdpSocket> {
        let pair = match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        };
        &pair[usize::from(rtcp)]
    }

    fn route(&self, from: SocketAddr, data: &[u8]) {
        let tx = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&from)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(data.to_vec());
        }
    }

    /// Receives on every socket until `stop`: RTCP goes to its player's connection; anything
    /// on the RTP ports (players' NAT punch packets) is read and dropped.
    pub fn spawn_receivers(self: &Arc<Self>, stop: CancellationToken) {
        for track in Track::ALL {
            for rtcp in [false, true] {
                let udp = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let sock = udp.socket(track, rtcp).clone();
                    let mut buf = vec![0u8; 2048];
                    loop {
                        tokio::select! {
                            r = sock.recv_from(&mut buf) => match r {
                                Ok((n, from)) if rtcp => udp.route(from, &buf[..n]),
                                Ok(_) => {}
                                // ICMP port-unreachable from earlier sends lands here.
                                Err(_) => continue,
                            },
                            () = stop.cancelled() => break,
                        }
                    }
                });
            }
        }
    }
}

async fn bind_pair(ip: IpAddr) -> std::io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..16 {
        let a = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let p = a.local_addr()?.port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(SocketAddr::new(ip, p + 1)).await {
            return Ok((a, b));
        }
    }
    let a = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let b = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    Ok((a, b))
}

/// Removes a player's RTCP route when its connection ends.
pub(super) struct RouteGuard {
    pub(super) udp: Arc<PlayerUdp>,
    pub(super) addrs: Vec<SocketAddr>,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.udp.routes.lock().unwrap_or_else(|e| e.into_inner());
        for a in &self.addrs {
            routes.remove(a);
        }
    }
}
