//! The page's data channel against a real driver, through str0m's own client side: the
//! desktop's clipboard reaches a page that may control the desktop, a paste reaches the
//! worker, and a view-only page gets and gives nothing.

use super::*;
use crate::viewer::ViewerStats;
use howl_media::protocol::Message;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use str0m::channel::ChannelId;
use str0m::media::Direction;
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Output};

#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// One lobby (id 1) on a detached worker; every join gets `stats`.
#[derive(Debug)]
struct OneLobby {
    worker: tokio::sync::watch::Sender<Option<Arc<crate::worker::Worker>>>,
    stats: Arc<ViewerStats>,
    cancel: Mutex<Vec<CancellationToken>>,
}

impl BrowserEngine for OneLobby {
    fn lobby_stream(
        &self,
        _lobby: u64,
        _principal: Principal,
    ) -> BoxFuture<'_, Result<LobbyStream, WhepError>> {
        Box::pin(async move {
            Ok(LobbyStream {
                worker: self.worker.subscribe(),
                codec: Codec::H264,
            })
        })
    }

    fn join(&self, _join: BrowserJoin) -> BoxFuture<'_, Result<BrowserJoined, WhepError>> {
        Box::pin(async move {
            let cancel = CancellationToken::new();
            self.cancel.lock().unwrap().push(cancel.clone());
            Ok(BrowserJoined {
                session: SessionId(1),
                cancel,
                stats: self.stats.clone(),
            })
        })
    }

    fn end(&self, _lobby: u64, _session: SessionId, _reason: EndReason) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// A page: a str0m client with the `input` channel, on its own socket.
struct Page {
    rtc: Rtc,
    sock: tokio::net::UdpSocket,
    local: SocketAddr,
    input: ChannelId,
    open: bool,
    /// Clipboard texts the server sent, in order.
    clipboard: Vec<String>,
}

impl Page {
    async fn connect(whep: &Whep) -> Page {
        use str0m::change::SdpAnswer;
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
        config
            .codec_config()
            .add_h264(96.into(), Some(97.into()), true, 0x42e01f);
        let mut rtc = config.build(now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let input = api.add_channel("input".into());
        let (offer, pending) = api.apply().unwrap();
        let answer = whep
            .offer(
                1,
                Principal::Admin,
                &offer.to_sdp_string(),
                super::ViewerKind::Watch,
            )
            .await
            .unwrap();
        rtc.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer.sdp).unwrap())
            .unwrap();
        Page {
            rtc,
            sock,
            local,
            input,
            open: false,
            clipboard: Vec::new(),
        }
    }

    /// Drives the client until its next timeout or datagram.
    async fn step(&mut self) {
        let timeout = loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    self.sock.send_to(&t.contents, t.destination).await.unwrap();
                }
                Output::Event(Event::ChannelOpen(id, _)) if id == self.input => self.open = true,
                Output::Event(Event::ChannelData(d)) => {
                    let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
                    assert_eq!(v["k"], "clipboard", "{v}");
                    self.clipboard.push(v["text"].as_str().unwrap().to_owned());
                }
                Output::Event(_) => {}
            }
        };
        let mut buf = vec![0u8; 2048];
        tokio::select! {
            r = self.sock.recv_from(&mut buf) => {
                let (n, source) = r.unwrap();
                let recv = Receive::new(Protocol::Udp, source, self.local, &buf[..n]).unwrap();
                self.rtc.handle_input(Input::Receive(now(), recv)).unwrap();
            }
            () = tokio::time::sleep_until(timeout.into()) => {
                self.rtc.handle_input(Input::Timeout(now())).unwrap();
            }
        }
    }

    /// Steps until `done` holds (bounded by the test's timeout).
    async fn until(&mut self, mut done: impl FnMut(&Page) -> bool) {
        while !done(self) {
            self.step().await;
        }
    }

    fn send(&mut self, json: &str) {
        let mut ch = self.rtc.channel(self.input).expect("the channel is open");
        assert!(ch.write(false, json.as_bytes()).unwrap());
    }
}

#[tokio::test]
async fn the_clipboard_crosses_only_for_a_page_that_controls() {
    let (worker, mut ends) = crate::worker::Worker::detached();
    let worker = Arc::new(worker);
    // What an app of the desktop copied before the page came.
    worker
        .stats
        .clipboard
        .send_replace(Some("copied first".into()));
    let stats = Arc::new(ViewerStats::default());
    stats.input_allowed.store(true, Ordering::Relaxed);
    let (tx, _) = tokio::sync::watch::channel(Some(worker.clone()));
    let engine = Arc::new(OneLobby {
        worker: tx,
        stats: stats.clone(),
        cancel: Mutex::default(),
    });
    let shutdown = CancellationToken::new();
    let udp = super::tests::serving_udp(&shutdown).await;
    let whep = Whep::new(
        engine.clone(),
        udp,
        WhepSettings {
            silence: Duration::from_secs(10),
            clipboard: true,
            ..WhepSettings::default()
        },
        shutdown.clone(),
    );
    // The offer waits for the producer's SPS.
    let video = ends.video.clone();
    let producer = tokio::spawn(async move {
        for seq in 0.. {
            let _ = video.send(super::tests::keyframe(seq));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let run = async {
        let mut page = Page::connect(&whep).await;
        // The page starts with the desktop's clipboard.
        page.until(|p| p.open && !p.clipboard.is_empty()).await;
        // A copy in the desktop comes next.
        worker.stats.clipboard.send_replace(Some("copied é".into()));
        page.until(|p| p.clipboard.len() == 2).await;
        // A paste goes to the worker, on the input queue.
        page.send(r#"{"k":"clipboard","text":"pasted ü"}"#);
        let pasted = loop {
            tokio::select! {
                m = ends.input.recv() => break m,
                () = page.step() => {}
            }
        };
        assert_eq!(
            pasted,
            Some(Message::SetClipboard {
                text: "pasted ü".into()
            })
        );
        // View only: a paste is counted and dropped; the desktop's copies stay there.
        stats.input_allowed.store(false, Ordering::Relaxed);
        worker.stats.clipboard.send_replace(Some("secret".into()));
        page.send(r#"{"k":"clipboard","text":"view-only paste"}"#);
        page.until(|_| stats.input_dropped.load(Ordering::Relaxed) == 1)
            .await;
        assert!(ends.input.try_recv().is_err(), "nothing reached the worker");
        // Control again (no await in between: the driver sees both at once), a new copy.
        stats.input_allowed.store(true, Ordering::Relaxed);
        worker.stats.clipboard.send_replace(Some("visible".into()));
        page.until(|p| p.clipboard.len() == 3).await;
        page.clipboard.clone()
    };
    let seen = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the page and the worker exchange clipboards");
    assert_eq!(seen, ["copied first", "copied é", "visible"]);
    assert_eq!(worker.stats.clipboard_sets.load(Ordering::Relaxed), 1);
    for c in engine.cancel.lock().unwrap().iter() {
        c.cancel();
    }
    shutdown.cancel();
    producer.abort();
}
