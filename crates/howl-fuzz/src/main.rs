//! `howl-fuzz [COUNT] [--only NAME] [--seed N]`: feeds at least COUNT generated inputs
//! (default 1,000,000) through each network parser of howl and fails if any panics.
//!
//! Coverage-guided fuzzing (cargo-fuzz) needs a nightly toolchain, which this project does not
//! use; this is the stable-Rust stand-in (docs/ARCHITECTURE.md, "Fuzzing"). Each input is,
//! with equal odds, random bytes or a valid seed message (built with the same crate's
//! encoders, so seeds follow the code) changed by 1 to 8 mutations: bit flips, interesting
//! bytes (0, 0x7f, 0x80, 0xff), inserted, deleted or duplicated ranges, truncation, splices of
//! two seeds, and for text protocols numbers swapped for extremes. Stateful parsers (stream
//! decoders, depacketizers) keep their state across a run of inputs and are re-created every
//! [`STATE_RUN`] inputs, so sequences reach the reordering and reassembly paths too.
//!
//! A panic is caught, counted and its input written to `fuzz-crash-<target>-<n>.hex` in the
//! current directory; the exit status is then 1. The generator is a fixed-seed SplitMix64, so
//! a run is reproducible (`--seed` picks another).

mod inputs;
mod targets;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::Instant;

/// Stateful targets start over after this many inputs.
pub const STATE_RUN: u64 = 1000;

fn main() -> ExitCode {
    let mut count: u64 = 1_000_000;
    let mut only: Option<String> = None;
    let mut seed: u64 = 0x686f_776c_6675_7a7a;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--only" => only = args.next(),
            "--seed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seed = s,
                None => return usage("--seed needs a number"),
            },
            "-h" | "--help" => return usage(""),
            n => match n.replace(['_', ','], "").parse() {
                Ok(c) => count = c,
                Err(_) => return usage(&format!("unknown argument {n:?}")),
            },
        }
    }
    // Panics are expected findings here: report them once each, not with the default hook's
    // backtrace noise per input.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
    }));
    let mut total_panics = 0u64;
    let started = Instant::now();
    println!(
        "{:<22} {:>12} {:>9} {:>10} {:>7}",
        "parser", "inputs", "seconds", "inputs/s", "panics"
    );
    for target in targets::all() {
        if only.as_deref().is_some_and(|o| o != target.name) {
            continue;
        }
        let mut rng = inputs::Rng::new(seed ^ inputs::hash(target.name));
        let seeds = (target.seeds)();
        let mut state = (target.fresh)();
        let t0 = Instant::now();
        let mut panics = 0u64;
        let mut input = Vec::new();
        for i in 0..count {
            if i % STATE_RUN == 0 && i > 0 {
                state = (target.fresh)();
            }
            inputs::next_input(&mut rng, &seeds, target.text, target.max_len, &mut input);
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&mut state, &input)));
            if r.is_err() {
                panics += 1;
                let path = format!("fuzz-crash-{}-{panics}.hex", target.name);
                let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                let _ = std::fs::write(&path, hex + "\n");
                eprintln!("{}: input {i} panicked; saved to {path}", target.name);
                state = (target.fresh)();
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{:<22} {:>12} {:>9.2} {:>10.0} {:>7}",
            target.name,
            count,
            secs,
            count as f64 / secs.max(1e-9),
            panics
        );
        total_panics += panics;
    }
    println!(
        "total: {:.1} s, {} panic(s)",
        started.elapsed().as_secs_f64(),
        total_panics
    );
    if total_panics == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(err: &str) -> ExitCode {
    if !err.is_empty() {
        eprintln!("howl-fuzz: {err}");
    }
    eprintln!("usage: howl-fuzz [COUNT] [--only PARSER] [--seed N]");
    eprintln!(
        "parsers: {}",
        targets::all()
            .iter()
            .map(|t| t.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if err.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

#[cfg(test)]
mod tests {
    /// A smoke run in the ordinary test suite (the million-input runs are scripts/fuzz.sh's):
    /// every target gets inputs from every generator path and none panics.
    #[test]
    fn every_parser_survives_a_short_run() {
        for target in super::targets::all() {
            let seeds = (target.seeds)();
            assert!(!seeds.is_empty(), "{} has no seeds", target.name);
            let mut rng = super::inputs::Rng::new(super::inputs::hash(target.name));
            let mut state = (target.fresh)();
            let mut input = Vec::new();
            for _ in 0..2_000 {
                super::inputs::next_input(
                    &mut rng,
                    &seeds,
                    target.text,
                    target.max_len,
                    &mut input,
                );
                (target.run)(&mut state, &input);
            }
        }
    }
}
