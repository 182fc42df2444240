//! The egress policy in the form the eBPF programs read: destination entries (address
//! prefix -> port ranges) for the `dests4`/`dests6` tries, and the DNS side of host rules.
//!
//! The tries return the longest matching prefix only, so each entry carries the union of
//! every rule whose prefix contains it: a `/32` entered for a DNS answer also holds the ports
//! of a `10.0.0.0/8` rule around it. The resolver ([`resolver`]) enters those `/32`s.

pub mod resolver;

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ebpf::abi;
use crate::policy::{Destination, EgressRule, NetPolicy};

/// The port ranges of `rules`, merged (adjacent ports with the same protocols become one
/// range). More than the kernel entry holds are cut, and the cut ones are denied.
pub fn dest_for<'a>(rules: impl IntoIterator<Item = &'a EgressRule>, expires_ns: u64) -> abi::Dest {
    let mut protos: BTreeMap<u16, u8> = BTreeMap::new();
    for rule in rules {
        let mask = if rule.tcp {
            abi::CORDON_PROTO_TCP as u8
        } else {
            0
        } | if rule.udp {
            abi::CORDON_PROTO_UDP as u8
        } else {
            0
        };
        for &port in &rule.ports {
            *protos.entry(port).or_default() |= mask;
        }
    }
    let mut ranges: Vec<abi::PortRange> = Vec::new();
    for (port, mask) in protos {
        match ranges.last_mut() {
            Some(last) if last.protos == mask && u32::from(last.hi) + 1 == u32::from(port) => {
                last.hi = port
            }
            _ => ranges.push(abi::PortRange {
                lo: port,
                hi: port,
                protos: mask,
                pad: [0; 3],
            }),
        }
    }
    if ranges.len() > abi::CORDON_MAX_PORT_RANGES {
        tracing::warn!(
            "one destination allows {} port ranges; the kernel entry holds {}, the rest stay denied",
            ranges.len(),
            abi::CORDON_MAX_PORT_RANGES
        );
        ranges.truncate(abi::CORDON_MAX_PORT_RANGES);
    }
    let mut dest = abi::Dest {
        expires_ns,
        nranges: ranges.len() as u32,
        flags: 0,
        ranges: [abi::PortRange {
            lo: 0,
            hi: 0,
            protos: 0,
            pad: [0; 3],
        }; abi::CORDON_MAX_PORT_RANGES],
    };
    dest.ranges[..ranges.len()].copy_from_slice(&ranges);
    dest
}

fn cidrs(policy: &NetPolicy) -> impl Iterator<Item = (&ipnet::IpNet, &EgressRule)> {
    policy.egress.iter().filter_map(|r| match &r.to {
        Destination::Cidr(net) => Some((net, r)),
        Destination::Host(_) => None,
    })
}

/// The entries every sandbox of this policy starts with: one per distinct address prefix.
pub fn static_dests(policy: &NetPolicy) -> Vec<(ipnet::IpNet, abi::Dest)> {
    let mut nets: Vec<ipnet::IpNet> = cidrs(policy).map(|(net, _)| *net).collect();
    nets.sort();
    nets.dedup();
    nets.into_iter()
        .map(|net| {
            let rules = cidrs(policy)
                .filter(|(outer, _)| outer.contains(&net))
                .map(|(_, r)| r);
            let mut dest = dest_for(rules, 0);
            if inside_prefixes().iter().any(|i| i.contains(&net)) {
                dest.flags |= abi::CORDON_DEST_INSIDE as u32;
            }
            (net, dest)
        })
        .collect()
}

/// Under `mode = "audit"`: an entry for each of the host's networks and own addresses
/// (`host`) that the profile has none for, flagged so an audit refuses it too, with the
/// ports of the profile's prefix rules that hold it (what enforce mode allows there, an
/// audit allows).
pub fn inside_dests(policy: &NetPolicy, host: &[IpAddr]) -> Vec<(ipnet::IpNet, abi::Dest)> {
    let have: Vec<ipnet::IpNet> = cidrs(policy).map(|(net, _)| *net).collect();
    let mut nets = inside_prefixes();
    nets.extend(host.iter().map(|a| ipnet::IpNet::from(*a)));
    nets.sort();
    nets.dedup();
    nets.into_iter()
        .filter(|net| !have.contains(net))
        .map(|net| {
            let rules = cidrs(policy)
                .filter(|(outer, _)| outer.contains(&net))
                .map(|(_, r)| r);
            let mut dest = dest_for(rules, 0);
            dest.flags |= abi::CORDON_DEST_INSIDE as u32;
            (net, dest)
        })
        .collect()
}

/// The addresses of the host's networks and the special ones: loopback, link-local (cloud
/// metadata at 169.254.169.254 among them), private (RFC 1918, shared 100.64/10, unique
/// local fc00::/7), unspecified, "this network", broadcast, multicast and reserved (240/4,
/// 198.18/15 benchmarking, 192.0.0/24 protocol assignments); and the IPv4 ones written as
/// IPv6 in any of the usual ways (mapped `::ffff:`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::/96`, 6to4 `2002::/16`). A DNS answer may not point into them (rebinding), and
/// an audit does not let a connection into them through.
pub fn inside_prefixes() -> Vec<ipnet::IpNet> {
    use ipnet::{IpNet, Ipv4Net, Ipv6Net};
    use std::net::{Ipv4Addr, Ipv6Addr};
    const V4: &[([u8; 4], u8)] = &[
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
    ];
    const V6: &[(Ipv6Addr, u8)] = &[
        (Ipv6Addr::UNSPECIFIED, 128),
        (Ipv6Addr::LOCALHOST, 128),
        (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
    ];
    // Every length above is a valid one: `new` cannot fail on them.
    let mut out: Vec<IpNet> = Vec::new();
    for &(octets, len) in V4 {
        let v4 = u32::from(Ipv4Addr::from(octets));
        out.extend(Ipv4Net::new(Ipv4Addr::from(v4), len).ok().map(IpNet::V4));
        // The same addresses written as IPv6: at bit 96 (mapped, compatible, NAT64) or bit
        // 16 (6to4).
        for (base, at) in [
            (0xffff_u128 << 32, 96),
            (0, 96),
            (0x0064_ff9b_u128 << 96, 96),
            (0x2002_u128 << 112, 16),
        ] {
            let shift = 128 - u32::from(at) - 32;
            let addr = Ipv6Addr::from(base | (u128::from(v4) << shift));
            out.extend(Ipv6Net::new(addr, at + len).ok().map(IpNet::V6));
        }
    }
    for &(addr, len) in V6 {
        out.extend(Ipv6Net::new(addr, len).ok().map(IpNet::V6));
    }
    out
}

/// Whether the sandbox's resolver may answer `name`: a host rule names it, or some rule
/// allows every address anyway (then refusing names would protect nothing).
pub fn name_allowed(policy: &NetPolicy, name: &str) -> bool {
    policy.egress.iter().any(|r| match &r.to {
        Destination::Host(_) => r.to.matches_name(name),
        Destination::Cidr(net) => net.prefix_len() == 0,
    })
}

/// The entry for an address the resolver answered for `name`: the host rules naming it and
/// the prefix rules containing the address, valid until `expires_ns`.
pub fn answer_dest(policy: &NetPolicy, name: &str, addr: IpAddr, expires_ns: u64) -> abi::Dest {
    let rules = policy.egress.iter().filter(|r| match &r.to {
        Destination::Host(_) => r.to.matches_name(name),
        Destination::Cidr(net) => net.contains(&addr),
    });
    let mut dest = dest_for(rules, expires_ns);
    if resolver::internal(addr) {
        dest.flags |= abi::CORDON_DEST_INSIDE as u32;
    }
    dest
}

/// Adds the ranges of `extra` to `into` (another name answered with the same address).
pub fn merge_dest(into: &mut abi::Dest, extra: &abi::Dest) {
    for range in &extra.ranges[..extra.nranges as usize] {
        let have = &into.ranges[..into.nranges as usize];
        if have.contains(range) {
            continue;
        }
        if (into.nranges as usize) < abi::CORDON_MAX_PORT_RANGES {
            into.ranges[into.nranges as usize] = *range;
            into.nranges += 1;
        }
    }
    // 0 is "never expires" (a prefix rule of the profile), which outlives any answer.
    into.expires_ns = if into.expires_ns == 0 || extra.expires_ns == 0 {
        0
    } else {
        into.expires_ns.max(extra.expires_ns)
    };
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC cannot fail on Linux; a zero would make every answer expire early,
    // never late.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |now| {
        (now.tv_sec() as u64).saturating_mul(1_000_000_000) + now.tv_nsec() as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(to: &str, ports: &[u16], tcp: bool, udp: bool) -> EgressRule {
        EgressRule {
            to: match to.parse::<ipnet::IpNet>() {
                Ok(net) => Destination::Cidr(net),
                Err(_) => Destination::Host(to.into()),
            },
            ports: ports.to_vec(),
            tcp,
            udp,
        }
    }

    fn policy(rules: Vec<EgressRule>) -> NetPolicy {
        NetPolicy {
            connect_tcp: vec![],
            bind_tcp: vec![],
            egress: rules,
            socket_families: vec![],
        }
    }

    #[test]
    fn adjacent_ports_with_the_same_protocols_become_one_range() {
        let d = dest_for(&[rule("10.0.0.0/8", &[80, 81, 82, 443], true, false)], 0);
        assert_eq!(d.nranges, 2);
        assert_eq!((d.ranges[0].lo, d.ranges[0].hi), (80, 82));
        assert_eq!((d.ranges[1].lo, d.ranges[1].hi), (443, 443));
        assert_eq!(d.ranges[0].protos, abi::CORDON_PROTO_TCP as u8);
    }

    #[test]
    fn a_nested_prefix_carries_the_ports_of_the_prefixes_around_it() {
        let p = policy(vec![
            rule("10.0.0.0/8", &[22], true, false),
            rule("10.1.0.0/16", &[5432], true, false),
        ]);
        let dests = static_dests(&p);
        assert_eq!(dests.len(), 2);
        let inner = dests.iter().find(|(n, _)| n.prefix_len() == 16).unwrap();
        assert_eq!(
            inner.1.nranges, 2,
            "the /16 holds its own port and the /8's"
        );
        let outer = dests.iter().find(|(n, _)| n.prefix_len() == 8).unwrap();
        assert_eq!(outer.1.nranges, 1);
    }

    #[test]
    fn host_patterns_match_names_below_them_only() {
        let star = Destination::Host("*.githubusercontent.com".into());
        assert!(star.matches_name("raw.githubusercontent.com."));
        assert!(star.matches_name("a.b.GithubUserContent.com"));
        assert!(!star.matches_name("githubusercontent.com"));
        assert!(!star.matches_name("evilgithubusercontent.com"));
        let exact = Destination::Host("pypi.org".into());
        assert!(exact.matches_name("PyPI.org."));
        assert!(!exact.matches_name("files.pypi.org"));
    }

    #[test]
    fn names_are_allowed_by_host_rules_or_by_a_rule_for_every_address() {
        let p = policy(vec![rule("pypi.org", &[443], true, true)]);
        assert!(name_allowed(&p, "pypi.org"));
        assert!(!name_allowed(&p, "example.com"));
        let any = policy(vec![rule("0.0.0.0/0", &[443], true, false)]);
        assert!(name_allowed(&any, "example.com"));
    }

    #[test]
    fn an_answer_gets_the_ports_of_its_name_and_of_prefixes_containing_it() {
        let p = policy(vec![
            rule("pypi.org", &[443], true, true),
            rule("10.0.0.0/8", &[22], true, false),
        ]);
        let d = answer_dest(&p, "pypi.org", "10.1.2.3".parse().unwrap(), 99);
        assert_eq!(d.nranges, 2);
        assert_eq!(d.expires_ns, 99);
        let outside = answer_dest(&p, "pypi.org", "192.0.2.1".parse().unwrap(), 99);
        assert_eq!(outside.nranges, 1);
    }
}
