//! How a viewer follows its producer: the one copy of "subscribe to the worker's fan-out,
//! follow the worker when it is replaced, and on lag drop to the next keyframe and ask for
//! one", shared by every viewer kind.
//!
//! The engine publishes the producer's current worker in a `watch` channel (`None` while it
//! starts or after it stopped). A [`Feed`] subscribes to that worker's bounded broadcast
//! fan-out (`worker::VIDEO_FANOUT_CAPACITY` frames, `AUDIO_FANOUT_CAPACITY` packets per
//! subscriber) and yields what the viewer should send:
//! - a new subscription (first worker, or a replacement) starts at a fresh keyframe: deltas
//!   before it are dropped and counted, and the worker is asked for one;
//! - a viewer that lagged behind the fan-out is told by the broadcast how many frames it lost;
//!   those are counted and it waits for the next keyframe alone (audio has no keyframes: a
//!   lagging viewer skips ahead and the player conceals the gap);
//! - the gauge of how far behind the producer the viewer is, in frames, is kept current.
//!
//! [`Feed::next`] is cancel-safe (every await is on a cancel-safe receiver and no item is
//! held across one), so drivers can use it as one branch of their `select!`.

use super::ViewerStats;
use crate::worker::Worker;
use howl_media::protocol::{AudioPacket, VideoFrame};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{broadcast, watch};

/// The producer's current worker, as the engine publishes it.
pub type WorkerWatch = watch::Receiver<Option<Arc<Worker>>>;

/// Which of the producer's tracks a viewer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracks {
    pub video: bool,
    pub audio: bool,
}

impl Tracks {
    pub const VIDEO: Tracks = Tracks {
        video: true,
        audio: false,
    };
    pub const AUDIO: Tracks = Tracks {
        video: false,
        audio: true,
    };
    pub const BOTH: Tracks = Tracks {
        video: true,
        audio: true,
    };
}

/// What the producer gave the viewer next.
#[derive(Debug)]
pub enum FeedItem {
    /// A video frame to send: a keyframe, or a delta after one this viewer was sent.
    Video(Arc<VideoFrame>),
    /// An audio packet to send.
    Audio(Arc<AudioPacket>),
    /// The producer now has this worker (already subscribed), or none while it restarts.
    /// Drivers whose packetizer depends on the worker (its Opus layout) rebuild it here.
    Worker(Option<Arc<Worker>>),
    /// The producer is gone for good (the engine dropped it): the viewer ends.
    Closed,
}

/// One viewer's subscription to its producer.
#[derive(Debug)]
pub struct Feed {
    worker_rx: WorkerWatch,
    worker: Option<Arc<Worker>>,
    tracks: Tracks,
    video: Option<broadcast::Receiver<Arc<VideoFrame>>>,
    audio: Option<broadcast::Receiver<Arc<AudioPacket>>>,
    need_keyframe: bool,
    stats: Arc<ViewerStats>,
}

impl Feed {
    /// Follows the producer behind `worker_rx`, subscribing at once if it has a worker.
    pub fn new(mut worker_rx: WorkerWatch, tracks: Tracks, stats: Arc<ViewerStats>) -> Self {
        let worker = worker_rx.borrow_and_update().clone();
        let mut feed = Self {
            worker_rx,
            worker: None,
            tracks,
            video: None,
            audio: None,
            need_keyframe: true,
            stats,
        };
        feed.subscribe(worker);
        feed
    }

    /// The worker this feed is subscribed to.
    pub fn worker(&self) -> Option<&Arc<Worker>> {
        self.worker.as_ref()
    }

    /// Drops deltas until the next keyframe and asks the worker for one (a player that
    /// resumes after a pause, a client that lost a frame).
    pub fn restart_at_keyframe(&mut self) {
        self.need_keyframe = true;
        if let Some(w) = &self.worker {
            w.request_keyframe();
        }
    }

    fn subscribe(&mut self, worker: Option<Arc<Worker>>) {
        self.video = None;
        self.audio = None;
        if let Some(w) = &worker {
            self.video = self.tracks.video.then(|| w.subscribe_video());
            self.audio = self.tracks.audio.then(|| w.subscribe_audio());
        }
        self.worker = worker;
        // A joiner starts at a fresh keyframe, never at a delta or an old frame.
        self.restart_at_keyframe();
    }

    /// Waits for what the viewer should do next. Cancel-safe.
    pub async fn next(&mut self) -> FeedItem {
        loop {
            tokio::select! {
                r = self.worker_rx.changed() => {
                    if r.is_err() {
                        return FeedItem::Closed;
                    }
                    let w = self.worker_rx.borrow_and_update().clone();
                    self.subscribe(w.clone());
                    return FeedItem::Worker(w);
                }
                r = recv(self.video.as_mut()) => match r {
                    Ok(frame) => {
                        if let Some(f) = self.on_frame(frame) {
                            return FeedItem::Video(f);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => self.lagged(n),
                    // The worker is gone; the engine publishes the next one (or none).
                    Err(broadcast::error::RecvError::Closed) => self.video = None,
                },
                r = recv(self.audio.as_mut()) => match r {
                    Ok(packet) => return FeedItem::Audio(packet),
                    // No keyframes in audio: skip ahead, the player conceals the gap.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => self.audio = None,
                },
            }
        }
    }

    fn lagged(&mut self, n: u64) {
        self.stats.frames_dropped.fetch_add(n, Ordering::Relaxed);
        self.stats
            .frames_dropped_lagged
            .fetch_add(n, Ordering::Relaxed);
        self.restart_at_keyframe();
    }

    /// The frame to send, or `None` when it is a delta the viewer cannot decode yet.
    fn on_frame(&mut self, frame: Arc<VideoFrame>) -> Option<Arc<VideoFrame>> {
        if let Some(rx) = &self.video {
            // How far behind the producer this viewer is, in frames (a live gauge).
            self.stats
                .video_queue_depth
                .store(rx.len() as u64, Ordering::Relaxed);
        }
        if let Some(w) = &self.worker {
            // The bytes of those frames, from the worker's running per-slot totals.
            self.stats.video_queue_bytes.store(
                w.stats.video_bytes.queued_after(frame.seq),
                Ordering::Relaxed,
            );
        }
        if self.need_keyframe && !frame.keyframe {
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            self.stats
                .frames_dropped_awaiting_keyframe
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.need_keyframe = false;
        Some(frame)
    }
}

async fn recv<T: Clone>(
    rx: Option<&mut broadcast::Receiver<T>>,
) -> Result<T, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::DetachedWorker;
    use howl_media::protocol::Message;

    fn frame(seq: u64, keyframe: bool) -> Arc<VideoFrame> {
        Arc::new(VideoFrame {
            seq,
            frame_counter: 0,
            pts_us: seq * 16_000,
            keyframe,
            data: vec![0, 0, 1, 0x65],
        })
    }

    fn keyframe_requests(ends: &mut DetachedWorker) -> usize {
        let mut n = 0;
        while let Ok(m) = ends.commands.try_recv() {
            if matches!(m, Message::RequestKeyframe) {
                n += 1;
            }
        }
        n
    }

    fn producer() -> (
        watch::Sender<Option<Arc<Worker>>>,
        Arc<Worker>,
        DetachedWorker,
    ) {
        let (worker, ends) = Worker::detached();
        let worker = Arc::new(worker);
        let (tx, _) = watch::channel(Some(worker.clone()));
        (tx, worker, ends)
    }

    async fn next_video(feed: &mut Feed) -> Arc<VideoFrame> {
        match feed.next().await {
            FeedItem::Video(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_joiner_starts_at_a_keyframe_it_asked_for() {
        let (tx, _w, mut ends) = producer();
        let stats = Arc::new(ViewerStats::default());
        let mut feed = Feed::new(tx.subscribe(), Tracks::VIDEO, stats.clone());
        assert_eq!(keyframe_requests(&mut ends), 1);
        ends.video.send(frame(1, false)).unwrap();
        ends.video.send(frame(2, true)).unwrap();
        ends.video.send(frame(3, false)).unwrap();
        assert_eq!(next_video(&mut feed).await.seq, 2);
        assert_eq!(next_video(&mut feed).await.seq, 3);
        assert_eq!(stats.frames_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(
            stats
                .frames_dropped_awaiting_keyframe
                .load(Ordering::Relaxed),
            1
        );
    }

    #[tokio::test]
    async fn a_lagging_viewer_counts_its_loss_and_waits_for_the_next_keyframe() {
        let (tx, _w, mut ends) = producer();
        let stats = Arc::new(ViewerStats::default());
        let mut feed = Feed::new(tx.subscribe(), Tracks::VIDEO, stats.clone());
        ends.video.send(frame(0, true)).unwrap();
        assert_eq!(next_video(&mut feed).await.seq, 0);
        let _ = keyframe_requests(&mut ends);
        // Overrun the bounded fan-out by 3 frames (the keyframe below is the last of them).
        let over = crate::worker::VIDEO_FANOUT_CAPACITY as u64 + 2;
        for seq in 1..=over {
            ends.video.send(frame(seq, false)).unwrap();
        }
        ends.video.send(frame(over + 1, true)).unwrap();
        assert_eq!(next_video(&mut feed).await.seq, over + 1);
        assert_eq!(stats.frames_dropped_lagged.load(Ordering::Relaxed), 3);
        // The deltas left in the queue after the lag were dropped too, waiting.
        assert_eq!(
            stats.frames_dropped.load(Ordering::Relaxed),
            over,
            "every frame before the keyframe was dropped and counted"
        );
        assert_eq!(keyframe_requests(&mut ends), 1);
    }

    #[tokio::test]
    async fn a_replaced_worker_is_followed_and_asked_for_a_keyframe() {
        let (tx, _old, _old_ends) = producer();
        let mut feed = Feed::new(tx.subscribe(), Tracks::VIDEO, Arc::default());
        let (new, mut new_ends) = Worker::detached();
        let new = Arc::new(new);
        tx.send_replace(Some(new.clone()));
        match feed.next().await {
            FeedItem::Worker(Some(w)) => assert!(Arc::ptr_eq(&w, &new)),
            other => panic!("expected the new worker, got {other:?}"),
        }
        assert_eq!(keyframe_requests(&mut new_ends), 1);
        new_ends.video.send(frame(7, true)).unwrap();
        assert_eq!(next_video(&mut feed).await.seq, 7);
        drop(tx);
        assert!(matches!(feed.next().await, FeedItem::Closed));
    }

    #[tokio::test]
    async fn audio_skips_ahead_without_waiting_for_anything() {
        let (tx, _w, ends) = producer();
        let mut feed = Feed::new(tx.subscribe(), Tracks::AUDIO, Arc::default());
        for seq in 0..(crate::worker::AUDIO_FANOUT_CAPACITY as u64 + 5) {
            ends.audio
                .send(Arc::new(AudioPacket {
                    seq,
                    pts_us: seq,
                    data: vec![1],
                }))
                .unwrap();
        }
        match feed.next().await {
            FeedItem::Audio(p) => assert_eq!(p.seq, 5),
            other => panic!("expected audio, got {other:?}"),
        }
    }
}
