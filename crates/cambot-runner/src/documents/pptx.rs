//! PPTX: the text of each slide (`ppt/slides/slideN.xml`, in slide-number order), one line
//! per paragraph, under a `## Slide N` marker.

use std::io::BufReader;
use std::io::Read;

use cambot_protocol::documents::DocKind;

use super::error::DocError;
use super::limits::MAX_ENTRY_BYTES;
use super::limits::MAX_SLIDES;
use super::out::Out;
use super::xml::Node;
use super::xml::local;
use super::xml::walk;
use super::zipguard::Package;

pub fn extract(mut pkg: Package, out: &mut Out) -> Result<(), DocError> {
    out.format = Some(DocKind::Pptx);
    let mut slides: Vec<(u32, String)> = pkg
        .names
        .iter()
        .filter_map(|n| {
            let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?;
            Some((num.parse().ok()?, n.clone()))
        })
        .collect();
    slides.sort();
    if slides.len() > MAX_SLIDES {
        slides.truncate(MAX_SLIDES);
        out.mark_truncated(format!("slide cap of {MAX_SLIDES} slides reached"));
    }
    for (num, name) in slides {
        let entry = pkg
            .archive
            .by_name(&name)
            .map_err(|e| DocError::Malformed(format!("{name}: {e}")))?;
        let src = BufReader::new(entry.take(MAX_ENTRY_BYTES));
        out.parts += 1;
        out.push(&format!("## Slide {num}\n\n"))?;
        let mut para = String::new();
        let mut in_text = false;
        walk(src, &name, |node| {
            match node {
                Node::Open(e) => {
                    let l = local(e);
                    in_text |= l == "t";
                    if l == "br" {
                        para.push('\n');
                    }
                }
                Node::Close("t") => in_text = false,
                Node::Close("p") => {
                    let line = std::mem::take(&mut para);
                    if !line.trim().is_empty() {
                        out.push(&format!("{}\n", line.trim()))?;
                    }
                }
                Node::Close(_) => {}
                Node::Text(s) if in_text => para.push_str(s),
                Node::Text(_) => {}
            }
            Ok(())
        })?;
        out.push("\n")?;
    }
    Ok(())
}
