//! `howl-worker --decode-check FILE --codec C` (hidden): decodes an elementary stream with
//! GStreamer and prints, as JSON, the test-pattern counter read from every decoded frame.
//!
//! Tests write the access units a worker sent into a file and compare the counters read back
//! after a real decode with the `frame_counter` fields of the messages: that proves the pattern
//! survives encoding and that the metadata matches the pixels. Lives in the worker because only
//! the worker links GStreamer.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use howl_media::protocol::Codec;
use howl_media::testpattern;

use crate::{EXIT_ERROR, EXIT_NO_DECODER, EXIT_OK};

/// Longest wait for one decoded frame before the file is considered done.
const PULL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(serde::Serialize)]
struct Report {
    decoder: String,
    frames: usize,
    width: u32,
    height: u32,
    /// Counter per decoded frame, `null` where the markers did not read.
    counters: Vec<Option<u32>>,
    /// Mean luma of the first decoded frame (a client refuses to start below 5).
    first_mean_luma: f64,
}

/// Runs the check; returns the exit status.
pub fn run(file: &Path, codec: Codec) -> u8 {
    let (parser, decoders): (&str, &[&str]) = match codec {
        Codec::H264 => ("h264parse", &["avdec_h264", "openh264dec"]),
        Codec::Hevc => ("h265parse", &["avdec_h265"]),
        Codec::Av1 => ("av1parse", &["av1dec", "dav1ddec", "avdec_av1"]),
    };
    let Some(decoder) = decoders
        .iter()
        .copied()
        .find(|d| gst::ElementFactory::find(d).is_some())
    else {
        eprintln!("no decoder for {} installed", codec.name());
        return EXIT_NO_DECODER;
    };
    match decode(file, parser, decoder) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("{json}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("json: {e}");
                EXIT_ERROR
            }
        },
        Err(e) => {
            eprintln!("decode-check failed: {e}");
            EXIT_ERROR
        }
    }
}

fn decode(file: &Path, parser: &str, decoder: &str) -> Result<Report, String> {
    let make = |f: &str| {
        gst::ElementFactory::make(f)
            .build()
            .map_err(|e| format!("{f}: {e}"))
    };
    let pipeline = gst::Pipeline::new();
    let src = make("filesrc")?;
    src.set_property("location", file.to_string_lossy().as_ref());
    let parse = make(parser)?;
    let dec = make(decoder)?;
    let conv = make("videoconvert")?;
    let caps = gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::I420)
        .build();
    let sink = gst_app::AppSink::builder().caps(&caps).sync(false).build();
    let chain = [src, parse, dec, conv, sink.clone().upcast()];
    pipeline.add_many(&chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(&chain).map_err(|e| e.to_string())?;

    let guard = NullOnDrop(pipeline.clone());
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut report = Report {
        decoder: decoder.to_owned(),
        frames: 0,
        width: 0,
        height: 0,
        counters: Vec::new(),
        first_mean_luma: 0.0,
    };
    while let Some(sample) =
        sink.try_pull_sample(gst::ClockTime::from_nseconds(PULL_TIMEOUT.as_nanos() as u64))
    {
        let (Some(buffer), Some(caps)) = (sample.buffer(), sample.caps()) else {
            continue;
        };
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| e.to_string())?;
        let stride = usize::try_from(frame.plane_stride()[0]).map_err(|e| e.to_string())?;
        let luma = frame.plane_data(0).map_err(|e| e.to_string())?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        if report.frames == 0 {
            report.width = info.width();
            report.height = info.height();
            let rows: Vec<u8> = (0..h)
                .flat_map(|y| luma[y * stride..y * stride + w].iter().copied())
                .collect();
            report.first_mean_luma = testpattern::mean_luma(&rows);
        }
        report
            .counters
            .push(testpattern::read_counter(luma, stride, w, h));
        report.frames += 1;
    }
    drop(guard);
    if let Some(bus) = pipeline.bus() {
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(format!("{}: {:?}", e.error(), e.debug()));
            }
        }
    }
    Ok(report)
}

/// Sets the pipeline to `Null` on every exit path.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}
