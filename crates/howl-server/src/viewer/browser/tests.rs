//! Offer/answer against str0m's own client side: honest codec negotiation and refusals,
//! and hostile offers that must not panic.

use super::*;
use proptest::prelude::*;
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
