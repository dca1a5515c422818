//! PDF: poppler's `pdftotext` as a child (its default mode is the only measured extractor that
//! restores reading order on two-column pages). It reads at most `max_pages + 1` pages: one
//! page more than the cap tells a longer document apart without a second pass. Form feeds
//! end pages and become `## Page N` markers. The child inherits the worker's rlimits.

use std::io::Read;
use std::process::Command;
use std::process::Stdio;

use cambot_protocol::documents::DocKind;

use super::error::DocError;
use super::limits::MAX_TOOL_STDERR;
use super::out::Out;

/// `pdftotext` inside the sandbox (`/usr` is bound read-only from the host or the image).
pub const PDFTOTEXT: &str = "pdftotext";

pub fn extract(path: &str, max_pages: u32, out: &mut Out, cap: u64) -> Result<(), DocError> {
    out.format = Some(DocKind::Pdf);
    let last = max_pages.saturating_add(1).to_string();
    let mut child = Command::new(PDFTOTEXT)
        .args(["-l", &last, "-enc", "UTF-8", path, "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            DocError::Internal(format!(
                "cannot start {PDFTOTEXT} in the sandbox (install poppler-utils): {e}"
            ))
        })?;
    let stderr = child.stderr.take();
    // Drained on its own thread so that a chatty child never blocks on a full pipe.
    let errors = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut s) = stderr {
            let _ = (&mut s).take(MAX_TOOL_STDERR as u64).read_to_end(&mut kept);
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        }
        String::from_utf8_lossy(&kept).into_owned()
    });
    let mut raw = Vec::new();
    let mut cut = false;
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(cap + 1)
            .read_to_end(&mut raw)
            .map_err(|e| DocError::io("reading pdftotext's output", e))?;
        if raw.len() as u64 > cap {
            // Enough text: the rest of the document is not needed.
            cut = true;
            let _ = child.kill();
        }
    }
    let status = child
        .wait()
        .map_err(|e| DocError::io("waiting for pdftotext", e))?;
    let stderr = errors.join().unwrap_or_default();
    if !cut {
        check_status(status, &stderr)?;
    }
    let text = String::from_utf8_lossy(&raw);
    let mut pages: Vec<&str> = text.split('\x0c').collect();
    // pdftotext ends every page with a form feed: the piece after the last one is empty.
    if pages.last().is_some_and(|p| p.trim().is_empty()) && pages.len() > 1 {
        pages.pop();
    }
    if !cut && pages.iter().all(|p| p.trim().is_empty()) {
        return Err(DocError::Empty);
    }
    if pages.len() > max_pages as usize {
        pages.truncate(max_pages as usize);
        out.mark_truncated(format!("page cap of {max_pages} pages reached"));
    }
    for (i, page) in pages.iter().enumerate() {
        out.parts += 1;
        out.push(&format!("## Page {}\n\n", i + 1))?;
        let body = page.trim_end();
        if !body.is_empty() {
            out.push(body)?;
            out.push("\n\n")?;
        }
    }
    Ok(())
}

fn check_status(status: std::process::ExitStatus, stderr: &str) -> Result<(), DocError> {
    use std::os::unix::process::ExitStatusExt;
    let first = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    let first: String = first
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if stderr.contains("Incorrect password") || status.code() == Some(3) {
        return Err(DocError::Encrypted);
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(2), _) => Err(DocError::Internal(format!(
            "pdftotext could not write its output: {first}"
        ))),
        (Some(_), _) => Err(DocError::Malformed(format!("broken PDF: {first}"))),
        (None, Some(sig)) if sig == libc_sig::SIGXCPU || sig == libc_sig::SIGKILL => Err(
            DocError::Limit("the PDF parser ran out of CPU time".to_owned()),
        ),
        (None, Some(sig)) => Err(DocError::Malformed(format!(
            "the PDF parser died of signal {sig} on this file"
        ))),
        (None, None) => Err(DocError::Internal("pdftotext vanished".to_owned())),
    }
}

/// The two signal numbers needed, without a libc dependency.
mod libc_sig {
    pub(super) const SIGKILL: i32 = nix::sys::signal::Signal::SIGKILL as i32;
    pub(super) const SIGXCPU: i32 = nix::sys::signal::Signal::SIGXCPU as i32;
}
