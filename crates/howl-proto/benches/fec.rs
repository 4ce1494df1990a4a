//! RS parity encode throughput (MB/s of data shards), nanors shapes from
//! `performance-anchors.md`: 1408-byte shards at 10+2, 50+10, 100+20, 200+40, and 1 KiB shards
//! at 20 % parity. Run: `cargo bench -p howl-proto --bench fec`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use howl_proto::fec::{Backend, ReedSolomon};

const SHAPES: [(usize, usize); 4] = [(10, 2), (50, 10), (100, 20), (200, 40)];

fn bench_encode(c: &mut Criterion) {
    for len in [1408usize, 1024] {
        let mut group = c.benchmark_group(format!("rs_encode_{len}"));
        for (k, m) in SHAPES {
            let rs = ReedSolomon::new(k, m).expect("valid shape");
            let data: Vec<Vec<u8>> = (0..k)
                .map(|i| (0..len).map(|b| (i * 131 + b * 7) as u8).collect())
                .collect();
            let mut parity = vec![vec![0u8; len]; m];
            group.throughput(Throughput::Bytes((k * len) as u64));
            let mut backends = vec![Backend::detect()];
            if len == 1408 {
                backends.extend([Backend::Ssse3, Backend::Scalar]);
            }
            for backend in backends {
                if !backend.is_available() {
                    continue;
                }
                group.bench_with_input(
                    BenchmarkId::new(format!("{backend:?}"), format!("{k}+{m}")),
                    &(),
                    |b, ()| {
                        b.iter(|| {
                            rs.encode_with(backend, black_box(&data), &mut parity)
                                .expect("shapes match");
                            black_box(&parity);
                        });
                    },
                );
            }
        }
        group.finish();
    }
}

fn bench_coder_build(c: &mut Criterion) {
    c.bench_function("rs_coder_build_200+40", |b| {
        b.iter(|| ReedSolomon::new(black_box(200), black_box(40)).expect("valid shape"));
    });
}

fn bench_reconstruct(c: &mut Criterion) {
    let (k, m, len) = (100usize, 20usize, 1408usize);
    let rs = ReedSolomon::new(k, m).expect("valid shape");
    let mut shards: Vec<Vec<u8>> = (0..k + m)
        .map(|i| (0..len).map(|b| (i * 131 + b * 7) as u8).collect())
        .collect();
    let mut present = vec![true; k + m];
    for x in (0..k).step_by(5) {
        present[x] = false;
    }
    let mut group = c.benchmark_group("rs_reconstruct_1408");
    group.throughput(Throughput::Bytes((k * len) as u64));
    group.bench_function("100+20_lose20", |b| {
        b.iter(|| {
            rs.reconstruct_data(black_box(&mut shards), &present)
                .expect("recoverable")
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
    targets = bench_encode, bench_coder_build, bench_reconstruct
}
criterion_main!(benches);
