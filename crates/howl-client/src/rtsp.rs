//! I/O for the RTSP handshake: one TCP connection per request, read until the host closes,
//! as moonlight-common-c does. The handshake logic is howl-proto's
//! [`MoonlightClient`](howl_proto::rtsp::MoonlightClient).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use howl_proto::rtsp::{Method, Request};
use howl_proto::sdp::{DescribeInfo, EncryptionFlags, StreamConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ClientError;

/// Deadline of one RTSP request (connect, send, read until close). The client's receive
/// timeout is 15 s; ANNOUNCE may start an encoder on the host.
pub const RTSP_REQUEST_DEADLINE: Duration = Duration::from_secs(15);
/// Largest response accepted (moonlight-common-c: 1 MiB).
pub const MAX_RTSP_RESPONSE: usize = 1024 * 1024;
/// `encryptionEnabled` bit for the control stream (v2 nonces).
const CONTROL_V2: EncryptionFlags = EncryptionFlags::CONTROL_V2;

/// Splits `sessionUrl0` (`rtsp://host:port`, IPv6 in brackets) into host and port. The host
/// part may be absent from the result if it is not an IP literal.
pub fn parse_session_url(url: &str) -> Result<(Option<IpAddr>, u16), ClientError> {
    let bad = || ClientError::BadSessionUrl(url.chars().take(200).collect());
    let rest = url
        .strip_prefix("rtsp://")
        .or_else(|| url.strip_prefix("rtspenc://"))
        .ok_or_else(bad)?;
    if url.starts_with("rtspenc://") {
        // Encrypted RTSP is not implemented by howl-proto's client (nor by howl).
        return Err(bad());
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.parse().ok(), port))
}

/// What the client enables, like moonlight-common-c: what the host supports and we want, plus
/// whatever the host requests; control v2 whenever it is supported.
pub fn negotiate_encryption(describe: &DescribeInfo, wanted: EncryptionFlags) -> EncryptionFlags {
    let supported = describe
        .encryption_supported
        .unwrap_or(EncryptionFlags::NONE);
    let requested = describe
        .encryption_requested
        .unwrap_or(EncryptionFlags::NONE);
    let mut enabled = EncryptionFlags(supported.0 & wanted.0).union(requested);
    if supported.contains(CONTROL_V2) {
        enabled = enabled.union(CONTROL_V2);
    }
    EncryptionFlags(enabled.0 & EncryptionFlags::ALL.0)
}

/// Replaces the ANNOUNCE body (and its `Content-length`) with `config`'s. Needed because the
/// encryption bits are only known after DESCRIBE while `MoonlightClient` fixes its config at
/// construction.
pub fn patch_announce(req: &mut Request, config: &StreamConfig, host_ip: IpAddr, video_port: u16) {
    if req.method != Method::Announce {
        return;
    }
    let body = config.to_announce(host_ip, video_port);
    req.headers.set("Content-length", body.len().to_string());
    req.body = body;
}

/// Sends one request on a fresh connection and returns everything read until the host closed
/// it.
pub async fn transact(peer: SocketAddr, req: &Request) -> Result<Vec<u8>, ClientError> {
    let what = "RTSP request";
    let fut = async {
        let io = |source| ClientError::Io { what, peer, source };
        let mut stream = TcpStream::connect(peer).await.map_err(io)?;
        let _ = stream.set_nodelay(true);
        stream.write_all(&req.to_bytes()).await.map_err(io)?;
        let mut out = Vec::with_capacity(1024);
        let mut limited = (&mut stream).take(MAX_RTSP_RESPONSE as u64 + 1);
        match limited.read_to_end(&mut out).await {
            Ok(_) => {}
            // A reset after the full response (abortive close) still leaves a usable reply.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => {}
            Err(e) => return Err(io(e)),
        }
        if out.len() > MAX_RTSP_RESPONSE {
            return Err(ClientError::Http {
                peer,
                reason: "RTSP response larger than 1 MiB".into(),
            });
        }
        Ok(out)
    };
    tokio::time::timeout(RTSP_REQUEST_DEADLINE, fut)
        .await
        .map_err(|_| ClientError::Timeout {
            what,
            peer,
            after: RTSP_REQUEST_DEADLINE,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use howl_proto::rtsp::{MoonlightClient, Response, StatusCode, StreamKind};
    use std::net::Ipv4Addr;

    #[test]
    fn session_urls() {
        assert_eq!(
            parse_session_url("rtsp://192.168.1.20:48010").unwrap(),
            (Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))), 48010)
        );
        assert_eq!(
            parse_session_url("rtsp://[::1]:5000").unwrap(),
            (Some("::1".parse().unwrap()), 5000)
        );
        assert_eq!(parse_session_url("rtsp://host:1").unwrap(), (None, 1));
        for bad in [
            "http://a:1",
            "rtsp://a",
            "rtsp://a:x",
            "rtspenc://1.2.3.4:1",
            "",
        ] {
            assert!(parse_session_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encryption_follows_the_host_offer() {
        let info = |body: &str| DescribeInfo::parse(body.as_bytes());
        let sunshine =
            info("a=x-ss-general.encryptionSupported:7\na=x-ss-general.encryptionRequested:1\n");
        assert_eq!(
            negotiate_encryption(&sunshine, EncryptionFlags::ALL),
            EncryptionFlags::ALL
        );
        assert_eq!(
            negotiate_encryption(&sunshine, EncryptionFlags::NONE),
            EncryptionFlags::CONTROL_V2
        );
        let wolf = info("a=x-ss-general.featureFlags: 3\n");
        assert_eq!(
            negotiate_encryption(&wolf, EncryptionFlags::ALL),
            EncryptionFlags::NONE
        );
        let mandatory =
            info("a=x-ss-general.encryptionSupported:7\na=x-ss-general.encryptionRequested:7\n");
        assert_eq!(
            negotiate_encryption(&mandatory, EncryptionFlags::NONE),
            EncryptionFlags::ALL
        );
    }

    /// Drives the whole request sequence against canned host answers and checks what the
    /// client sends, including the patched ANNOUNCE.
    #[test]
    fn request_sequence_and_announce_patch() {
        let cfg = crate::session::LaunchOptions::default().stream_config(EncryptionFlags::NONE);
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut c = MoonlightClient::new("rtsp://0.0.0.0:48010", "0.0.0.0", host, cfg.clone());
        let mut methods = Vec::new();
        while let Some(mut req) = c.next_request() {
            methods.push(format!("{} {}", req.method, req.uri));
            assert_eq!(req.headers.get("X-GS-ClientVersion"), Some("14"));
            let mut resp = Response::for_request(&req, StatusCode::OK);
            match req.method {
                Method::Describe => {
                    resp = resp.with_body(
                        "a=x-ss-general.encryptionSupported:7\na=x-ss-general.encryptionRequested:1\n",
                    );
                }
                Method::Setup => {
                    let kind = StreamKind::from_uri(&req.uri).unwrap();
                    resp = resp
                        .with_header("Session", "DEADBEEFCAFE;timeout = 90")
                        .with_header("Transport", format!("server_port={}", 40000 + kind as u16));
                    resp = match kind {
                        StreamKind::Control => resp.with_header("X-SS-Connect-Data", "2882400001"),
                        _ => resp.with_header("X-SS-Ping-Payload", "9C0F2A61D3B4E587"),
                    };
                }
                Method::Announce => {
                    let enc = negotiate_encryption(c.describe().unwrap(), EncryptionFlags::ALL);
                    let opts = crate::session::LaunchOptions::default();
                    let fin = opts.stream_config(enc);
                    patch_announce(&mut req, &fin, host, c.ports().video);
                    let parsed = StreamConfig::parse_announce(&req.body).unwrap();
                    assert_eq!(parsed, fin);
                    assert_eq!(parsed.encryption(), EncryptionFlags::ALL);
                    // 1392 announced as 1392 − 32 with video encryption.
                    assert_eq!(parsed.packet_size, 1360);
                    assert_eq!(
                        req.headers.get("Content-length"),
                        Some(req.body.len().to_string().as_str())
                    );
                    assert_eq!(req.headers.get("Session"), Some("DEADBEEFCAFE"));
                }
                _ => {}
            }
            c.handle_response_bytes(&resp.to_bytes()).unwrap();
        }
        assert!(c.is_complete());
        assert_eq!(
            methods,
            [
                "OPTIONS rtsp://0.0.0.0:48010",
                "DESCRIBE rtsp://0.0.0.0:48010",
                "SETUP streamid=audio/0/0",
                "SETUP streamid=video/0/0",
                "SETUP streamid=control/13/0",
                "ANNOUNCE streamid=control/13/0",
                "PLAY /",
            ]
        );
        assert_eq!(c.connect_data(), 2_882_400_001);
        assert_eq!(
            c.ping_payload(StreamKind::Video).unwrap().as_str(),
            "9C0F2A61D3B4E587"
        );
    }
}
