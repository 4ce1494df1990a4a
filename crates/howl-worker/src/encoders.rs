//! Encoder discovery and configuration.
//!
//! Candidates are listed hardware-first per codec; [`probe`] keeps those whose element exists
//! *and* instantiates and reaches `Ready` (GPU plugins often register elements that then fail to
//! open a device). Each candidate knows how to configure itself for low-latency GameStream use:
//! no B-frames, parameter sets with every key frame, CBR at the requested bitrate, a long GOP
//! (key frames come on request, not on a timer).

use gstreamer as gst;
use gstreamer::prelude::*;
use howl_media::protocol::{Codec, EncoderInfo, StreamParams};

use crate::error::WorkerError;

/// One encoder element howl knows how to drive.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// Codec produced.
    pub codec: Codec,
    /// Element factory name.
    pub element: &'static str,
    /// GPU / fixed-function.
    pub hardware: bool,
    /// Whether it needs NV12 input (a `videoconvert` goes in front).
    pub wants_convert: bool,
}

const fn hw(codec: Codec, element: &'static str) -> Candidate {
    Candidate {
        codec,
        element,
        hardware: true,
        wants_convert: true,
    }
}

const fn sw(codec: Codec, element: &'static str) -> Candidate {
    Candidate {
        codec,
        element,
        hardware: false,
        wants_convert: false,
    }
}

/// Every encoder howl can use, preferred first within each codec.
pub const CANDIDATES: &[Candidate] = &[
    hw(Codec::H264, "nvh264enc"),
    hw(Codec::H264, "vah264enc"),
    hw(Codec::H264, "vaapih264enc"),
    hw(Codec::H264, "qsvh264enc"),
    sw(Codec::H264, "x264enc"),
    hw(Codec::Hevc, "nvh265enc"),
    hw(Codec::Hevc, "vah265enc"),
    hw(Codec::Hevc, "vaapih265enc"),
    hw(Codec::Hevc, "qsvh265enc"),
    sw(Codec::Hevc, "x265enc"),
    hw(Codec::Av1, "nvav1enc"),
    hw(Codec::Av1, "vaav1enc"),
    hw(Codec::Av1, "qsvav1enc"),
    sw(Codec::Av1, "av1enc"),
];

/// Parser element and output caps for a codec: the parser re-inserts parameter sets before every
/// key frame (`config-interval=-1`) and delivers one access unit per buffer.
pub fn parser_for(codec: Codec) -> (&'static str, &'static str) {
    match codec {
        Codec::H264 => (
            "h264parse",
            "video/x-h264,stream-format=byte-stream,alignment=au",
        ),
        Codec::Hevc => (
            "h265parse",
            "video/x-h265,stream-format=byte-stream,alignment=au",
        ),
        Codec::Av1 => (
            "av1parse",
            "video/x-av1,stream-format=obu-stream,alignment=tu",
        ),
    }
}

/// True if the candidate's element exists, instantiates and reaches `Ready`, and its codec's
/// parser exists too.
fn usable(c: &Candidate) -> bool {
    if gst::ElementFactory::find(c.element).is_none()
        || gst::ElementFactory::find(parser_for(c.codec).0).is_none()
    {
        return false;
    }
    let Ok(elem) = gst::ElementFactory::make(c.element).build() else {
        return false;
    };
    let ok = elem.set_state(gst::State::Ready).is_ok();
    // Back to Null before dropping: an element must never be freed in a non-Null state.
    let _ = elem.set_state(gst::State::Null);
    ok
}

/// Usable encoders, preferred first within each codec.
pub fn probe() -> Vec<EncoderInfo> {
    CANDIDATES
        .iter()
        .filter(|c| usable(c))
        .map(|c| EncoderInfo {
            codec: c.codec,
            element_name: c.element.to_owned(),
            hardware: c.hardware,
        })
        .collect()
}

/// `{"encoders":[{"codec":"h264","element_name":"x264enc","hardware":false},...]}`.
pub fn probe_json(list: &[EncoderInfo]) -> String {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        codec: &'a str,
        element_name: &'a str,
        hardware: bool,
    }
    #[derive(serde::Serialize)]
    struct Probe<'a> {
        encoders: Vec<Entry<'a>>,
    }
    let p = Probe {
        encoders: list
            .iter()
            .map(|e| Entry {
                codec: e.codec.name(),
                element_name: &e.element_name,
                hardware: e.hardware,
            })
            .collect(),
    };
    serde_json::to_string(&p).unwrap_or_else(|_| String::from("{\"encoders\":[]}"))
}

/// The first usable candidate for `codec`, instantiated and configured for `params`.
pub fn make_encoder(params: &StreamParams) -> Result<(Candidate, gst::Element), WorkerError> {
    for c in CANDIDATES.iter().filter(|c| c.codec == params.codec) {
        if !usable(c) {
            continue;
        }
        let elem = gst::ElementFactory::make(c.element).name("venc").build()?;
        configure(c, &elem, params)?;
        return Ok((*c, elem));
    }
    Err(WorkerError::NoEncoder(params.codec))
}

/// GOP length: key frames come on request; this only bounds how long a lost key frame stays
/// lost if nobody asks (10 s).
fn gop(params: &StreamParams) -> String {
    (params.fps.saturating_mul(10)).to_string()
}

fn configure(c: &Candidate, e: &gst::Element, p: &StreamParams) -> Result<(), WorkerError> {
    let kbps = p.bitrate_kbps.to_string();
    let gop = gop(p);
    let slices = p.slices_per_frame;
    match c.element {
        "x264enc" => {
            set(e, "tune", "zerolatency")?;
            set(e, "speed-preset", "ultrafast")?;
            set(e, "bframes", "0")?;
            set(e, "key-int-max", &gop)?;
            set(e, "bitrate", &kbps)?;
            set(e, "byte-stream", "true")?;
            set(e, "aud", "false")?;
            // One frame of VBV (as Sunshine does): every frame fits the network budget.
            let vbv_ms = 1000u32.div_ceil(p.fps.max(1)).max(1);
            set(e, "vbv-buf-capacity", &vbv_ms.to_string())?;
            // zerolatency uses sliced threads, where x264 makes one slice per thread: tie the
            // thread count to the slices the client asked for. One thread is also the cheapest
            // per frame (performance anchors: 2.3–5.1 ms at 720p) and adds no latency.
            set(e, "sliced-threads", "true")?;
            set(e, "threads", &slices.to_string())?;
        }
        "x265enc" => {
            set(e, "tune", "zerolatency")?;
            set(e, "speed-preset", "ultrafast")?;
            set(e, "key-int-max", &gop)?;
            set(e, "bitrate", &kbps)?;
            // info=0: x265's info SEI between PPS and slice pushes the slice out of the first
            // packet and the client waits for an IDR forever (performance anchors).
            let mut opts = String::from("info=0:repeat-headers=1:bframes=0:aud=0");
            if slices > 1 {
                opts.push_str(&format!(":slices={slices}"));
            }
            set(e, "option-string", &opts)?;
        }
        "av1enc" => {
            // libaom aborts in CBR unless the quantizer range is set explicitly.
            set(e, "end-usage", "cbr")?;
            set(e, "min-quantizer", "0")?;
            set(e, "max-quantizer", "63")?;
            set(e, "cpu-used", "10")?;
            set(e, "usage-profile", "realtime")?;
            set(e, "lag-in-frames", "0")?;
            set(e, "target-bitrate", &kbps)?;
            set(e, "keyframe-max-dist", &gop)?;
            set(e, "row-mt", "true")?;
        }
        // Hardware encoders: property names differ per plugin and cannot be tested on a host
        // without the device, so these are best effort (a missing property is logged, skipped).
        "nvh264enc" | "nvh265enc" | "nvav1enc" => {
            try_set(e, "bitrate", &kbps);
            try_set(e, "gop-size", &gop);
            try_set(e, "bframes", "0");
            try_set(e, "rc-mode", "cbr");
            try_set(e, "zerolatency", "true");
            try_set(e, "aud", "false");
        }
        "vah264enc" | "vah265enc" | "vaav1enc" => {
            try_set(e, "bitrate", &kbps);
            try_set(e, "key-int-max", &gop);
            try_set(e, "b-frames", "0");
            try_set(e, "rate-control", "cbr");
            try_set(e, "aud", "false");
        }
        "vaapih264enc" | "vaapih265enc" => {
            try_set(e, "bitrate", &kbps);
            try_set(e, "keyframe-period", &gop);
            try_set(e, "max-bframes", "0");
            try_set(e, "rate-control", "cbr");
        }
        "qsvh264enc" | "qsvh265enc" | "qsvav1enc" => {
            try_set(e, "bitrate", &kbps);
            try_set(e, "gop-size", &gop);
            try_set(e, "b-frames", "0");
            try_set(e, "rate-control", "cbr");
            try_set(e, "low-latency", "true");
        }
        other => {
            return Err(WorkerError::Pipeline(format!(
                "no configuration for encoder {other}"
            )));
        }
    }
    Ok(())
}

/// Sets `name` from its string form, or logs why not.
pub fn try_set(e: &impl IsA<gst::Object>, name: &str, value: &str) {
    if let Err(err) = set(e, name, value) {
        tracing::warn!(error = %err, "skipping encoder property");
    }
}

/// Sets property `name` of `e` from its string form (as `gst-launch-1.0` would) without ever
/// panicking: the GLib bindings panic on a missing property, a wrong type or an out-of-range
/// value, so all three are checked first and reported as [`WorkerError::Pipeline`].
pub fn set(e: &impl IsA<gst::Object>, name: &str, value: &str) -> Result<(), WorkerError> {
    use gst::glib;
    let obj = e.as_ref();
    let err = |why: &str| {
        WorkerError::Pipeline(format!("{}: property {name}={value}: {why}", obj.name()))
    };
    let pspec = obj
        .find_property(name)
        .ok_or_else(|| err("no such property"))?;
    let flags = pspec.flags();
    if !flags.contains(glib::ParamFlags::WRITABLE)
        || flags.contains(glib::ParamFlags::CONSTRUCT_ONLY)
    {
        return Err(err("not writable"));
    }
    let v = glib::Value::deserialize(value, pspec.value_type())
        .map_err(|_| err("cannot parse value"))?;
    macro_rules! in_range {
        ($spec:ty, $t:ty) => {
            if let Some(p) = pspec.downcast_ref::<$spec>() {
                let x = v.get::<$t>().map_err(|_| err("wrong type"))?;
                if x < p.minimum() || x > p.maximum() {
                    return Err(err("out of range"));
                }
            }
        };
    }
    in_range!(glib::ParamSpecInt, i32);
    in_range!(glib::ParamSpecUInt, u32);
    in_range!(glib::ParamSpecInt64, i64);
    in_range!(glib::ParamSpecUInt64, u64);
    in_range!(glib::ParamSpecLong, glib::ILong);
    in_range!(glib::ParamSpecULong, glib::ULong);
    in_range!(glib::ParamSpecFloat, f32);
    in_range!(glib::ParamSpecDouble, f64);
    obj.set_property_from_value(name, &v);
    Ok(())
}
