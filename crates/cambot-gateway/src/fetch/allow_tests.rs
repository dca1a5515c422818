//! The allowlist entry parser and the canonical-spelling check, table-driven.

use url::Url;

use super::FetchAllow;
use super::non_canonical;

#[test]
fn entries_parse_into_scheme_host_and_port() {
    let cases = [
        ("example.com", "https://example.com:443"),
        ("Example.COM", "https://example.com:443"),
        ("example.com:8443", "https://example.com:8443"),
        ("http://example.com", "http://example.com:80"),
        ("http://example.com/", "http://example.com:80"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("https://api.example.com:443", "https://api.example.com:443"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://10.1.2.3:8080", "http://10.1.2.3:8080"),
        ("[2606:4700::1111]", "https://[2606:4700::1111]:443"),
        ("http://[fd00::1]:8080", "http://[fd00::1]:8080"),
        ("localhost:9000", "https://localhost:9000"),
    ];
    for (entry, want) in cases {
        let got = FetchAllow::parse(entry)
            .unwrap_or_else(|e| panic!("{entry}: {e}"))
            .to_string();
        assert_eq!(got, want, "{entry}");
    }
}

#[test]
fn a_bad_entry_is_refused_with_the_entry_and_the_reason() {
    let cases = [
        ("", "without spaces"),
        ("exa mple.com", "without spaces"),
        ("ftp://example.com", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("http://example.com/path", "scheme, host and port only"),
        ("http://example.com/?q=1", "scheme, host and port only"),
        ("http://user:pw@example.com", "scheme, host and port only"),
        ("example.com:99999", "write host, host:port"),
        ("http://", "write host, host:port"),
        (
            "http://2130706433:80",
            "non-canonical spelling of the address 127.0.0.1",
        ),
        ("http://0x7f.1", "non-canonical spelling"),
        ("http://[::ffff:127.0.0.1]", "non-canonical spelling"),
        ("http://0.0.0.0:80", "is an unspecified address"),
        ("http://224.0.0.1", "is a multicast address"),
        ("http://255.255.255.255", "is the broadcast address"),
        ("http://[ff02::1]", "is a multicast address"),
    ];
    for (entry, want) in cases {
        let err = FetchAllow::parse(entry)
            .err()
            .unwrap_or_else(|| panic!("{entry:?} must be refused"))
            .to_string();
        assert!(
            err.starts_with(&format!("fetch_allow_hosts entry {entry:?}: ")) && err.contains(want),
            "{entry:?}: {err}"
        );
    }
}

#[test]
fn an_entry_allows_exactly_its_scheme_host_and_port() {
    let entry = FetchAllow::parse("example.com").unwrap();
    let literal = FetchAllow::parse("http://127.0.0.1:9000").unwrap();
    let cases = [
        (&entry, "https://example.com/a?b", true),
        (&entry, "https://EXAMPLE.com:443/", true),
        (&entry, "http://example.com/", false),
        (&entry, "https://example.com:8443/", false),
        (&entry, "https://www.example.com/", false),
        (&entry, "https://example.com.evil.test/", false),
        (&literal, "http://127.0.0.1:9000/x", true),
        (&literal, "http://127.0.0.1:9001/x", false),
        (&literal, "https://127.0.0.1:9000/x", false),
        (&literal, "http://localhost:9000/x", false),
    ];
    for (entry, url, want) in cases {
        assert_eq!(
            entry.allows(&Url::parse(url).unwrap()),
            want,
            "{entry} {url}"
        );
    }
}

#[test]
fn address_hosts_must_be_written_canonically() {
    let cases: &[(&str, Option<&str>)] = &[
        ("http://127.0.0.1/", None),
        ("http://example.com/", None),
        ("http://EXAMPLE.com/", None),
        ("http://[::1]:80/", None),
        ("http://user@127.0.0.1/", None),
        ("http://2130706433/", Some("2130706433")),
        ("http://0x7f.1/", Some("0x7f.1")),
        ("http://017700000001/", Some("017700000001")),
        ("http://127.1/", Some("127.1")),
        ("http://127.0.0.1./", Some("127.0.0.1.")),
        ("http://0177.0.0.1/", Some("0177.0.0.1")),
        ("http://%31%32%37.0.0.1/", Some("%31%32%37.0.0.1")),
        ("http://[::ffff:127.0.0.1]/", Some("[::ffff:127.0.0.1]")),
        ("http://[0:0::1]/", Some("[0:0::1]")),
        ("http:\\\\0x7f.1/", Some("0x7f.1")),
        ("http:0x7f.1/", Some("0x7f.1")),
    ];
    for (input, want) in cases {
        let url = Url::parse(input).unwrap();
        let got = non_canonical(input, &url);
        match want {
            None => assert_eq!(got, None, "{input}"),
            Some(written) => {
                let got = got.unwrap_or_else(|| panic!("{input} must be refused"));
                assert!(
                    got.starts_with(&format!("{written} is a non-canonical spelling")),
                    "{input}: {got}"
                );
            }
        }
    }
    // A redirect's scheme-relative Location is checked the same way; a path keeps its base.
    let base = Url::parse("http://example.com/a").unwrap();
    let rel = "//0x7f.1/x";
    assert!(non_canonical(rel, &base.join(rel).unwrap()).is_some());
    assert_eq!(non_canonical("/x", &base.join("/x").unwrap()), None);
}
