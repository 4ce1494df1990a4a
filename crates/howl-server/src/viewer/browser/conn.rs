//! One browser viewer's driver: the task that owns its `Rtc` and follows "mutate, then drain
//! until timeout" (str0m's run-loop contract) over five inputs: datagrams from the shared
//! port, the producer's feed, the desktop's clipboard, str0m's timer, and the end of the
//! viewer.

use super::BrowserLink;
use super::input::{PageInput, PageMessage};
use super::udp::{Datagram, RouteGuard, WebRtcUdp};
use crate::viewer::ViewerStats;
use crate::viewer::feed::{Feed, FeedItem};
use howl_core::EndReason;
use howl_core::domain::Deadline;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use str0m::channel::ChannelId;
use str0m::media::{MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// How often the published silence deadline is refreshed while datagrams arrive: often
/// enough that it never lags by more than this, rarely enough to cost nothing.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// The largest message written to the page's data channel: the size every browser takes
/// (the SCTP default when the offer names none). A clipboard text whose JSON is longer is
/// not sent.
const MAX_CHANNEL_MESSAGE: usize = 64 * 1024;
/// The label of the page's ordered, reliable channel, which also carries the clipboard.
const INPUT_CHANNEL: &str = "input";

/// What the driver keeps of the page's side of the data channels.
#[derive(Debug, Default)]
pub(super) struct PageSide {
    /// Decodes the page's messages (and remembers its gamepads).
    input: PageInput,
    /// The page's reliable channel, once open: where the desktop's clipboard goes.
    channel: Option<ChannelId>,
    /// The current worker's clipboard (followed across worker replacements).
    clipboard: Option<watch::Receiver<Option<Arc<str>>>>,
}

pub(super) struct Driver {
    /// The viewer's id, which the worker keys its held keys and buttons by.
    pub session: u64,
    pub rtc: Rtc,
    pub video: (Mid, Pt),
    pub audio: Option<(Mid, Pt)>,
    pub feed: Feed,
    pub stats: Arc<ViewerStats>,
    pub link: Arc<BrowserLink>,
    pub silence: Duration,
    pub udp: Arc<WebRtcUdp>,
    pub datagrams: mpsc::Receiver<Datagram>,
    pub _route: RouteGuard,
    /// Its place under the pending-offer cap, given back once it connects (or it ends).
    pub pending: Option<super::PendingOffer>,
    /// Whether the clipboard crosses between the page and the desktop (`clipboard`).
    pub clipboard: bool,
    pub page: PageSide,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

enum Ev {
    Datagram(Datagram),
    Feed(FeedItem),
    /// The desktop's clipboard changed (or its watch ended: `false`).
    Clipboard(bool),
    Timeout,
    Ended,
}

impl Driver {
    /// Runs until the viewer ends; returns the reason to tell the engine, or `None` when the
    /// engine ended it (it knows why).
    pub async fn run(
        mut self,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Option<EndReason> {
        let mut connected = false;
        let mut published = Instant::now();
        self.page.clipboard = self.feed.worker().map(|w| w.clipboard());
        loop {
            let timeout = match self.drain(&mut connected) {
                Ok(t) => t,
                Err(reason) => return Some(reason),
            };
            let ev = tokio::select! {
                d = self.datagrams.recv() => match d {
                    Some(d) => Ev::Datagram(d),
                    None => Ev::Ended,
                },
                item = self.feed.next() => Ev::Feed(item),
                open = clipboard_changed(&mut self.page.clipboard) => Ev::Clipboard(open),
                () = tokio::time::sleep_until(timeout.into()) => Ev::Timeout,
                () = cancel.cancelled() => Ev::Ended,
                () = shutdown.cancelled() => Ev::Ended,
            };
            match ev {
                Ev::Ended => {
                    self.rtc.disconnect();
                    return None;
                }
                Ev::Timeout => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                Ev::Datagram(d) => {
                    let destination = self.udp.candidate();
                    let Ok(recv) = Receive::new(Protocol::Udp, d.source, destination, &d.data)
                    else {
                        continue;
                    };
                    let input = Input::Receive(d.at, recv);
                    if !self.rtc.accepts(&input) {
                        continue;
                    }
                    if let Err(e) = self.rtc.handle_input(input) {
                        tracing::debug!(error = %e, "browser datagram refused");
                        continue;
                    }
                    if connected && d.at >= published + PUBLISH_EVERY {
                        published = d.at;
                        self.link.publish(Some(Deadline {
                            at: d.at + self.silence,
                            reason: EndReason::BrowserGone,
                        }));
                    }
                }
                Ev::Feed(FeedItem::Closed) => return None,
                Ev::Feed(FeedItem::Worker(w)) => {
                    // A replacement worker has a new desktop, with a clipboard of its own.
                    self.page.clipboard = w.map(|w| w.clipboard());
                }
                Ev::Clipboard(false) => self.page.clipboard = None,
                Ev::Clipboard(true) => self.send_clipboard(),
                Ev::Feed(FeedItem::Video(frame)) => {
                    if !connected {
                        continue;
                    }
                    let (mid, pt) = self.video;
                    let Some(w) = self.rtc.writer(mid) else {
                        continue;
                    };
                    let rtp_time = MediaTime::from_90khz(frame.pts_us.saturating_mul(9) / 100);
                    let w = w.playout_delay(MediaTime::ZERO, MediaTime::ZERO);
                    match w.write(pt, Instant::now(), rtp_time, &frame.data[..]) {
                        Ok(()) => {
                            self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                            self.stats
                                .bytes_sent
                                .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "browser video write failed");
                            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ev::Feed(FeedItem::Audio(packet)) => {
                    let Some((mid, pt)) = self.audio else {
                        continue;
                    };
                    if !connected {
                        continue;
                    }
                    let Some(w) = self.rtc.writer(mid) else {
                        continue;
                    };
                    let rtp_time = MediaTime::new(
                        packet.pts_us.saturating_mul(48) / 1000,
                        str0m::media::Frequency::FORTY_EIGHT_KHZ,
                    );
                    if w.write(pt, Instant::now(), rtp_time, &packet.data[..])
                        .is_ok()
                    {
                        self.stats
                            .audio_packets_sent
                            .fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .bytes_sent
                            .fetch_add(packet.data.len() as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// One message from the page's input channels: decoded, then injected if the viewer may
    /// control the desktop (read on every message, so a permission change applies at once),
    /// else dropped and counted. A message that does not decode is counted and dropped.
    fn input(&mut self, data: &[u8]) {
        let events = match self.page.input.decode(data) {
            Ok(PageMessage::Input(e)) => e,
            Ok(PageMessage::Clipboard(text)) => return self.paste(text),
            Err(e) => {
                self.stats.control_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "browser input dropped");
                return;
            }
        };
        for ev in events {
            self.stats.input_events.fetch_add(1, Ordering::Relaxed);
            if !self.stats.input_allowed.load(Ordering::Relaxed) {
                self.stats.input_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(w) = self.feed.worker() {
                w.input(self.session, ev);
            }
        }
    }

    /// The page pasted text: the desktop's clipboard becomes it, if the viewer may control
    /// the desktop and the clipboard is on; else it is dropped and counted like input.
    fn paste(&self, text: String) {
        self.stats.input_events.fetch_add(1, Ordering::Relaxed);
        if !self.clipboard || !self.stats.input_allowed.load(Ordering::Relaxed) {
            self.stats.input_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(clipboard = self.clipboard, "browser paste dropped");
            return;
        }
        if let Some(w) = self.feed.worker() {
            w.set_clipboard(text);
        }
    }

    /// Sends the desktop's current clipboard to the page, if the viewer may control the
    /// desktop, the clipboard is on and the page's channel is open.
    fn send_clipboard(&mut self) {
        let Some(text) = self
            .page
            .clipboard
            .as_mut()
            .and_then(|rx| rx.borrow_and_update().clone())
        else {
            return;
        };
        if !self.clipboard || !self.stats.input_allowed.load(Ordering::Relaxed) {
            return;
        }
        let Some(id) = self.page.channel else {
            // Sent when the channel opens.
            return;
        };
        let msg = super::input::clipboard_message(&text);
        if msg.len() > MAX_CHANNEL_MESSAGE {
            tracing::info!(bytes = msg.len(), "desktop clipboard too long for the page");
            return;
        }
        match self.rtc.channel(id).map(|mut c| c.write(false, &msg)) {
            Some(Ok(true)) => tracing::debug!(bytes = text.len(), "desktop clipboard sent"),
            // A full SCTP buffer or a closed channel: this copy is lost, the next is sent.
            other => tracing::debug!(?other, "desktop clipboard not sent"),
        }
    }

    /// Drains the `Rtc` until its next timeout: datagrams out, events handled. An `Err` is
    /// the viewer's end.
    fn drain(&mut self, connected: &mut bool) -> Result<Instant, EndReason> {
        loop {
            if !self.rtc.is_alive() {
                // The browser closed the DTLS association (its page closed the connection).
                return Err(EndReason::BrowserLeft);
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    return Err(EndReason::ClientMisbehaved {
                        detail: e.to_string(),
                    });
                }
            };
            match out {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
                    self.udp.send(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    *connected = true;
                    self.pending = None;
                    let now = Instant::now();
                    self.link.publish(Some(Deadline {
                        at: now + self.silence,
                        reason: EndReason::BrowserGone,
                    }));
                    // The first frame it gets is a fresh keyframe.
                    self.feed.restart_at_keyframe();
                    tracing::info!("browser connected");
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    return Err(EndReason::BrowserGone);
                }
                Output::Event(Event::ChannelOpen(id, label)) if label == INPUT_CHANNEL => {
                    self.page.channel = Some(id);
                    // The page starts with what the desktop holds now.
                    if let Some(rx) = self.page.clipboard.as_mut() {
                        rx.mark_changed();
                    }
                }
                Output::Event(Event::ChannelClose(id)) if self.page.channel == Some(id) => {
                    self.page.channel = None;
                }
                Output::Event(Event::ChannelData(d)) => self.input(&d.data),
                Output::Event(Event::KeyframeRequest(_)) => {
                    // PLI or FIR: the browser cannot decode until the next keyframe.
                    self.feed.restart_at_keyframe();
                }
                Output::Event(_) => {}
            }
        }
    }
}

/// Waits for the desktop's clipboard to change: `true`, or `false` when its worker is gone.
/// Pending forever without a worker. Cancel-safe (`watch::Receiver::changed` is).
async fn clipboard_changed(rx: &mut Option<watch::Receiver<Option<Arc<str>>>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}
