//! Network egress by host name, address prefix, port and protocol, enforced by the eBPF
//! programs on the sandbox's cgroup. Traffic stays on 127.0.0.0/8 and ::1; the "real" DNS
//! server is the test's own (common/dns.rs).

mod common;

use std::net::TcpListener;

use common::dns::TestDns;
use common::{of_kind, only, require_root, Fixture};

/// A TCP listener that accepts (and drops) connections until the test ends.
fn listen(addr: &str) -> u16 {
    let listener = TcpListener::bind(addr).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    port
}

fn egress(rules: &str) -> String {
    format!("[network]\negress = [\n{rules}\n]\n")
}

/// A rule naming loopback (UDP to the discard port), so the test server's answers on
/// 127.0.0.0/8 and ::1 are not refused as DNS rebinding, without opening any TCP port there.
const LOOPBACK_NAMED: &str = "{ cidr = \"127.0.0.0/8\", ports = [9], proto = \"udp\" },\n{ cidr = \"::1/128\", ports = [9], proto = \"udp\" },";

#[test]
fn an_allowed_host_name_resolves_and_connects() {
    if !require_root("an_allowed_host_name_resolves_and_connects") {
        return;
    }
    let port = listen("127.0.0.2:0");
    let dns = TestDns::start(&[("allowed.test", &["127.0.0.2"])]);
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"allowed.test\", ports = [{port}] }},\n{LOOPBACK_NAMED}"
        )),
    );
    let options = dns.option();
    let (answer, _) = f.probe_events(&options, &["resolve", "allowed.test"]);
    assert_eq!(answer, "value 127.0.0.2");
    let (answer, events) = f.probe_events(&options, &["connect", &format!("allowed.test:{port}")]);
    assert_eq!(answer, "ok");
    assert!(of_kind(&events, "network_denied").is_empty(), "{events:?}");
    assert!(
        !of_kind(&events, "exit").is_empty(),
        "the run reported nothing: {events:?}"
    );
    assert!(
        !dns.asked().is_empty(),
        "the name was not looked up through the test's server"
    );
    assert!(
        dns.asked().iter().all(|n| n == "allowed.test"),
        "{:?}",
        dns.asked()
    );
}

#[test]
fn a_name_no_rule_allows_is_refused_reported_and_never_forwarded() {
    if !require_root("a_name_no_rule_allows_is_refused_reported_and_never_forwarded") {
        return;
    }
    let dns = TestDns::start(&[
        ("allowed.test", &["127.0.0.2"]),
        ("denied.test", &["127.0.0.3"]),
    ]);
    let f = Fixture::new(
        "base",
        &egress("{ host = \"allowed.test\", ports = [443] },"),
    );
    let (answer, events) = f.probe_events(&dns.option(), &["resolve", "denied.test"]);
    assert!(answer.starts_with("err"), "{answer}");
    // One lookup (its A and AAAA queries, any retries) is one refusal, with who asked.
    let denied = only(&events, "dns_denied");
    assert_eq!(denied["domain"], "denied.test");
    assert_eq!(
        denied["sandbox"].as_str().map(|s| s.starts_with("test-")),
        Some(true)
    );
    assert_eq!(denied["process"]["comm"], "probe", "{denied}");
    assert!(
        denied["process"]["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/probe")),
        "{denied}"
    );
    assert!(
        !dns.asked().contains(&"denied.test".to_string()),
        "the denied name reached the upstream"
    );
}

#[test]
fn a_direct_connect_to_an_address_never_resolved_is_denied_and_reported() {
    if !require_root("a_direct_connect_to_an_address_never_resolved_is_denied_and_reported") {
        return;
    }
    let port = listen("127.0.0.2:0");
    let dns = TestDns::start(&[("allowed.test", &["127.0.0.2"])]);
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"allowed.test\", ports = [{port}] }},\n{LOOPBACK_NAMED}"
        )),
    );
    let options = dns.option();
    // The very address the allowed name resolves to, but this sandbox never asked for it.
    let (answer, events) = f.probe_events(&options, &["connect", &format!("127.0.0.2:{port}")]);
    assert_eq!(answer, "err EPERM");
    let denied = only(&events, "network_denied");
    assert_eq!(denied["address"], "127.0.0.2");
    assert_eq!(denied["port"], port);
    assert_eq!(denied["protocol"], "tcp");
    assert_eq!(denied["reason"], "not_allowed");
    assert_eq!(denied["process"]["comm"], "probe");
    assert!(denied["process"]["exe"]
        .as_str()
        .is_some_and(|e| e.ends_with("/probe")));
    assert!(denied["process"]["pid"].as_u64().is_some_and(|p| p > 1));
}

#[test]
fn cidr_rules_allow_their_prefix_port_and_protocol_only() {
    if !require_root("cidr_rules_allow_their_prefix_port_and_protocol_only") {
        return;
    }
    let port = listen("127.0.0.2:0");
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ cidr = \"127.0.0.0/30\", ports = [{port}], proto = \"tcp\" }},\n{{ cidr = \"127.0.0.5/32\", ports = [9999], proto = \"udp\" }},"
        )),
    );
    assert_eq!(f.probe(&["connect", &format!("127.0.0.2:{port}")]), "ok");
    // The allowed port just outside the prefix (127.0.0.0/30 ends at .3).
    assert_eq!(
        f.probe(&["connect", &format!("127.0.0.4:{port}")]),
        "err EPERM"
    );
    assert_eq!(f.probe(&["udp-send", "127.0.0.5:9999"]), "ok");
    // The UDP rule does not open TCP, and the TCP rule does not open UDP.
    assert_eq!(
        f.probe(&["udp-send", &format!("127.0.0.2:{port}")]),
        "err EPERM"
    );
}

#[test]
fn udp_to_a_disallowed_address_is_denied_and_reported() {
    if !require_root("udp_to_a_disallowed_address_is_denied_and_reported") {
        return;
    }
    let f = Fixture::new(
        "base",
        &egress("{ cidr = \"127.0.0.5/32\", ports = [9999], proto = \"udp\" },"),
    );
    assert_eq!(f.probe(&["udp-send", "127.0.0.5:9999"]), "ok");
    let (answer, events) = f.probe_events(&[], &["udp-send", "127.0.0.6:9999"]);
    assert_eq!(answer, "err EPERM");
    let denied = only(&events, "network_denied");
    assert_eq!(denied["address"], "127.0.0.6");
    assert_eq!(denied["protocol"], "udp");
}

#[test]
fn ipv6_names_and_prefixes_are_enforced_too() {
    if !require_root("ipv6_names_and_prefixes_are_enforced_too") {
        return;
    }
    let port = listen("[::1]:0");
    let dns = TestDns::start(&[("v6.test", &["::1"])]);
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"v6.test\", ports = [{port}] }},\n{LOOPBACK_NAMED}"
        )),
    );
    let options = dns.option();
    let (answer, _) = f.probe_events(&options, &["connect", &format!("v6.test:{port}")]);
    assert_eq!(answer, "ok");
    // The allowed port at an address no answer gave.
    let (answer, events) = f.probe_events(&options, &["connect", &format!("[fd00::1]:{port}")]);
    assert_eq!(answer, "err EPERM");
    let denied = only(&events, "network_denied");
    assert_eq!(denied["address"], "fd00::1");
    assert_eq!(denied["port"], port);
    // An IPv4 address reached through an IPv6 socket (v4-mapped) is held to the IPv4 rules.
    let v4 = listen("127.0.0.2:0");
    let f = Fixture::new(
        "base",
        &egress(&format!("{{ cidr = \"127.0.0.2/32\", ports = [{v4}] }},")),
    );
    assert_eq!(
        f.probe(&["connect", &format!("[::ffff:127.0.0.2]:{v4}")]),
        "ok"
    );
    assert_eq!(
        f.probe(&["connect", &format!("[::ffff:127.0.0.4]:{v4}")]),
        "err EPERM"
    );
}

#[test]
fn only_tcp_and_udp_sockets_can_be_created() {
    if !require_root("only_tcp_and_udp_sockets_can_be_created") {
        return;
    }
    let f = Fixture::new(
        "base",
        &egress("{ cidr = \"127.0.0.5/32\", ports = [9999] },"),
    );
    // Another transport (UDP-Lite here; ICMP echo, SCTP) could carry data past every port rule.
    assert_eq!(f.probe(&["udplite-socket"]), "err EPERM");
    assert_eq!(f.probe(&["udp-socket"]), "ok");
}

#[test]
fn connect_ports_allow_any_address_on_those_ports_only() {
    if !require_root("connect_ports_allow_any_address_on_those_ports_only") {
        return;
    }
    let port = listen("127.0.0.2:0");
    let other = listen("127.0.0.2:0");
    let f = Fixture::new("base", &format!("[network]\nconnect_ports = [{port}]\n"));
    assert_eq!(f.probe(&["connect", &format!("127.0.0.2:{port}")]), "ok");
    assert_eq!(
        f.probe(&["connect", &format!("127.0.0.2:{other}")]),
        "err EACCES"
    );
    // UDP is not a connect port: closed now that the eBPF layer is there.
    assert_eq!(
        f.probe(&["udp-send", &format!("127.0.0.2:{port}")]),
        "err EPERM"
    );
}

/// The test server, asked directly by an unconfined process: what it answers `name` with.
fn asked_directly(dns: &TestDns, name: &str) -> String {
    let out = std::process::Command::new(common::probe_bin())
        .args(["dns-query", &dns.addr.to_string(), name])
        .output()
        .expect("probe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn an_answer_pointing_into_the_host_is_refused_as_dns_rebinding() {
    if !require_root("an_answer_pointing_into_the_host_is_refused_as_dns_rebinding") {
        return;
    }
    let port = listen("127.0.0.1:0");
    let dns = TestDns::start(&[
        ("evil.allowed.test", &["127.0.0.1"]),
        ("meta.allowed.test", &["169.254.169.254"]),
        ("lan.allowed.test", &["10.1.2.3"]),
    ]);
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"*.allowed.test\", ports = [{port}] }},"
        )),
    );
    for (name, address) in [
        ("evil.allowed.test", "127.0.0.1"),
        ("meta.allowed.test", "169.254.169.254"),
        ("lan.allowed.test", "10.1.2.3"),
    ] {
        // The twin: the server does answer with the address inside.
        assert_eq!(
            asked_directly(&dns, name),
            format!("value No Error {address}")
        );
        let (answer, events) = f.probe_events(&dns.option(), &["resolve", name]);
        assert!(answer.starts_with("err"), "{name}: {answer}");
        let denied = only(&events, "dns_denied");
        assert_eq!(denied["reason"], "rebind", "{events:?}");
        assert_eq!(denied["address"], address);
    }
    // The address was never entered: the host's loopback stays closed.
    let (answer, _) = f.probe_events(&dns.option(), &["connect", &format!("127.0.0.1:{port}")]);
    assert_eq!(answer, "err EPERM");
    // A cidr rule naming the range lets such answers through.
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"*.allowed.test\", ports = [{port}] }},\n{LOOPBACK_NAMED}"
        )),
    );
    let (answer, _) = f.probe_events(
        &dns.option(),
        &["connect", &format!("evil.allowed.test:{port}")],
    );
    assert_eq!(answer, "ok");
}

#[test]
fn only_the_records_of_the_name_asked_are_passed_on_and_allowed() {
    if !require_root("only_the_records_of_the_name_asked_are_passed_on_and_allowed") {
        return;
    }
    let port = listen("127.0.0.2:0");
    let dns = TestDns::start(&[
        ("mixed.test", &["127.0.0.2", "other.test=127.0.0.3"]),
        ("alias.test", &["cname=mixed.test"]),
    ]);
    // The twin: the server's answer carries a record of another owner.
    assert_eq!(
        asked_directly(&dns, "mixed.test"),
        "value No Error 127.0.0.2 127.0.0.3"
    );
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"mixed.test\", ports = [{port}] }},\n{{ host = \"alias.test\", ports = [{port}] }},\n{LOOPBACK_NAMED}"
        )),
    );
    let options = dns.option();
    assert_eq!(
        f.probe_with(&options, &["resolve", "mixed.test"]),
        "value 127.0.0.2"
    );
    // Through a CNAME chain the target's records are kept.
    assert_eq!(
        f.probe_with(&options, &["resolve", "alias.test"]),
        "value 127.0.0.2"
    );
    // The other owner's address was not entered.
    let (answer, _) = f.probe_events(&options, &["connect", &format!("127.0.0.3:{port}")]);
    assert_eq!(answer, "err EPERM");
}

#[test]
fn upstream_gets_the_resolvers_own_query_and_odd_names_are_refused() {
    if !require_root("upstream_gets_the_resolvers_own_query_and_odd_names_are_refused") {
        return;
    }
    let dns = TestDns::start(&[("allowed.test", &["127.0.0.2"])]);
    let smuggled = |raw: &[Vec<u8>]| raw.iter().any(|q| q.windows(8).any(|w| w == b"smuggled"));
    // The twin: a query sent straight to the server arrives with what it carried.
    assert!(asked_directly(&dns, "allowed.test").starts_with("value No Error"));
    assert!(smuggled(&dns.raw()));
    let dns = TestDns::start(&[("allowed.test", &["127.0.0.2"])]);
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ host = \"allowed.test\", ports = [443] }},\n{LOOPBACK_NAMED}"
        )),
    );
    let options = dns.option();
    // Any server on port 53 is the sandbox's resolver.
    assert_eq!(
        f.probe_with(&options, &["dns-query", "127.0.0.53:53", "allowed.test"]),
        "value No Error 127.0.0.2"
    );
    assert_eq!(dns.asked(), ["allowed.test"]);
    assert!(
        !smuggled(&dns.raw()),
        "the sandbox's bytes reached the upstream"
    );
    // A label no host name has: refused, reported, never forwarded.
    let (answer, events) = f.probe_events(
        &options,
        &["dns-query", "127.0.0.53:53", "a b\u{1b}[2J.allowed.test"],
    );
    assert_eq!(answer, "value Query Refused");
    let denied = only(&events, "dns_denied");
    assert_eq!(denied["reason"], "bad_name");
    assert_eq!(dns.asked(), ["allowed.test"]);
}

/// The bpffs holding Cordon's pins covered by another bpffs mount: the next run finds no
/// pins and loads a second set of programs. The first set, still attached to the same
/// cgroup and knowing none of the new sandboxes, once refused all their connections without
/// an event. The loader now asks the kernel what runs on its hooks and detaches stale
/// copies; and when the cover goes, the first set's pins are back but their links are
/// detached: that set is not adopted but loaded afresh.
#[test]
fn a_covered_bpffs_leaves_no_stale_programs_refusing_connections() {
    if !require_root("a_covered_bpffs_leaves_no_stale_programs_refusing_connections") {
        return;
    }
    let port = listen("127.0.0.2:0");
    let f = Fixture::new(
        "base",
        &egress(&format!(
            "{{ cidr = \"127.0.0.2/32\", ports = [{port}], proto = \"tcp\" }}"
        )),
    );
    let allowed = format!("127.0.0.2:{port}");
    let denied = format!("127.0.0.3:{port}");
    let enforced = |when: &str| {
        let (answer, events) = f.probe_events(&[], &["connect", &allowed]);
        assert_eq!(answer, "ok", "{when}: the allowed connection: {events:?}");
        let (answer, events) = f.probe_events(&[], &["connect", &denied]);
        assert_eq!(answer, "err EPERM", "{when}: the denied connection");
        let reported = of_kind(&events, "network_denied");
        assert!(
            reported.iter().any(|e| e["address"] == "127.0.0.3"),
            "{when}: the denial is reported: {events:?}"
        );
    };
    enforced("before");

    // The bpffs Cordon pins in, covered.
    let cover = common::CoveredBpffs::new();
    enforced("with the pins covered");

    // The cover gone: the first set's pins are back, their links detached.
    drop(cover);
    enforced("with the pins uncovered");
}
