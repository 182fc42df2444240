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
        pad: 0,
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
            (net, dest_for(rules, 0))
        })
        .collect()
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
    dest_for(rules, expires_ns)
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
