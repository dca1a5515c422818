use super::*;

async fn lines(input: &[u8], cap: usize) -> Vec<Line> {
    let mut r = LineReader::new(input, cap);
    let mut out = Vec::new();
    loop {
        let l = r.next_line().await.unwrap();
        if l == Line::Eof {
            return out;
        }
        out.push(l);
    }
}

#[tokio::test]
async fn lines_are_split_capped_and_resynchronised() {
    let got = lines(b"abc\r\n0123456789\nok\nlast", 5).await;
    assert_eq!(
        got,
        vec![
            Line::Text("abc".into()),
            Line::TooLong { bytes: 10 },
            Line::Text("ok".into()),
            Line::Text("last".into()),
        ]
    );
    assert_eq!(lines(b"\xff\xfe\nx\n", 10).await[0], Line::NotUtf8);
}

#[tokio::test]
async fn a_long_line_split_over_many_reads_is_still_one_error() {
    let data = [vec![b'x'; 100_000], b"\n{\"type\":\"close\"}\n".to_vec()].concat();
    let reader = tokio::io::BufReader::with_capacity(1024, &data[..]);
    let mut r = LineReader::new(reader, 10_000);
    assert_eq!(
        r.next_line().await.unwrap(),
        Line::TooLong { bytes: 100_000 }
    );
    assert_eq!(
        r.next_line().await.unwrap(),
        Line::Text("{\"type\":\"close\"}".into())
    );
}

#[test]
fn parse_errors_name_the_line_and_the_problem() {
    let e = parse_input("{\"type\":\"nope\"}", 3).unwrap().unwrap_err();
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("unknown variant `nope`"), "{e}");
    let e = parse_input("{not json", 1).unwrap().unwrap_err();
    assert!(e.contains("key must be a string"), "{e}");
    assert!(parse_input("   ", 1).is_none());
    assert_eq!(
        parse_input("{\"type\":\"message\",\"text\":\"hi\"}", 1),
        Some(Ok(HostToRunner::Message { text: "hi".into() }))
    );
}
