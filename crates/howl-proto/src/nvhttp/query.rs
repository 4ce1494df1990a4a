//! URL query strings: `a=b&c=d`, percent-decoded, with case-insensitive names.

use super::{NvHttpError, ParamProblem};

/// Longest query string [`Query::parse`] accepts, in bytes.
///
/// Pair step 1 carries the hex of a PEM certificate (~2.5 KB); 64 KiB leaves room for big
/// certificates while bounding the work a hostile request can cause.
pub const MAX_QUERY_LEN: usize = 64 * 1024;

/// Most parameters [`Query::parse`] accepts. Real clients send at most ~20 (`/launch`).
pub const MAX_QUERY_PARAMS: usize = 64;

/// A parsed (or to-be-encoded) URL query string.
///
/// Names are matched **case-insensitively** (ASCII), like Sunshine and Wolf do: clients are
/// consistent about case, but nothing in the protocol promises it. Order is preserved and, when
/// a name repeats, [`get`](Self::get) returns the first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    params: Vec<(String, String)>,
}

impl Query {
    /// An empty query, for building requests with [`push`](Self::push).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a raw query string (the part after `?`; a leading `?` is tolerated).
    ///
    /// `+` decodes to a space and `%XY` to the byte `0xXY`. Empty segments (`a=1&&b=2`) are
    /// skipped; a segment without `=` is a name with an empty value.
    pub fn parse(raw: &str) -> Result<Self, NvHttpError> {
        Self::parse_bytes(raw.as_bytes())
    }

    /// Same as [`parse`](Self::parse) for raw bytes, e.g. straight from a request line.
    pub fn parse_bytes(raw: &[u8]) -> Result<Self, NvHttpError> {
        if raw.len() > MAX_QUERY_LEN {
            return Err(NvHttpError::QueryTooLong {
                len: raw.len(),
                max: MAX_QUERY_LEN,
            });
        }
        let raw = raw.strip_prefix(b"?").unwrap_or(raw);
        let mut params = Vec::new();
        for segment in raw.split(|&b| b == b'&') {
            if segment.is_empty() {
                continue;
            }
            if params.len() == MAX_QUERY_PARAMS {
                return Err(NvHttpError::TooManyParams {
                    max: MAX_QUERY_PARAMS,
                });
            }
            let (name, value) = match segment.iter().position(|&b| b == b'=') {
                Some(i) => (&segment[..i], &segment[i + 1..]),
                None => (segment, &b""[..]),
            };
            params.push((percent_decode(name)?, percent_decode(value)?));
        }
        Ok(Self { params })
    }

    /// The first value of `name` (compared case-insensitively), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Like [`get`](Self::get), but a missing parameter is a typed error.
    pub fn require(&self, name: &'static str) -> Result<&str, NvHttpError> {
        self.get(name).ok_or(NvHttpError::MissingParam(name))
    }

    /// Whether `name` is present (case-insensitively), even with an empty value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All parameters in order, names as received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Appends a parameter (client side). Existing ones with the same name are kept.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Encodes the parameters as `a=b&c=d` (without a leading `?`).
    ///
    /// Everything except RFC 3986 unreserved characters is percent-encoded, so the output
    /// survives any HTTP stack and [`parse`](Self::parse) gives back the same `Query`.
    pub fn to_query_string(&self) -> String {
        let mut out = String::new();
        for (i, (name, value)) in self.params.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            percent_encode_into(name, &mut out);
            out.push('=');
            percent_encode_into(value, &mut out);
        }
        out
    }

    /// Decodes a required hex parameter into exactly `N` bytes (either letter case).
    pub(crate) fn require_hex_array<const N: usize>(
        &self,
        name: &'static str,
    ) -> Result<[u8; N], NvHttpError> {
        let bytes = self.require_hex(name)?;
        <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| NvHttpError::BadParam {
            param: name,
            reason: ParamProblem::WrongLength {
                expected: N,
                got: bytes.len(),
            },
        })
    }

    /// Decodes a required hex parameter of any length (either letter case).
    pub(crate) fn require_hex(&self, name: &'static str) -> Result<Vec<u8>, NvHttpError> {
        decode_hex(self.require(name)?).map_err(|reason| NvHttpError::BadParam {
            param: name,
            reason,
        })
    }
}

/// Hex decoding with the reason sorted out (odd length vs. bad character).
pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, ParamProblem> {
    hex::decode(text).map_err(|e| match e {
        hex::FromHexError::OddLength => ParamProblem::OddHex,
        _ => ParamProblem::NotHex,
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(input: &[u8]) -> Result<String, NvHttpError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = input.get(i + 1).copied().and_then(hex_value);
                let lo = input.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(NvHttpError::BadPercentEncoding),
                }
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| NvHttpError::NotUtf8)
}

fn percent_encode_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_names_case_insensitively() {
        let q = Query::parse("?uniqueID=0123456789ABCDEF&uuid=abc&Phrase=getservercert").unwrap();
        assert_eq!(q.get("uniqueid"), Some("0123456789ABCDEF"));
        assert_eq!(q.get("PHRASE"), Some("getservercert"));
        assert_eq!(q.require("uuid").unwrap(), "abc");
        assert_eq!(q.require("salt"), Err(NvHttpError::MissingParam("salt")));
        assert_eq!(q.len(), 3);
    }

    #[test]
    fn percent_and_plus_decoding() {
        let q = Query::parse("a=hello+world&b=%41%62%2B&c&d=&=e&&f=x%3Dy").unwrap();
        assert_eq!(q.get("a"), Some("hello world"));
        assert_eq!(q.get("b"), Some("Ab+"));
        assert_eq!(q.get("c"), Some(""));
        assert_eq!(q.get("d"), Some(""));
        assert_eq!(q.get(""), Some("e"));
        assert_eq!(q.get("f"), Some("x=y"));
    }

    #[test]
    fn first_duplicate_wins() {
        let q = Query::parse("a=1&A=2").unwrap();
        assert_eq!(q.get("a"), Some("1"));
    }

    #[test]
    fn malformed_and_oversized() {
        assert_eq!(Query::parse("a=%4"), Err(NvHttpError::BadPercentEncoding));
        assert_eq!(Query::parse("a=%zz"), Err(NvHttpError::BadPercentEncoding));
        assert_eq!(Query::parse("a=%ff"), Err(NvHttpError::NotUtf8));
        let long = "a".repeat(MAX_QUERY_LEN + 1);
        assert!(matches!(
            Query::parse(&long),
            Err(NvHttpError::QueryTooLong { .. })
        ));
        let many = vec!["x=1"; MAX_QUERY_PARAMS + 1].join("&");
        assert_eq!(
            Query::parse(&many),
            Err(NvHttpError::TooManyParams {
                max: MAX_QUERY_PARAMS
            })
        );
        let ok = vec!["x=1"; MAX_QUERY_PARAMS].join("&");
        assert_eq!(Query::parse(&ok).unwrap().len(), MAX_QUERY_PARAMS);
    }

    #[test]
    fn encode_round_trips() {
        let mut q = Query::new();
        q.push("uniqueid", "0123456789ABCDEF")
            .push("devicename", "roth & co=1+2 ü")
            .push("empty", "");
        let s = q.to_query_string();
        assert_eq!(
            s,
            "uniqueid=0123456789ABCDEF&devicename=roth%20%26%20co%3D1%2B2%20%C3%BC&empty="
        );
        assert_eq!(Query::parse(&s).unwrap(), q);
    }

    #[test]
    fn hex_helpers() {
        let q = Query::parse("k=00FFaa&odd=abc&bad=zz").unwrap();
        assert_eq!(q.require_hex_array::<3>("k").unwrap(), [0, 0xff, 0xaa]);
        assert_eq!(
            q.require_hex_array::<4>("k"),
            Err(NvHttpError::BadParam {
                param: "k",
                reason: ParamProblem::WrongLength {
                    expected: 4,
                    got: 3
                }
            })
        );
        assert!(matches!(
            q.require_hex("odd"),
            Err(NvHttpError::BadParam {
                reason: ParamProblem::OddHex,
                ..
            })
        ));
        assert!(matches!(
            q.require_hex("bad"),
            Err(NvHttpError::BadParam {
                reason: ParamProblem::NotHex,
                ..
            })
        ));
    }
}
