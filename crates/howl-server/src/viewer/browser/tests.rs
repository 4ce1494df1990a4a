//! Offer/answer against str0m's own client side: honest codec negotiation and refusals,
//! and hostile offers that must not panic.

use super::*;
use proptest::prelude::*;
use std::sync::Mutex;
use str0m::media::Direction;

/// The start of an SPS as x264's ultrafast preset writes it: constrained baseline, level 3.0.
const SPS_CONSTRAINED_BASELINE: [u8; 6] = [0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02];

#[allow(clippy::disallowed_methods)]
fn origin() -> Instant {
    Instant::now()
}

fn candidate() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8555))
}

/// A browser-like offer (receive-only video and audio) listing these H.264 formats.
fn offer_with(h264: &[(bool, u32)]) -> String {
    let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
    for (i, (mode1, plid)) in h264.iter().enumerate() {
        let pt = 96 + 2 * i as u8;
        config
            .codec_config()
            .add_h264(pt.into(), Some((pt + 1).into()), *mode1, *plid);
    }
    let mut client = config.build(origin());
    client.add_local_candidate(
        Candidate::host(SocketAddr::from(([127, 0, 0, 1], 40000)), "udp").unwrap(),
    );
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = api.apply().unwrap();
    offer.to_sdp_string()
}

fn answer(offer: &str) -> Result<Negotiated, WhepError> {
    let parsed =
        SdpOffer::from_sdp_string(offer).map_err(|e| WhepError::BadOffer(e.to_string()))?;
    negotiate(
        parsed,
        offer,
        &SPS_CONSTRAINED_BASELINE,
        candidate(),
        origin(),
    )
}

#[test]
fn the_profile_comes_from_the_sps() {
    assert_eq!(profile_level_id(&SPS_CONSTRAINED_BASELINE), Some(0x42C01E));
    assert_eq!(profile_level_id(&[0x67, 0x42]), None);
}

#[test]
fn a_chromium_like_offer_gets_the_producers_profile_and_opus() {
    // What Chromium lists: baseline and constrained baseline in both modes, main, high.
    let offer = offer_with(&[
        (true, 0x42001f),
        (false, 0x42001f),
        (true, 0x42e01f),
        (false, 0x42e01f),
        (true, 0x4d001f),
        (true, 0x64001f),
    ]);
    let n = answer(&offer).unwrap();
    assert!(n.audio.is_some(), "Opus negotiated");
    let a = n.answer;
    assert!(a.contains("a=ice-lite"), "{a}");
    assert!(a.contains(&format!("a=ice-ufrag:{}", n.ufrag)), "{a}");
    assert!(
        a.contains("127.0.0.1 8555"),
        "the shared port is the candidate: {a}"
    );
    let h264: Vec<&str> = a.lines().filter(|l| l.contains("H264/90000")).collect();
    assert_eq!(h264.len(), 1, "one H.264 format: {a}");
    assert!(a.contains("packetization-mode=1"), "{a}");
    assert!(
        !a.contains("profile-level-id=64"),
        "no High in the answer: {a}"
    );
    assert!(
        !a.contains("profile-level-id=4d"),
        "no Main in the answer: {a}"
    );
}

#[test]
fn an_offer_without_the_producers_profile_is_refused_with_the_reason() {
    for formats in [
        vec![(true, 0x64001f)],
        // Constrained baseline, but only in packetization mode 0.
        vec![(false, 0x42e01f)],
    ] {
        let e = answer(&offer_with(&formats)).err().unwrap();
        let WhepError::NoCommonCodec(why) = &e else {
            panic!("{e:?}");
        };
        assert!(
            why.contains("42c01e"),
            "names what the lobby encodes: {why}"
        );
        assert!(why.contains("packetization-mode 1"), "{why}");
    }
}

#[test]
fn malformed_offers_are_refused_before_anything_is_built() {
    for bad in [
        "",
        "hello",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
        "v=0\r\nm=video",
    ] {
        assert!(
            SdpOffer::from_sdp_string(bad).is_err() || answer(bad).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn offered_formats_are_listed_for_the_reason() {
    let offer = "a=rtpmap:96 H264/90000\r\na=fmtp:96 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_eq!(
        offered_h264(offer),
        "96 (profile-level-id 64001f, packetization-mode 1)"
    );
    assert_eq!(offered_h264("a=rtpmap:111 opus/48000/2"), "none");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Random text through the signalling path (str0m's parser, then the negotiation and
    /// our own scan of the offer) never panics.
    #[test]
    fn random_offers_never_panic(s in "\\PC{0,400}") {
        let _ = answer(&s);
        let _ = offered_h264(&s);
    }

    /// A valid offer with random lines dropped, duplicated or garbled never panics.
    #[test]
    fn mutated_offers_never_panic(
        edits in proptest::collection::vec((any::<usize>(), 0u8..3, "\\PC{0,20}"), 1..6),
    ) {
        let offer = offer_with(&[(true, 0x42e01f)]);
        let mut lines: Vec<String> = offer.lines().map(str::to_owned).collect();
        for (at, op, text) in edits {
            let i = at % lines.len().max(1);
            match op {
                0 if !lines.is_empty() => { lines.remove(i); }
                1 if !lines.is_empty() => { let l = lines[i].clone(); lines.insert(i, l); }
                _ => lines.insert(i.min(lines.len()), text),
            }
        }
        let _ = answer(&(lines.join("\r\n") + "\r\n"));
    }
}

/// The engine side of the driver, without an engine: one lobby (id 1) fed by a detached
/// worker, joins numbered from 1, ends recorded.
#[derive(Debug)]
struct FakeEngine {
    worker: tokio::sync::watch::Sender<Option<Arc<crate::worker::Worker>>>,
    joined: Mutex<Vec<CancellationToken>>,
    ended: Mutex<Vec<(SessionId, EndReason)>>,
}

impl BrowserEngine for FakeEngine {
    fn lobby_stream(
        &self,
        lobby: u64,
        _principal: Principal,
    ) -> BoxFuture<'_, Result<LobbyStream, WhepError>> {
        Box::pin(async move {
            if lobby != 1 {
                return Err(WhepError::NotFound(format!("no lobby with id {lobby}")));
            }
            Ok(LobbyStream {
                worker: self.worker.subscribe(),
                codec: Codec::H264,
            })
        })
    }

    fn join(&self, _join: BrowserJoin) -> BoxFuture<'_, Result<BrowserJoined, WhepError>> {
        Box::pin(async move {
            let mut j = self.joined.lock().unwrap();
            let cancel = CancellationToken::new();
            j.push(cancel.clone());
            Ok(BrowserJoined {
                session: SessionId(j.len() as u64),
                cancel,
                stats: Arc::default(),
            })
        })
    }

    fn end(&self, _lobby: u64, session: SessionId, reason: EndReason) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            self.ended.lock().unwrap().push((session, reason));
            true
        })
    }
}

/// A keyframe access unit: SPS (constrained baseline 3.0), PPS, an IDR slice.
pub(super) fn keyframe(seq: u64) -> Arc<howl_media::protocol::VideoFrame> {
    let mut data = vec![0, 0, 0, 1];
    data.extend_from_slice(&SPS_CONSTRAINED_BASELINE);
    data.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80]);
    data.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
    data.extend(std::iter::repeat_n(0x5A, 3000));
    Arc::new(howl_media::protocol::VideoFrame {
        seq,
        frame_counter: seq as u32,
        pts_us: seq * 33_333,
        keyframe: true,
        data,
    })
}

/// A str0m client on its own UDP socket: offers to receive video and audio, connects to the
/// answer's candidate, and returns once it has depacketized `frames` video frames.
async fn client_receives(whep: &Whep, frames: usize) -> (SessionId, usize) {
    use str0m::change::SdpAnswer;
    use str0m::net::{Protocol, Receive};
    use str0m::{Event, Input, Output};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
    config
        .codec_config()
        .add_h264(96.into(), Some(97.into()), true, 0x42e01f);
    let mut rtc = config.build(origin());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let answer = whep
        .offer(1, Principal::Admin, &offer.to_sdp_string())
        .await
        .unwrap();
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer.sdp).unwrap())
        .unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 2048];
    loop {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    sock.send_to(&t.contents, t.destination).await.unwrap();
                }
                Output::Event(Event::MediaData(m)) if m.params.spec().codec == RtcCodec::H264 => {
                    got += 1;
                    if got >= frames {
                        return (answer.session, got);
                    }
                }
                Output::Event(_) => {}
            }
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, source) = r.unwrap();
                let recv = Receive::new(Protocol::Udp, source, local, &buf[..n]).unwrap();
                rtc.handle_input(Input::Receive(origin(), recv)).unwrap();
            }
            () = tokio::time::sleep_until(timeout.into()) => {
                rtc.handle_input(Input::Timeout(origin())).unwrap();
            }
        }
    }
}

/// Two browsers on the one shared port each connect (ICE, DTLS) and receive the producer's
/// frames; when the engine ends one, its driver stops and its routes are gone.
#[tokio::test]
async fn two_clients_share_one_port_and_receive_the_producers_frames() {
    let (worker, ends) = crate::worker::Worker::detached();
    let (tx, _) = tokio::sync::watch::channel(Some(Arc::new(worker)));
    let engine = Arc::new(FakeEngine {
        worker: tx,
        joined: Mutex::default(),
        ended: Mutex::default(),
    });
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let udp = Arc::new(WebRtcUdp::new(sock, addr));
    let shutdown = CancellationToken::new();
    tokio::spawn(udp.clone().serve(shutdown.clone()));
    let whep = Whep::new(
        engine.clone(),
        udp.clone(),
        WhepSettings {
            silence: Duration::from_secs(10),
            clipboard: true,
        },
        shutdown.clone(),
    );
    // The producer: a keyframe every 20 ms (every frame a keyframe keeps the test short).
    let video = ends.video.clone();
    let producer = tokio::spawn(async move {
        for seq in 0.. {
            let _ = video.send(keyframe(seq));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let run = async { tokio::join!(client_receives(&whep, 5), client_receives(&whep, 5)) };
    let ((s1, n1), (s2, n2)) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("both clients receive frames");
    assert!(n1 >= 5 && n2 >= 5);
    assert_ne!(s1, s2);
    // The engine ends the first viewer: its driver stops (quietly: the engine knows why)
    // and drops its routes.
    engine.joined.lock().unwrap()[0].cancel();
    tokio::time::timeout(Duration::from_secs(10), async {
        while udp.routes().0 != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the ended viewer's route goes away");
    assert!(engine.ended.lock().unwrap().is_empty());
    shutdown.cancel();
    producer.abort();
}
