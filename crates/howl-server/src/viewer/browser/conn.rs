//! One browser viewer's driver: the task that owns its `Rtc` and follows "mutate, then drain
//! until timeout" (str0m's run-loop contract) over four inputs: datagrams from the shared
//! port, the producer's feed, str0m's timer, and the end of the viewer.

use super::BrowserLink;
use super::udp::{Datagram, RouteGuard, WebRtcUdp};
use crate::viewer::ViewerStats;
use crate::viewer::feed::{Feed, FeedItem};
use howl_core::EndReason;
use howl_core::domain::Deadline;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use str0m::media::{MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often the published silence deadline is refreshed while datagrams arrive: often
/// enough that it never lags by more than this, rarely enough to cost nothing.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

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
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

enum Ev {
    Datagram(Datagram),
    Feed(FeedItem),
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
                Ev::Feed(FeedItem::Worker(_)) => {}
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
    fn input(&self, data: &[u8]) {
        let events = match super::input::decode(data) {
            Ok(e) => e,
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
