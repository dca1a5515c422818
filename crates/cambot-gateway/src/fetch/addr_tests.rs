//! The address classifier, table-driven: every refused range at its edges, the IPv6 forms that
//! carry an IPv4 address, and public addresses next to them that stay allowed.

use std::net::IpAddr;

use super::classify;

#[test]
fn every_non_public_range_is_refused_with_its_class_and_public_neighbours_pass() {
    let cases: &[(&str, Option<&str>)] = &[
        ("0.0.0.0", Some("an unspecified address")),
        ("0.1.2.3", Some("an unspecified address")),
        ("10.0.0.1", Some("a private address")),
        ("10.255.255.255", Some("a private address")),
        ("11.0.0.1", None),
        ("100.63.255.255", None),
        ("100.64.0.1", Some("a shared (carrier-grade NAT) address")),
        (
            "100.127.255.255",
            Some("a shared (carrier-grade NAT) address"),
        ),
        ("100.128.0.0", None),
        ("127.0.0.1", Some("a loopback address")),
        ("127.255.0.9", Some("a loopback address")),
        ("169.254.169.254", Some("a link-local address")),
        ("169.254.0.1", Some("a link-local address")),
        ("169.255.0.1", None),
        ("172.15.255.255", None),
        ("172.16.0.1", Some("a private address")),
        ("172.31.255.255", Some("a private address")),
        ("172.32.0.0", None),
        ("192.0.0.8", Some("a reserved address")),
        ("192.0.2.1", Some("a documentation address")),
        ("192.88.99.1", Some("a reserved address")),
        ("192.167.255.255", None),
        ("192.168.1.1", Some("a private address")),
        ("198.18.0.1", Some("a benchmarking address")),
        ("198.51.100.7", Some("a documentation address")),
        ("203.0.113.9", Some("a documentation address")),
        ("224.0.0.1", Some("a multicast address")),
        ("239.255.255.250", Some("a multicast address")),
        ("240.0.0.1", Some("a reserved address")),
        ("255.255.255.255", Some("the broadcast address")),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
        ("::", Some("an unspecified address")),
        ("::1", Some("a loopback address")),
        ("fc00::1", Some("a unique-local address")),
        ("fdff:ffff::1", Some("a unique-local address")),
        ("fe80::1", Some("a link-local address")),
        ("febf::1", Some("a link-local address")),
        ("fec0::1", Some("a site-local address")),
        ("ff02::1", Some("a multicast address")),
        ("2001:db8::1", Some("a documentation address")),
        ("3fff::1", Some("a documentation address")),
        ("2001::1", Some("a reserved address")),
        ("100::1", Some("a reserved address")),
        ("64:ff9b:1::1", Some("a reserved address")),
        ("4000::1", Some("a reserved address")),
        ("::7f00:1", Some("an IPv4-compatible address")),
        ("::808:808", Some("an IPv4-compatible address")),
        (
            "::ffff:127.0.0.1",
            Some("an IPv4-mapped form of 127.0.0.1, a loopback address"),
        ),
        (
            "::ffff:10.0.0.1",
            Some("an IPv4-mapped form of 10.0.0.1, a private address"),
        ),
        (
            "::ffff:169.254.169.254",
            Some("an IPv4-mapped form of 169.254.169.254, a link-local address"),
        ),
        ("::ffff:8.8.8.8", None),
        (
            "64:ff9b::a9fe:a9fe",
            Some("a NAT64 form of 169.254.169.254, a link-local address"),
        ),
        ("64:ff9b::808:808", None),
        (
            "2002:7f00:1::1",
            Some("a 6to4 form of 127.0.0.1, a loopback address"),
        ),
        (
            "2002:c0a8:101::",
            Some("a 6to4 form of 192.168.1.1, a private address"),
        ),
        ("2002:808:808::1", None),
        ("2606:4700::1111", None),
        ("2a00:1450:4001::200e", None),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let ip: IpAddr = text.parse().unwrap();
        let got = classify(ip).map(|c| c.to_string());
        if got.as_deref() != *want {
            wrong.push(format!("{text}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
