//! Per-viewer video cost: packetize + RS FEC (+ AES-GCM) of one 100 KB access unit at
//! packetSize 1392, and the receiver's reassembly. Run: `cargo bench -p howl-proto --bench video`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use howl_proto::video::{
    DepacketizerConfig, FrameType, PacketizerConfig, VideoDepacketizer, VideoFrame, VideoPacketizer,
};

const AU_LEN: usize = 100_000;

fn frame(au: &[u8], index: u32) -> VideoFrame<'_> {
    VideoFrame {
        frame_index: index,
        rtp_timestamp: index * 1500,
        frame_type: FrameType::P,
        host_processing_latency: 0,
        ltr: false,
        access_unit: au,
    }
}

fn bench_packetize(c: &mut Criterion) {
    let au: Vec<u8> = (0..AU_LEN).map(|i| (i * 31 + 7) as u8).collect();
    let mut group = c.benchmark_group("video_packetize_100KB_1392");
    group.throughput(Throughput::Bytes(AU_LEN as u64));
    for (name, key) in [("fec20", None), ("fec20_aes_gcm", Some([7u8; 16]))] {
        let mut cfg = PacketizerConfig::new(1392);
        cfg.encryption_key = key;
        let mut pz = VideoPacketizer::new(&cfg).expect("valid config");
        let mut index = 1;
        group.bench_function(name, |b| {
            b.iter(|| {
                index += 1;
                let dgs = pz.packetize(&frame(black_box(&au), index)).expect("fits");
                black_box(dgs.as_bytes().len())
            });
        });
    }
    group.finish();

    // Receiver: reassemble the same frame with 10 % of the datagrams missing (FEC recovery).
    let mut group = c.benchmark_group("video_depacketize_100KB_1392");
    group.throughput(Throughput::Bytes(AU_LEN as u64));
    let mut pz = VideoPacketizer::new(&PacketizerConfig::new(1392)).expect("valid config");
    let frames: Vec<Vec<Vec<u8>>> = (1..=64u32)
        .map(|f| {
            let dgs = pz.packetize(&frame(&au, f)).expect("fits");
            dgs.iter()
                .enumerate()
                .filter(|(i, _)| i % 10 != 3)
                .map(|(_, d)| d.to_vec())
                .collect()
        })
        .collect();
    group.bench_function("recover_10pct_loss", |b| {
        let mut dp = VideoDepacketizer::new(&DepacketizerConfig::new(1392)).expect("valid config");
        let mut n = 0usize;
        b.iter(|| {
            // Frames are re-fed in a cycle; restart the receiver when wrapping back to frame 1.
            if n.is_multiple_of(frames.len()) {
                dp = VideoDepacketizer::new(&DepacketizerConfig::new(1392)).expect("valid config");
            }
            for dg in &frames[n % frames.len()] {
                dp.handle_datagram(dg).expect("valid datagram");
            }
            n += 1;
            while let Some(ev) = dp.poll_event() {
                black_box(ev);
            }
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = bench_packetize
}
criterion_main!(benches);
