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

/// The offer a receive-only browser page makes (video and audio) with the codecs of `config`.
fn recvonly_offer(config: RtcConfig) -> String {
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

/// A browser-like offer (receive-only video and audio) listing these H.264 formats.
fn offer_with(h264: &[(bool, u32)]) -> String {
    let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
    for (i, (mode1, plid)) in h264.iter().enumerate() {
        let pt = 96 + 2 * i as u8;
        config
            .codec_config()
            .add_h264(pt.into(), Some((pt + 1).into()), *mode1, *plid);
    }
    recvonly_offer(config)
}

/// The answer to `offer` for a producer that encodes `format`.
fn answer_for(offer: &str, format: &VideoFormat) -> Result<Negotiated, WhepError> {
    let parsed =
        SdpOffer::from_sdp_string(offer).map_err(|e| WhepError::BadOffer(e.to_string()))?;
    negotiate(parsed, offer, format, candidate(), origin())
}

fn answer(offer: &str) -> Result<Negotiated, WhepError> {
    let sps = SPS_CONSTRAINED_BASELINE.to_vec();
    answer_for(offer, &VideoFormat::H264 { sps })
}

/// A browser-like offer listing AV1 (and, if `h264`, constrained baseline H.264 too).
fn av1_offer(h264: bool) -> String {
    let mut config = RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false)
        .enable_av1(true);
    if h264 {
        config
            .codec_config()
            .add_h264(96.into(), Some(97.into()), true, 0x42e01f);
    }
    recvonly_offer(config)
}

fn answer_av1(offer: &str) -> Result<Negotiated, WhepError> {
    answer_for(offer, &VideoFormat::Av1)
}

#[test]
fn an_av1_lobby_answers_av1_to_an_offer_that_lists_it() {
    for with_h264 in [false, true] {
        let n = answer_av1(&av1_offer(with_h264)).unwrap();
        let a = n.answer;
        assert!(a.contains("AV1/90000"), "{a}");
        assert!(
            !a.contains("H264/90000"),
            "only what the lobby encodes: {a}"
        );
        assert!(n.audio.is_some());
    }
}

#[test]
fn codecs_that_differ_are_refused_naming_both_sides() {
    // An AV1 lobby, an H.264-only offer.
    let e = answer_av1(&offer_with(&[(true, 0x42e01f)])).err().unwrap();
    let WhepError::NoCommonCodec(why) = &e else {
        panic!("{e:?}");
    };
    assert!(why.contains("AV1") && why.contains("H264"), "{why}");
    // An H.264 lobby, an AV1-only offer.
    let e = answer(&av1_offer(false)).err().unwrap();
    let WhepError::NoCommonCodec(why) = &e else {
        panic!("{e:?}");
    };
    assert!(why.contains("42c01e") && why.contains("none"), "{why}");
}

#[test]
fn offered_video_codecs_leave_out_helpers_and_audio() {
    let offer = "m=video 9 UDP/TLS/RTP/SAVPF 96 97 45\r\na=rtpmap:96 H264/90000\r\n\
                 a=rtpmap:97 rtx/90000\r\na=rtpmap:45 AV1/90000\r\na=rtpmap:98 H264/90000\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
    assert_eq!(offered_video_codecs(offer), "H264, AV1");
    assert_eq!(offered_video_codecs(""), "none");
}

#[test]
fn ice_servers_hide_their_credential_and_check_their_urls() {
    let turn = IceServer {
        urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
        username: Some("me".into()),
        credential: Some("s3cret".into()),
    };
    turn.validate().unwrap();
    assert!(!format!("{turn:?}").contains("s3cret"));
    let stun = IceServer {
        urls: vec!["stun:stun.example.org".into()],
        username: None,
        credential: None,
    };
    stun.validate().unwrap();
    for (urls, user) in [
        (vec![], None),
        (vec!["turn:x".to_owned()], None),
        (vec!["http://x".to_owned()], None),
        (vec!["stun:".to_owned()], None),
        (vec!["stun:a b".to_owned()], None),
        (vec!["stun:a>".to_owned()], Some("u")),
    ] {
        let s = IceServer {
            urls: urls.clone(),
            username: user.map(Into::into),
            credential: user.map(Into::into),
        };
        assert!(s.validate().is_err(), "{urls:?}");
    }
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
    codec: Codec,
    worker: tokio::sync::watch::Sender<Option<Arc<crate::worker::Worker>>>,
    joined: Mutex<Vec<CancellationToken>>,
    labels: Mutex<Vec<String>>,
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
                codec: self.codec,
            })
        })
    }

    fn join(&self, join: BrowserJoin) -> BoxFuture<'_, Result<BrowserJoined, WhepError>> {
        Box::pin(async move {
            self.labels.lock().unwrap().push(join.label);
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

/// An AV1 temporal unit as encoders write it (low-overhead format, every OBU with its size):
/// a temporal delimiter, a sequence header, and a frame of filler.
fn av1_keyframe(seq: u64) -> Arc<howl_media::protocol::VideoFrame> {
    let mut data = vec![0x12, 0x00];
    data.extend_from_slice(&[0x0A, 0x06, 0x00, 0x00, 0x00, 0x04, 0x3C, 0xFF]);
    let frame = vec![0x10; 3000];
    data.push(0x32);
    // leb128 of 3000.
    data.extend_from_slice(&[0xB8, 0x17]);
    data.extend_from_slice(&frame);
    Arc::new(howl_media::protocol::VideoFrame {
        seq,
        frame_counter: seq as u32,
        pts_us: seq * 33_333,
        keyframe: true,
        data,
    })
}

/// A str0m client on its own UDP socket: offers to receive video (of `codec`) and audio,
/// connects to the answer's candidate, and returns once it has depacketized `frames` video
/// frames.
async fn client_receives(whep: &Whep, frames: usize) -> (SessionId, usize) {
    client_receives_codec(whep, frames, RtcCodec::H264).await
}

async fn client_receives_codec(whep: &Whep, frames: usize, codec: RtcCodec) -> (SessionId, usize) {
    use str0m::change::SdpAnswer;
    use str0m::net::{Protocol, Receive};
    use str0m::{Event, Input, Output};
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
    if codec == RtcCodec::Av1 {
        config = config.enable_av1(true);
    } else {
        config
            .codec_config()
            .add_h264(96.into(), Some(97.into()), true, 0x42e01f);
    }
    let mut rtc = config.build(origin());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let answer = whep
        .offer(
            1,
            Principal::Admin,
            &offer.to_sdp_string(),
            ViewerKind::Watch,
        )
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
                Output::Event(Event::MediaData(m)) if m.params.spec().codec == codec => {
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

/// A WHEP service on its own shared port, a fake engine whose lobby 1 encodes `codec`, and a
/// producer that sends a keyframe every 20 ms (every frame a keyframe keeps tests short).
struct Rig {
    whep: Whep,
    engine: Arc<FakeEngine>,
    udp: Arc<WebRtcUdp>,
    shutdown: CancellationToken,
    producer: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.producer.abort();
    }
}

async fn rig(codec: Codec, max_pending_offers: usize) -> Rig {
    let (worker, ends) = crate::worker::Worker::detached();
    let (tx, _) = tokio::sync::watch::channel(Some(Arc::new(worker)));
    let engine = Arc::new(FakeEngine {
        codec,
        worker: tx,
        joined: Mutex::default(),
        labels: Mutex::default(),
        ended: Mutex::default(),
    });
    let shutdown = CancellationToken::new();
    let udp = serving_udp(&shutdown).await;
    let whep = Whep::new(
        engine.clone(),
        udp.clone(),
        WhepSettings {
            max_pending_offers,
            ..WhepSettings::default()
        },
        shutdown.clone(),
    );
    let video = ends.video.clone();
    let producer = tokio::spawn(async move {
        for seq in 0.. {
            let frame = if codec == Codec::Av1 {
                av1_keyframe(seq)
            } else {
                keyframe(seq)
            };
            let _ = video.send(frame);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Rig {
        whep,
        engine,
        udp,
        shutdown,
        producer,
    }
}

/// Waits (bounded) until `cond` holds; the state it reads changes in other tasks.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Offers past the cap are refused at once, counted, and build nothing; a place comes back
/// when a pending viewer ends, and a malformed offer takes none.
#[tokio::test]
async fn offers_past_the_pending_cap_are_refused_at_once() {
    let r = rig(Codec::H264, 2).await;
    let sdp = offer_with(&[(true, 0x42e01f)]);
    let a = r
        .whep
        .offer(1, Principal::Admin, &sdp, ViewerKind::Watch)
        .await
        .unwrap();
    r.whep
        .offer(1, Principal::Admin, &sdp, ViewerKind::Watch)
        .await
        .unwrap();
    assert_eq!(r.whep.sample().pending_offers, 2);
    let e = r
        .whep
        .offer(1, Principal::Admin, &sdp, ViewerKind::Watch)
        .await
        .unwrap_err();
    let WhepError::Busy(why) = &e else {
        panic!("{e:?}");
    };
    assert!(why.contains("webrtc_max_pending_offers = 2"), "{why}");
    assert_eq!(
        r.engine.joined.lock().unwrap().len(),
        2,
        "the refused offer joined nothing"
    );
    assert_eq!(r.udp.routes().0, 2, "and registered no route");
    assert_eq!(
        r.whep.sample(),
        WhepSample {
            pending_offers: 2,
            max_pending_offers: 2,
            offers_refused_busy: 1
        }
    );
    // Malformed offers are refused as such, not as busy, and take no place.
    let e = r
        .whep
        .offer(1, Principal::Admin, "v=0", ViewerKind::Watch)
        .await
        .unwrap_err();
    assert!(matches!(e, WhepError::BadOffer(_)), "{e:?}");
    // The engine ends the first (as its connect deadline would): its place comes back.
    r.engine.joined.lock().unwrap()[(a.session.0 - 1) as usize].cancel();
    eventually("the ended offer's place", || {
        r.whep.sample().pending_offers == 1
    })
    .await;
    r.whep
        .offer(1, Principal::Admin, &sdp, ViewerKind::Watch)
        .await
        .unwrap();
    assert_eq!(r.whep.sample().offers_refused_busy, 1);
}

/// A flood of concurrent offers: exactly the cap is answered, the rest refused busy.
#[tokio::test]
async fn a_flood_of_offers_is_held_to_the_cap() {
    let r = rig(Codec::H264, 5).await;
    let sdp = offer_with(&[(true, 0x42e01f)]);
    let results = futures_util::future::join_all(
        (0..40).map(|_| r.whep.offer(1, Principal::Admin, &sdp, ViewerKind::Watch)),
    )
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(WhepError::Busy(_))))
        .count();
    assert_eq!((ok, busy), (5, 35));
    assert_eq!(r.engine.joined.lock().unwrap().len(), 5);
    assert_eq!(r.whep.sample().offers_refused_busy, 35);
}

/// A connected browser gives its place back: the cap bounds offers waiting to connect, not
/// viewers.
#[tokio::test]
async fn a_connected_browser_frees_its_pending_place() {
    let r = rig(Codec::H264, 1).await;
    tokio::time::timeout(Duration::from_secs(60), client_receives(&r.whep, 2))
        .await
        .expect("the client receives frames");
    assert_eq!(r.whep.sample().pending_offers, 0);
    tokio::time::timeout(Duration::from_secs(60), client_receives(&r.whep, 2))
        .await
        .expect("a second client is admitted");
}

/// An AV1 producer's temporal units reach a client that offered AV1, depacketized.
#[tokio::test]
async fn an_av1_lobby_sends_av1_to_a_client_that_offers_it() {
    let r = rig(Codec::Av1, 4).await;
    let (_, n) = tokio::time::timeout(
        Duration::from_secs(60),
        client_receives_codec(&r.whep, 5, RtcCodec::Av1),
    )
    .await
    .expect("the client receives AV1 frames");
    assert!(n >= 5);
}

/// A preview gets video only, and is listed as one.
#[tokio::test]
async fn a_preview_is_video_only() {
    let r = rig(Codec::H264, 4).await;
    let sdp = offer_with(&[(true, 0x42e01f)]);
    let a = r
        .whep
        .offer(1, Principal::Admin, &sdp, ViewerKind::Preview)
        .await
        .unwrap();
    assert!(a.sdp.contains("H264/90000"));
    r.whep
        .offer(1, Principal::Admin, &sdp, ViewerKind::Watch)
        .await
        .unwrap();
    assert_eq!(
        *r.engine.labels.lock().unwrap(),
        ["preview:admin", "browser:admin"]
    );
}

/// Two browsers on the one shared port each connect (ICE, DTLS) and receive the producer's
/// frames; when the engine ends one, its driver stops and its routes are gone.
#[tokio::test]
async fn two_clients_share_one_port_and_receive_the_producers_frames() {
    // The rig's defaults: silence 10 s, the default cap on pending offers.
    let r = rig(Codec::H264, DEFAULT_MAX_PENDING_OFFERS).await;
    let (whep, engine, udp) = (&r.whep, &r.engine, &r.udp);
    let run = async { tokio::join!(client_receives(whep, 5), client_receives(whep, 5)) };
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
}

/// An offer that parses but receives no video is refused before it takes a place (`/play`
/// relies on this to start nothing for it).
#[tokio::test]
async fn an_offer_without_video_is_refused_before_admission() {
    let r = rig(Codec::H264, 1).await;
    let e = r
        .whep
        .admit_offer("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
        .unwrap_err();
    let WhepError::BadOffer(why) = &e else {
        panic!("{e:?}");
    };
    assert!(why.contains("m=video"), "{why}");
    assert_eq!(r.whep.sample().pending_offers, 0);
    let admitted = r
        .whep
        .admit_offer(&offer_with(&[(true, 0x42e01f)]))
        .unwrap();
    assert_eq!(r.whep.sample().pending_offers, 1);
    drop(admitted);
    assert_eq!(
        r.whep.sample().pending_offers,
        0,
        "a dropped admission gives its place back"
    );
}

/// The `a=fmtp` parameters of payload type `pt` in `sdp`.
fn fmtp_of(sdp: &str, pt: &str) -> String {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=fmtp:"))
        .find_map(|l| l.strip_prefix(pt)?.strip_prefix(' '))
        .unwrap_or_default()
        .to_owned()
}

fn param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The answered H.264 format is one the offer lists: its payload type carries packetization
/// mode 1 and the producer's profile (constrained baseline) there, at a level no higher than
/// the offered one.
#[test]
fn the_answered_h264_format_is_one_the_offer_lists() {
    let offer = offer_with(&[
        (true, 0x42001f),
        (false, 0x42e01f),
        (true, 0x42e01f),
        (true, 0x64001f),
    ]);
    let a = answer(&offer).unwrap().answer;
    let pt = a
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .find_map(|l| l.strip_suffix(" H264/90000"))
        .expect("an H.264 format in the answer")
        .to_owned();
    let (ours, theirs) = (fmtp_of(&a, &pt), fmtp_of(&offer, &pt));
    assert_eq!(param(&ours, "packetization-mode"), Some("1"), "{ours}");
    assert_eq!(param(&theirs, "packetization-mode"), Some("1"), "{theirs}");
    let plid = |f: &str| u32::from_str_radix(param(f, "profile-level-id").unwrap_or(""), 16).ok();
    let (ours, theirs) = (plid(&ours).unwrap(), plid(&theirs).unwrap());
    // Constrained baseline on both sides (profile_idc 66 with constraint_set1), the answer's
    // level at most the offer's.
    for p in [ours, theirs] {
        assert_eq!(p >> 16, 0x42, "{p:06x}");
        assert_ne!(p & 0x4000, 0, "constraint_set1: {p:06x}");
    }
    assert!(ours & 0xff <= theirs & 0xff, "{ours:06x} vs {theirs:06x}");
}

/// The shared WebRTC UDP endpoint on a free loopback port, serving until `shutdown`.
pub(super) async fn serving_udp(shutdown: &CancellationToken) -> Arc<WebRtcUdp> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let udp = Arc::new(WebRtcUdp::new(sock, addr));
    tokio::spawn(udp.clone().serve(shutdown.clone()));
    udp
}
