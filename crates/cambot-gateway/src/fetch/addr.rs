//! Which addresses the fetch tool must never reach on its own: everything that is not a
//! public unicast address, including the IPv6 forms that carry such an IPv4 address.

use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;

/// Why an address is not public. Displayed as the tail of "`<addr>` is ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unspecified,
    Loopback,
    Private,
    SharedCgnat,
    LinkLocal,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    Reserved,
    UniqueLocal,
    SiteLocal,
    /// `::a.b.c.d`: deprecated, and Linux routes some of it to the embedded IPv4 address.
    Ipv4Compatible,
    /// An IPv6 form (mapped, NAT64, 6to4) of an IPv4 address that is itself refused.
    Embeds(Ipv4Addr, Embedding, &'static Class),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Embedding {
    Mapped,
    Nat64,
    SixToFour,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedCgnat => "a shared (carrier-grade NAT) address",
            Self::LinkLocal => "a link-local address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Documentation => "a documentation address",
            Self::Benchmarking => "a benchmarking address",
            Self::Reserved => "a reserved address",
            Self::UniqueLocal => "a unique-local address",
            Self::SiteLocal => "a site-local address",
            Self::Ipv4Compatible => "an IPv4-compatible address",
            Self::Embeds(v4, how, class) => {
                let how = match how {
                    Embedding::Mapped => "an IPv4-mapped",
                    Embedding::Nat64 => "a NAT64",
                    Embedding::SixToFour => "a 6to4",
                };
                return write!(f, "{how} form of {v4}, {class}");
            }
        };
        f.write_str(s)
    }
}

/// `None` for a public unicast address; else why it is refused.
pub(crate) fn classify(ip: IpAddr) -> Option<Class> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).copied(),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

// 'static so an IPv6 form can name the class of the address it carries.
fn classify_v4(ip: Ipv4Addr) -> Option<&'static Class> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => &Class::Unspecified,
        (10, ..) => &Class::Private,
        (100, 64..=127, _) => &Class::SharedCgnat,
        (127, ..) => &Class::Loopback,
        (169, 254, _) => &Class::LinkLocal,
        (172, 16..=31, _) => &Class::Private,
        (192, 0, 0) | (192, 88, 99) => &Class::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => &Class::Documentation,
        (192, 168, _) => &Class::Private,
        (198, 18..=19, _) => &Class::Benchmarking,
        (224..=239, ..) => &Class::Multicast,
        _ if ip.is_broadcast() => &Class::Broadcast,
        (240..=255, ..) => &Class::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        return Some(Class::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Class::Loopback);
    }
    let low_v4 = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    let embeds = |v4: Ipv4Addr, how| classify_v4(v4).map(|c| Class::Embeds(v4, how, c));
    match seg {
        [0, 0, 0, 0, 0, 0xffff, ..] => return embeds(low_v4, Embedding::Mapped),
        [0, 0, 0, 0, 0, 0, ..] => return Some(Class::Ipv4Compatible),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => return embeds(low_v4, Embedding::Nat64),
        [0x2002, hi, lo, ..] => {
            let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            return embeds(v4, Embedding::SixToFour);
        }
        _ => {}
    }
    let first = seg[0];
    Some(match first {
        _ if first & 0xff00 == 0xff00 => Class::Multicast,
        _ if first & 0xfe00 == 0xfc00 => Class::UniqueLocal,
        _ if first & 0xffc0 == 0xfe80 => Class::LinkLocal,
        _ if first & 0xffc0 == 0xfec0 => Class::SiteLocal,
        0x2001 if seg[1] == 0x0db8 => Class::Documentation,
        0x3fff if seg[1] < 0x1000 => Class::Documentation,
        // 2001::/23: IETF protocol assignments (Teredo, ORCHID, benchmarking...).
        0x2001 if seg[1] < 0x0200 => Class::Reserved,
        // Outside 2000::/3 nothing is assigned as global unicast.
        _ if first & 0xe000 != 0x2000 => Class::Reserved,
        _ => return None,
    })
}
