//! Text fidelity of the sandboxed extraction on a small generated corpus (a two-column PDF, a
//! DOCX with a table, ...), against the reference text each file was generated from: token
//! recall and reading order as in `shared/reference/documents.md` section 2. Every word is a
//! unique made-up token; recall = found expected tokens / expected tokens; order = longest
//! increasing run of expected positions among the tokens found / tokens found (1.000 = the
//! reference order). Prints one line per file; `--nocapture` shows them.

use cambot_testkit::documents as corpus;

use super::documents::rig;

/// `n` unique tokens for document `d`.
fn tokens(d: usize, from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("zq{d}k{i:03}v")).collect()
}

fn line(t: &[String]) -> String {
    t.join(" ")
}

/// (recall, order) of `found` text against the `expected` tokens.
fn fidelity(expected: &[String], found: &str) -> (f64, f64) {
    let pos: std::collections::HashMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut order = Vec::new();
    for w in found
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
    {
        if let Some(&i) = pos.get(w)
            && seen.insert(i)
        {
            order.push(i);
        }
    }
    // Longest increasing subsequence (patience sorting).
    let mut tails: Vec<usize> = Vec::new();
    for &x in &order {
        match tails.binary_search(&x) {
            Ok(_) => {}
            Err(k) if k == tails.len() => tails.push(x),
            Err(k) => tails[k] = x,
        }
    }
    let recall = seen.len() as f64 / expected.len() as f64;
    let ord = if order.is_empty() {
        0.0
    } else {
        tails.len() as f64 / order.len() as f64
    };
    (recall, ord)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs bwrap and root: run by scripts/test.sh"]
async fn extraction_keeps_the_words_and_their_order_on_the_fidelity_corpus() {
    let Some(rig) = rig("").await else {
        return;
    };
    let mut corpus_files: Vec<(&str, &str, Vec<u8>, Vec<String>)> = Vec::new();

    // A plain page of 30 lines.
    let t = tokens(1, 0, 180);
    let lines: Vec<String> = t.chunks(6).map(line).collect();
    let page = lines.join("\n");
    corpus_files.push(("PDF, 1 page", "a.pdf", corpus::pdf_pages(&[&page]), t));

    // Two columns drawn row by row: the reference reads the left column, then the right.
    let left = tokens(2, 0, 100);
    let right = tokens(2, 100, 100);
    let l: Vec<String> = left.chunks(4).map(line).collect();
    let r: Vec<String> = right.chunks(4).map(line).collect();
    let lr: Vec<&str> = l.iter().map(String::as_str).collect();
    let rr: Vec<&str> = r.iter().map(String::as_str).collect();
    corpus_files.push((
        "PDF, two columns (row-major drawing)",
        "b.pdf",
        corpus::pdf_two_columns(&lr, &rr),
        [left, right].concat(),
    ));

    // Three pages.
    let t = tokens(3, 0, 180);
    let pages: Vec<String> = t
        .chunks(60)
        .map(|p| p.chunks(6).map(line).collect::<Vec<_>>().join("\n"))
        .collect();
    let pr: Vec<&str> = pages.iter().map(String::as_str).collect();
    corpus_files.push(("PDF, 3 pages", "c.pdf", corpus::pdf_pages(&pr), t));

    // DOCX: a heading, paragraphs, a 4x3 table, a closing paragraph.
    let t = tokens(4, 0, 42);
    let cells: Vec<Vec<&str>> = t[12..24]
        .chunks(3)
        .map(|row| row.iter().map(String::as_str).collect())
        .collect();
    let rows: Vec<&[&str]> = cells.iter().map(Vec::as_slice).collect();
    let body = [
        corpus::w_p(Some("Heading1"), &line(&t[0..2])),
        corpus::w_p(None, &line(&t[2..12])),
        corpus::w_table(&rows),
        corpus::w_p(Some("Heading2"), &line(&t[24..26])),
        corpus::w_p(None, &line(&t[26..42])),
    ]
    .concat();
    corpus_files.push(("DOCX, headings + table", "d.docx", corpus::docx(&body), t));

    // XLSX: two sheets.
    let t = tokens(5, 0, 24);
    let s1: Vec<Vec<&str>> = t[..12]
        .chunks(3)
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let s2: Vec<Vec<&str>> = t[12..]
        .chunks(4)
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    let s1r: Vec<&[&str]> = s1.iter().map(Vec::as_slice).collect();
    let s2r: Vec<&[&str]> = s2.iter().map(Vec::as_slice).collect();
    corpus_files.push((
        "XLSX, 2 sheets",
        "e.xlsx",
        corpus::xlsx(&[("One", &s1r), ("Two", &s2r)]),
        t,
    ));

    // PPTX: two slides.
    let t = tokens(6, 0, 20);
    let a: Vec<String> = t[..10].chunks(5).map(line).collect();
    let b: Vec<String> = t[10..].chunks(5).map(line).collect();
    let ar: Vec<&str> = a.iter().map(String::as_str).collect();
    let br: Vec<&str> = b.iter().map(String::as_str).collect();
    corpus_files.push(("PPTX, 2 slides", "f.pptx", corpus::pptx(&[&ar, &br]), t));

    // HTML with a table and a script whose words must not appear.
    let t = tokens(7, 0, 30);
    let html = format!(
        "<!DOCTYPE html><html><body><h1>{}</h1><p>{}</p><table><tr><td>{}</td><td>{}</td></tr><tr><td>{}</td><td>{}</td></tr></table><script>var leak = 'zq7leak';</script><p>{}</p></body></html>",
        line(&t[0..2]),
        line(&t[2..12]),
        t[12],
        t[13],
        t[14],
        t[15],
        line(&t[16..30])
    );
    corpus_files.push(("HTML, table + script", "g.html", html.into_bytes(), t));

    println!("| file | tokens | recall | order |");
    println!("|---|---|---|---|");
    let mut worst: (f64, f64) = (1.0, 1.0);
    for (what, name, bytes, expected) in &corpus_files {
        let got = rig
            .extract(name, bytes)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (recall, order) = fidelity(expected, &got.text);
        println!("| {what} | {} | {recall:.3} | {order:.3} |", expected.len());
        assert!(!got.text.contains("zq7leak"), "{what}: script text leaked");
        worst = (worst.0.min(recall), worst.1.min(order));
        assert!(
            recall >= 0.99 && order >= 0.99,
            "{what}: recall {recall:.3}, order {order:.3}\n{}",
            got.text
        );
    }
    println!("worst: recall {:.3}, order {:.3}", worst.0, worst.1);
}

#[test]
fn the_metrics_see_a_missing_word_and_a_swapped_column() {
    let t = tokens(9, 0, 4);
    assert_eq!(fidelity(&t, &t.join(" ")), (1.0, 1.0));
    let (recall, _) = fidelity(&t, &t[..3].join(" "));
    assert!((recall - 0.75).abs() < 1e-9);
    let swapped = format!("{} {} {} {}", t[2], t[3], t[0], t[1]);
    let (recall, order) = fidelity(&t, &swapped);
    assert_eq!(recall, 1.0);
    assert!((order - 0.5).abs() < 1e-9);
}
