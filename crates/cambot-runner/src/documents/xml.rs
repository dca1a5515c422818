//! A guarded XML event walk over quick-xml: any DOCTYPE is refused (OPC forbids DTDs in a
//! package, and refusing them ends billion laughs and XXE), only the predefined and character
//! references are resolved, and nesting is capped (a counter, no recursion).

use std::borrow::Cow;
use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::events::BytesStart;
use quick_xml::events::Event;

use super::error::DocError;
use super::limits::MAX_XML_DEPTH;

/// One step of the walk. Empty elements arrive as an open and a close.
pub enum Node<'a> {
    Open(&'a BytesStart<'a>),
    Close(&'a str),
    Text(&'a str),
}

/// The local name (no namespace prefix) of an element.
pub fn local(e: &BytesStart<'_>) -> String {
    let name = e.name();
    let full: &str = name.as_ref();
    match full.rsplit_once(':') {
        Some((_, l)) => l.to_owned(),
        None => full.to_owned(),
    }
}

/// The value of the attribute whose local name is `key`, predefined entities resolved.
pub fn attr(e: &BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        let k: &str = a.key.as_ref();
        let lk = k.rsplit_once(':').map_or(k, |(_, l)| l);
        (lk == key).then(|| {
            <Cow<'_, str> as AsRef<str>>::as_ref(&a.value)
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
    })
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Walks `src` (the part named `part`, for messages) and hands each node to `f`.
pub fn walk<R: BufRead>(
    src: R,
    part: &str,
    mut f: impl FnMut(Node<'_>) -> Result<(), DocError>,
) -> Result<(), DocError> {
    let mut reader = Reader::from_reader(src);
    reader.config_mut().expand_empty_elements = true;
    let mut buf = Vec::new();
    let mut depth = 0usize;
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| DocError::Malformed(format!("{part}: broken XML: {e}")))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_XML_DEPTH {
                    return Err(DocError::Limit(format!(
                        "{part}: XML nested deeper than {MAX_XML_DEPTH} levels"
                    )));
                }
                f(Node::Open(&e))?;
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                let name: String = e.local_name().as_ref().to_owned();
                f(Node::Close(&name))?;
            }
            Event::Text(t) => f(Node::Text(&t.xml10_content()))?,
            Event::CData(t) => f(Node::Text(&t.xml10_content()))?,
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok().flatten()
                } else {
                    predefined(&r.xml10_content())
                };
                match c {
                    Some(c) => f(Node::Text(c.encode_utf8(&mut [0; 4])))?,
                    None => {
                        return Err(DocError::Malformed(format!(
                            "{part}: reference to an undefined entity"
                        )));
                    }
                }
            }
            Event::DocType(_) => {
                return Err(DocError::Malformed(format!(
                    "{part}: a DOCTYPE declaration (DTDs and entities are refused)"
                )));
            }
            Event::Eof => return Ok(()),
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
}
