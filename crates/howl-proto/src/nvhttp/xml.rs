//! The NVHTTP XML envelope: a compact writer and a bounded, panic-free reader.

use std::fmt::Write as _;

use quick_xml::events::{BytesRef, Event};

use super::NvHttpError;

/// Largest document [`XmlDoc::parse`] accepts. A 500-app list is ~60 KB; 1 MiB is generous.
pub const MAX_XML_LEN: usize = 1024 * 1024;

/// Deepest element nesting [`XmlDoc::parse`] accepts (`root` counts as 1). The deepest real
/// reply is `root/SupportedDisplayMode/DisplayMode/Width` (4).
pub const MAX_XML_DEPTH: usize = 8;

/// Most elements [`XmlDoc::parse`] accepts in one document.
pub const MAX_XML_ELEMENTS: usize = 16 * 1024;

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";

/// Writes one NVHTTP reply: `<?xml ...?>\n<root status_code="...">children</root>`.
///
/// The output has **no whitespace between elements**: android's app-list parser treats any
/// text event between `<App>` elements as data and throws (reference part 1, section 2.3).
/// All text and attribute values are escaped, because host names and app titles are
/// user-controlled.
#[derive(Debug, Clone)]
pub struct XmlWriter {
    buf: String,
    /// Whether `<root ...` still lacks its closing `>`, so that a childless root can be written
    /// as the self-closing `<root .../>` that clients and Sunshine use for bare statuses.
    root_open: bool,
    /// Elements opened with [`open`](Self::open) and not yet closed, innermost last.
    stack: Vec<&'static str>,
}

impl XmlWriter {
    /// A reply with `status_code="200"`.
    pub fn ok() -> Self {
        Self::with_status(200, None)
    }

    /// A reply with any status code and an optional `status_message`.
    pub fn with_status(status_code: i64, status_message: Option<&str>) -> Self {
        let mut buf = String::with_capacity(512);
        buf.push_str(DECLARATION);
        // Writing into a String cannot fail.
        let _ = write!(buf, "<root status_code=\"{status_code}\"");
        if let Some(message) = status_message {
            buf.push_str(" status_message=\"");
            escape_into(message, &mut buf);
            buf.push('"');
        }
        Self {
            buf,
            root_open: true,
            stack: Vec::new(),
        }
    }

    fn close_root_tag(&mut self) {
        if self.root_open {
            self.buf.push('>');
            self.root_open = false;
        }
    }

    /// Adds `<name>text</name>` (text escaped) inside the innermost open element.
    ///
    /// `name` is a `'static` literal on purpose: element names come from this crate, never from
    /// the network, so they are not escaped.
    pub fn element(&mut self, name: &'static str, text: &str) -> &mut Self {
        self.close_root_tag();
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        escape_into(text, &mut self.buf);
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    /// Adds `<name>value</name>` for a number or other `Display` value.
    pub fn element_display(
        &mut self,
        name: &'static str,
        value: impl std::fmt::Display,
    ) -> &mut Self {
        self.element(name, &value.to_string())
    }

    /// Opens `<name>` for nested children (e.g. `App`); close it with [`close`](Self::close).
    pub fn open(&mut self, name: &'static str) -> &mut Self {
        self.close_root_tag();
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self.stack.push(name);
        self
    }

    /// Closes the innermost element opened with [`open`](Self::open); no-op if none is open.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.stack.pop() {
            self.buf.push_str("</");
            self.buf.push_str(name);
            self.buf.push('>');
        }
        self
    }

    /// Closes everything still open and returns the document.
    pub fn finish(mut self) -> String {
        while !self.stack.is_empty() {
            self.close();
        }
        if self.root_open {
            self.buf.push_str("/>");
        } else {
            self.buf.push_str("</root>");
        }
        self.buf
    }
}

/// Escapes `& < > " '` and replaces characters XML 1.0 forbids (most C0 controls, U+FFFE,
/// U+FFFF) with U+FFFD, so that a stray control character in a configured app title cannot
/// make every client reject the whole reply.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
}

/// One element of a parsed reply: its name, its own text and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlElement {
    /// Element name as written (NVHTTP names are case-sensitive in all clients).
    pub name: String,
    /// The element's own text, unescaped (text of children is not included).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<XmlElement>,
}

impl XmlElement {
    /// Text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.children
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.text.as_str())
    }

    /// All children called `name` (e.g. every `App`).
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a XmlElement> {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// A parsed NVHTTP reply: the `root` status plus its child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlDoc {
    /// `root@status_code`. Clients read it as unsigned and cast, so GFE's "-1" can arrive as
    /// `4294967295`; an `i64` holds both spellings unchanged.
    pub status_code: i64,
    /// `root@status_message`, if present.
    pub status_message: Option<String>,
    /// The `root` element itself.
    pub root: XmlElement,
}

impl XmlDoc {
    /// Parses a reply. Bounded by [`MAX_XML_LEN`], [`MAX_XML_DEPTH`] and [`MAX_XML_ELEMENTS`];
    /// only the predefined entities and character references are expanded (no DTDs).
    /// Anything after the closing `</root>` is ignored.
    pub fn parse(input: &[u8]) -> Result<Self, NvHttpError> {
        if input.len() > MAX_XML_LEN {
            return Err(NvHttpError::XmlTooLong {
                len: input.len(),
                max: MAX_XML_LEN,
            });
        }
        let text = std::str::from_utf8(input).map_err(|_| xml_err("document is not UTF-8"))?;
        let mut reader = quick_xml::Reader::from_str(text);
        // Defaults check that end tags match; keep them. Text is kept verbatim.
        reader.config_mut().trim_text(false);

        let mut stack: Vec<XmlElement> = Vec::new();
        let mut status: Option<(i64, Option<String>)> = None;
        let mut count = 0usize;
        loop {
            let event = reader.read_event().map_err(|e| xml_err(&e.to_string()))?;
            match event {
                Event::Start(ref start) | Event::Empty(ref start) => {
                    count += 1;
                    if count > MAX_XML_ELEMENTS || stack.len() >= MAX_XML_DEPTH {
                        return Err(NvHttpError::XmlTooComplex);
                    }
                    let name = std::str::from_utf8(start.name().as_ref())
                        .map_err(|_| xml_err("element name is not UTF-8"))?
                        .to_owned();
                    if stack.is_empty() {
                        if name != "root" {
                            return Err(xml_err("top-level element is not <root>"));
                        }
                        status = Some(read_status(start)?);
                    }
                    let element = XmlElement {
                        name,
                        ..XmlElement::default()
                    };
                    if matches!(event, Event::Empty(_)) {
                        if let Some(parent) = stack.last_mut() {
                            parent.children.push(element);
                        } else {
                            return finish(element, status);
                        }
                    } else {
                        stack.push(element);
                    }
                }
                Event::End(_) => {
                    let Some(element) = stack.pop() else {
                        return Err(xml_err("unbalanced end tag"));
                    };
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => return finish(element, status),
                    }
                }
                Event::Text(t) => {
                    if let Some(current) = stack.last_mut() {
                        let decoded = t.decode().map_err(|e| xml_err(&e.to_string()))?;
                        current.text.push_str(&decoded);
                    }
                }
                Event::CData(t) => {
                    if let Some(current) = stack.last_mut() {
                        let decoded = t.decode().map_err(|e| xml_err(&e.to_string()))?;
                        current.text.push_str(&decoded);
                    }
                }
                Event::GeneralRef(r) => {
                    let c = resolve_reference(&r)?;
                    if let Some(current) = stack.last_mut() {
                        current.text.push_str(&c);
                    }
                }
                Event::DocType(_) => return Err(xml_err("DTDs are not accepted")),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => return Err(xml_err("document ends before </root>")),
            }
        }
    }

    /// Text of the first child of `root` called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.root.child_text(name)
    }

    /// Like [`get`](Self::get), but a missing element is a typed error.
    pub fn require(&self, name: &'static str) -> Result<&str, NvHttpError> {
        self.get(name).ok_or(NvHttpError::MissingElement(name))
    }

    /// Parses a required element as a number (surrounding whitespace tolerated).
    pub(crate) fn require_parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
    ) -> Result<T, NvHttpError> {
        self.require(name)?
            .trim()
            .parse()
            .map_err(|_| NvHttpError::BadElement { element: name })
    }

    /// Parses an optional element as a number; present but unparsable is an error.
    pub(crate) fn get_parsed<T: std::str::FromStr>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, NvHttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| NvHttpError::BadElement { element: name }),
        }
    }

    /// `Err(Status)` unless `status_code` is 200: what every typed decoder checks first.
    pub fn ensure_ok(&self) -> Result<(), NvHttpError> {
        if self.status_code == 200 {
            Ok(())
        } else {
            Err(NvHttpError::Status {
                code: self.status_code,
                message: self.status_message.clone().unwrap_or_default(),
            })
        }
    }
}

fn xml_err(what: &str) -> NvHttpError {
    NvHttpError::Xml(what.to_owned())
}

fn finish(root: XmlElement, status: Option<(i64, Option<String>)>) -> Result<XmlDoc, NvHttpError> {
    let (status_code, status_message) = status.ok_or(NvHttpError::BadStatusCode)?;
    Ok(XmlDoc {
        status_code,
        status_message,
        root,
    })
}

fn read_status(
    start: &quick_xml::events::BytesStart<'_>,
) -> Result<(i64, Option<String>), NvHttpError> {
    let mut code = None;
    let mut message = None;
    for attr in start.attributes() {
        let attr = attr.map_err(|e| xml_err(&e.to_string()))?;
        let key = attr.key.as_ref();
        if key == b"status_code" {
            let value = attr.unescape_value().map_err(|e| xml_err(&e.to_string()))?;
            code = Some(
                value
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| NvHttpError::BadStatusCode)?,
            );
        } else if key == b"status_message" {
            let value = attr.unescape_value().map_err(|e| xml_err(&e.to_string()))?;
            message = Some(value.into_owned());
        }
    }
    Ok((code.ok_or(NvHttpError::BadStatusCode)?, message))
}

fn resolve_reference(r: &BytesRef<'_>) -> Result<String, NvHttpError> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| xml_err(&e.to_string()))? {
        return Ok(c.to_string());
    }
    let name = r.decode().map_err(|e| xml_err(&e.to_string()))?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| xml_err("unknown entity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_compact_escaped_documents() {
        let mut w = XmlWriter::ok();
        w.element("hostname", "a<b>&\"c'")
            .open("App")
            .element("ID", "1")
            .close()
            .element_display("n", 5);
        assert_eq!(
            w.finish(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<root status_code=\"200\">\
             <hostname>a&lt;b&gt;&amp;&quot;c&apos;</hostname><App><ID>1</ID></App><n>5</n></root>"
        );
    }

    #[test]
    fn bare_status_is_self_closing() {
        let doc = XmlWriter::with_status(401, Some("client certificate is not paired")).finish();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <root status_code=\"401\" status_message=\"client certificate is not paired\"/>"
        );
        let parsed = XmlDoc::parse(doc.as_bytes()).unwrap();
        assert_eq!(parsed.status_code, 401);
        assert_eq!(
            parsed.status_message.as_deref(),
            Some("client certificate is not paired")
        );
        assert!(parsed.ensure_ok().is_err());
    }

    #[test]
    fn control_characters_are_replaced() {
        let mut w = XmlWriter::ok();
        w.element("t", "a\u{1}b\tc");
        let doc = w.finish();
        assert!(doc.contains("<t>a\u{fffd}b\tc</t>"));
        let parsed = XmlDoc::parse(doc.as_bytes()).unwrap();
        assert_eq!(parsed.get("t"), Some("a\u{fffd}b\tc"));
    }

    #[test]
    fn parses_nested_and_escaped() {
        let doc = b"<?xml version=\"1.0\"?>\n<root status_code=\"4294967295\" status_message=\"Inv&amp;alid\">\
            <a>x &amp; y &#65;&#x42;</a><App><ID>5</ID><AppTitle/></App><App><ID>6</ID></App>\
            <c><![CDATA[<raw>]]></c></root>trailing";
        let parsed = XmlDoc::parse(doc).unwrap();
        assert_eq!(parsed.status_code, 4_294_967_295);
        assert_eq!(parsed.status_message.as_deref(), Some("Inv&alid"));
        assert_eq!(parsed.get("a"), Some("x & y AB"));
        assert_eq!(parsed.get("c"), Some("<raw>"));
        let apps: Vec<_> = parsed.root.children_named("App").collect();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].child_text("AppTitle"), Some(""));
        assert_eq!(apps[1].child_text("ID"), Some("6"));
    }

    #[test]
    fn negative_status_code() {
        let parsed =
            XmlDoc::parse(b"<root status_code=\"-1\" status_message=\"Invalid\"/>").unwrap();
        assert_eq!(parsed.status_code, -1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            &b""[..],
            b"<notroot status_code=\"200\"/>",
            b"<root/>",
            b"<root status_code=\"abc\"/>",
            b"<root status_code=\"200\"><a></b></root>",
            b"<root status_code=\"200\"><a>",
            b"<root status_code=\"200\">&foo;</root>",
            b"<!DOCTYPE x [<!ENTITY a \"b\">]><root status_code=\"200\"/>",
            b"\xff\xfe",
        ] {
            assert!(
                XmlDoc::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!(
            "<root status_code=\"200\">{}{}</root>",
            "<a>".repeat(MAX_XML_DEPTH),
            "</a>".repeat(MAX_XML_DEPTH)
        );
        assert_eq!(
            XmlDoc::parse(deep.as_bytes()),
            Err(NvHttpError::XmlTooComplex)
        );
        let big = vec![b' '; MAX_XML_LEN + 1];
        assert!(matches!(
            XmlDoc::parse(&big),
            Err(NvHttpError::XmlTooLong { .. })
        ));
    }
}
