use futures::StreamExt;

use super::*;

fn redactor(values: &[&str]) -> Redactor {
    Redactor::new(values.iter().map(|v| Secret::new(*v)))
}

fn whole(r: &Redactor, input: &[u8]) -> Vec<u8> {
    r.redact(input).unwrap_or_else(|| input.to_vec())
}

/// Streams `input` cut at `cuts` through a fresh [`StreamRedactor`].
fn streamed(r: &Redactor, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut s = StreamRedactor::new(r.clone());
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        out.extend_from_slice(&s.push(Bytes::copy_from_slice(&input[at..cut])));
        assert!(
            s.held.len() < 24,
            "holds back less than the longest value: {}",
            s.held.len()
        );
        at = cut;
    }
    out.extend_from_slice(&s.finish());
    out
}

const KEY: &str = "sk-ant-tenant-a-0123456";
const SHORT_KEY: &str = "ghp_12345678";

#[test]
fn every_occurrence_becomes_redacted() {
    let r = redactor(&[KEY, SHORT_KEY]);
    let input = format!("a {KEY} b {SHORT_KEY}{KEY} c");
    assert_eq!(
        String::from_utf8(whole(&r, input.as_bytes())).unwrap(),
        "a [REDACTED] b [REDACTED][REDACTED] c"
    );
    assert_eq!(r.redact(b"nothing here"), None);
}

#[test]
fn values_shorter_than_the_minimum_are_left_alone() {
    let r = redactor(&["1234567", "abc"]);
    assert!(r.is_empty());
    assert_eq!(r.redact(b"1234567 abc"), None);
}

#[test]
fn the_longest_value_at_a_position_wins() {
    // One value is a prefix of another: the longer one is replaced whole.
    let r = redactor(&["token-abcdef", "token-abcdef-extended"]);
    assert_eq!(
        whole(&r, b"x token-abcdef-extended y token-abcdef z"),
        b"x [REDACTED] y [REDACTED] z".to_vec()
    );
}

#[test]
fn a_split_at_every_offset_gives_the_same_answer() {
    let r = redactor(&[KEY, SHORT_KEY, "token-abcdef", "token-abcdef-extended"]);
    let input = format!(
        "data: {{\"text\":\"{KEY}\"}}\n\nsk-ant-tenant-a-01 {SHORT_KEY}{SHORT_KEY} token-abcdef-extende token-abcdef-extended {KEY}"
    );
    let input = input.as_bytes();
    let expected = whole(&r, input);
    assert!(!String::from_utf8_lossy(&expected).contains(KEY));
    assert!(String::from_utf8_lossy(&expected).contains("sk-ant-tenant-a-01 "));
    for a in 0..=input.len() {
        assert_eq!(streamed(&r, input, &[a]), expected, "one split at {a}");
        for b in a..=input.len() {
            assert_eq!(streamed(&r, input, &[a, b]), expected, "splits at {a}, {b}");
        }
    }
    // Byte by byte.
    let cuts: Vec<usize> = (1..input.len()).collect();
    assert_eq!(streamed(&r, input, &cuts), expected);
}

#[test]
fn only_a_possible_prefix_is_held_back() {
    let r = redactor(&[KEY]);
    let mut s = StreamRedactor::new(r);
    // Nothing that could start the value: everything goes on at once.
    assert_eq!(
        &s.push(Bytes::from_static(b"hello world ")).to_vec(),
        b"hello world "
    );
    // The tail may be the value's start: held.
    assert_eq!(
        &s.push(Bytes::from_static(b"ab sk-ant-te")).to_vec(),
        b"ab "
    );
    assert_eq!(s.held.len(), "sk-ant-te".len());
    // It was not: released with the next chunk.
    assert_eq!(&s.push(Bytes::from_static(b"xt")).to_vec(), b"sk-ant-text");
    assert!(s.held.is_empty());
}

#[test]
fn the_end_of_the_stream_releases_what_was_held() {
    let r = redactor(&[KEY]);
    let mut s = StreamRedactor::new(r);
    assert!(s.push(Bytes::from_static(b"sk-ant")).is_empty());
    assert_eq!(&s.finish().to_vec(), b"sk-ant");
}

#[test]
fn no_values_pass_chunks_through_untouched() {
    let mut s = StreamRedactor::new(Redactor::default());
    let chunk = Bytes::from_static(b"abc");
    assert_eq!(s.push(chunk.clone()), chunk);
}

#[tokio::test]
async fn the_stream_wrapper_redacts_and_counts() {
    let stats = Arc::new(crate::gateway::GatewayStats::default());
    let chunks: Vec<Result<Bytes, std::io::Error>> = ["x sk-ant-ten", "ant-a-0123", "456 y ", "sk"]
        .into_iter()
        .map(|c| Ok(Bytes::from(c)))
        .collect();
    let body = Redacted::new(
        futures::stream::iter(chunks),
        redactor(&[KEY]),
        Arc::clone(&stats),
    );
    let out: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
    assert!(out.iter().all(|c| !c.is_empty()), "no empty chunks");
    assert_eq!(out.concat(), b"x [REDACTED] y sk".to_vec());
    assert_eq!(stats.redacted.load(Ordering::Relaxed), 1);
}
