//! The sandbox's DNS resolver. The eBPF programs send every UDP datagram the sandbox
//! addresses to port 53 here (127.0.0.1 or [::1], this resolver's ports), whatever server it
//! meant, and make the answer look like it came from that server.
//!
//! A name no rule allows gets REFUSED and a `dns_denied` event; so does a query for what is
//! not a host name. For an allowed one the resolver builds a query of its own (the
//! sandbox's bytes never leave the host) and sends it to the host's resolvers. Of the
//! answer it keeps only the records of the name asked and its CNAME chain; if one of their
//! addresses points into the host or its networks (loopback, link-local, private,
//! unspecified, multicast, the host's own addresses) and no `cidr` rule names it, the query
//! is refused as DNS rebinding. Every address kept is entered into the sandbox's allow map,
//! with the rule's ports and the answer's time to live, *before* the answer is passed on:
//! by the time the sandbox can connect, the kernel lets it.
//!
//! A refusal names the process that asked (the owner of the client's socket, found among
//! the sandbox's processes), and is reported once: the same name refused again within
//! [`REPEAT_WINDOW`] (an A and an AAAA query of one lookup, a resolver's retries) adds no
//! event.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::ebpf::Kernel;
use crate::event::{DnsReason, What};
use crate::policy::NetPolicy;
use crate::report::{Reporter, Stop};

/// Shortest time an answered address stays allowed, whatever the answer's TTL: programs
/// connect a moment after resolving, and many cache answers for a while.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time an answered address stays allowed without being asked again.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long an upstream server gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The resolver's sockets, bound before the sandbox starts so their ports can be registered.
#[derive(Debug)]
pub struct Resolver {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
}

/// What the resolver needs to answer for one sandbox.
pub struct Answering {
    pub kernel: Arc<Kernel>,
    pub cgroup_id: u64,
    /// The sandbox's cgroup directory, whose processes may have asked.
    pub cgroup: std::path::PathBuf,
    /// Names refused lately, and when: a repeat adds no event.
    pub refused: Mutex<HashMap<(String, DnsReason), std::time::Instant>>,
    pub policy: NetPolicy,
    pub upstreams: Vec<SocketAddr>,
    /// Which name each allowed address was answered for, so a later denial can name it.
    pub names: Arc<Mutex<HashMap<IpAddr, String>>>,
    pub reporter: Reporter,
    /// The host's own addresses, which no answer may point the sandbox at.
    pub host_addresses: Vec<IpAddr>,
    /// `mode = "audit"`: a name the profile would refuse is answered, and reported with
    /// `enforced: false` (its addresses are not entered: the sandbox's connections to them
    /// are reported too, by name). A query for what is not a host name, and an answer into
    /// the host or its networks, are still refused.
    pub audited: bool,
}

impl Resolver {
    pub fn bind() -> io::Result<Self> {
        let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        // A host without IPv6 on loopback still gets IPv4 DNS.
        let v6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).ok();
        Ok(Self { v4, v6 })
    }

    /// The ports to register for the sandbox (0: no IPv6 resolver).
    pub fn ports(&self) -> (u16, u16) {
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        (port(&self.v4), self.v6.as_ref().map_or(0, port))
    }

    /// Answers on every socket, one thread each, until `stop` is set.
    pub fn serve(
        self,
        answering: Answering,
        stop: Arc<Stop>,
    ) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
        let answering = Arc::new(answering);
        let mut threads = Vec::new();
        for socket in std::iter::once(self.v4).chain(self.v6) {
            socket.set_nonblocking(true)?;
            let answering = Arc::clone(&answering);
            let stop = Arc::clone(&stop);
            threads.push(
                std::thread::Builder::new()
                    .name("cordon-dns".into())
                    .spawn(move || serve_socket(&socket, &answering, &stop))?,
            );
        }
        Ok(threads)
    }
}

/// The `nameserver`s of a resolv.conf, on port 53.
pub fn upstreams_from(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(addr, 53))
        })
        .collect()
}

fn serve_socket(socket: &UdpSocket, answering: &Answering, stop: &Stop) {
    let mut buf = [0u8; 4096];
    while !stop.is_stopped() {
        if !stop.wait(std::os::fd::AsFd::as_fd(socket)) {
            continue;
        }
        let (len, client) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!("the DNS resolver stopped: {e}");
                return;
            }
        };
        if let Some(reply) = answering.answer(&buf[..len], client) {
            if let Err(e) = socket.send_to(&reply, client) {
                tracing::debug!("cannot answer {client}: {e}");
            }
        }
    }
}

/// How long a refused name stays refused without a new event.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(2);

impl Answering {
    /// Whether `domain` was not refused for `reason` within [`REPEAT_WINDOW`]; notes it.
    fn first_refusal(&self, domain: &str, reason: DnsReason) -> bool {
        let now = std::time::Instant::now();
        let Ok(mut refused) = self.refused.lock() else {
            return true;
        };
        refused.retain(|_, at| now.duration_since(*at) < REPEAT_WINDOW);
        // The window runs from the reported one: a name asked every second is reported
        // every two, not once for good.
        let key = (domain.to_string(), reason);
        if refused.contains_key(&key) {
            return false;
        }
        refused.insert(key, now);
        true
    }

    /// The reply to one query from `client`; `None` for a datagram that is not a DNS query
    /// at all.
    pub fn answer(&self, query: &[u8], client: SocketAddr) -> Option<Vec<u8>> {
        let message = Message::from_vec(query).ok()?;
        if message.metadata.message_type != MessageType::Query {
            return None;
        }
        let id = message.metadata.id;
        let op_code = message.metadata.op_code;
        let reply = |code: ResponseCode| {
            let mut m = Message::error_msg(id, op_code, code);
            m.queries = message.queries.clone();
            m.to_vec().ok()
        };
        let [question] = message.queries.as_slice() else {
            return reply(ResponseCode::FormErr);
        };
        if op_code != OpCode::Query || question.query_class() != DNSClass::IN {
            return reply(ResponseCode::NotImp);
        }
        let query_type = question.query_type();
        let report = |domain: String, reason: DnsReason, address: Option<IpAddr>, enforced| {
            if self.first_refusal(&domain, reason) {
                self.reporter.report_enforced(
                    std::time::SystemTime::now(),
                    asker(&self.cgroup, client),
                    What::DnsDenied {
                        domain,
                        query_type: query_type.to_string(),
                        reason,
                        address,
                    },
                    enforced,
                );
            }
        };
        let refuse = |domain: String, reason: DnsReason, address: Option<IpAddr>| {
            report(domain, reason, address, true);
            reply(ResponseCode::Refused)
        };
        let Some(name) = host_name(question.name()) else {
            let shown =
                String::from_utf8_lossy(&question.name().to_ascii().into_bytes()).into_owned();
            return refuse(shown, DnsReason::BadName, None);
        };
        let allowed = crate::network::name_allowed(&self.policy, &name);
        if !allowed && !self.audited {
            return refuse(name, DnsReason::NotAllowed, None);
        }
        if !allowed {
            report(name.clone(), DnsReason::NotAllowed, None, false);
        }
        let answer = match self.forward(&name, query_type) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!("no upstream DNS server answered for {name}: {e}");
                return reply(ResponseCode::ServFail);
            }
        };
        let records = records_of(&name, query_type, &answer.answers);
        let addresses = records.iter().filter_map(address_of);
        // Refused in an audit too: an answer into the host is a way into it.
        if let Some(inside) = addresses.clone().find(|a| self.points_inside(*a)) {
            return refuse(name, DnsReason::Rebind, Some(inside));
        }
        if !allowed {
            self.name_answers(&name, &records);
        } else if let Err(e) = self.allow_answers(&name, &records) {
            // Passing on an answer the kernel would not let the sandbox use helps nobody.
            tracing::warn!("cannot allow the addresses of {name}: {e}");
            return reply(ResponseCode::ServFail);
        }
        let mut out = Message::response(id, op_code);
        out.metadata.recursion_desired = message.metadata.recursion_desired;
        out.metadata.recursion_available = true;
        out.metadata.response_code = answer.metadata.response_code;
        out.add_query(question.clone());
        out.add_answers(records);
        out.to_vec().ok()
    }

    /// Asks each upstream in turn, with a query of the resolver's own; the first answer to
    /// it (its id and its question) wins.
    fn forward(&self, name: &str, query_type: RecordType) -> io::Result<Message> {
        let bad = |e: hickory_proto::ProtoError| io::Error::new(io::ErrorKind::InvalidData, e);
        let mut ask = Message::query();
        ask.metadata.recursion_desired = true;
        let question = Query::query(
            Name::from_ascii(format!("{name}.")).map_err(bad)?,
            query_type,
        );
        ask.add_query(question.clone());
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        ask.set_edns(edns);
        let bytes = ask.to_vec().map_err(bad)?;
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            "no upstream DNS server is configured",
        );
        for upstream in &self.upstreams {
            let local: SocketAddr = match upstream {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let attempt = (|| -> io::Result<Message> {
                let socket = UdpSocket::bind(local)?;
                socket.connect(upstream)?;
                socket.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
                socket.send(&bytes)?;
                let mut buf = vec![0u8; 65535];
                loop {
                    let len = socket.recv(&mut buf)?;
                    let Ok(answer) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    let same_question = answer.queries.len() == 1
                        && answer.queries[0].query_type() == query_type
                        && answer.queries[0].name() == question.name();
                    if answer.metadata.id == ask.metadata.id
                        && answer.metadata.message_type == MessageType::Response
                        && same_question
                    {
                        return Ok(answer);
                    }
                }
            })();
            match attempt {
                Ok(got) => return Ok(got),
                Err(e) => last = io::Error::new(e.kind(), format!("{upstream}: {e}")),
            }
        }
        Err(last)
    }

    /// Whether an answered address points into the host or its networks, with no `cidr`
    /// rule naming it (a rule for every address names nothing in particular).
    fn points_inside(&self, addr: IpAddr) -> bool {
        let named = self.policy.egress.iter().any(|r| match &r.to {
            crate::policy::Destination::Cidr(net) => net.prefix_len() > 0 && net.contains(&addr),
            crate::policy::Destination::Host(_) => false,
        });
        !named && (internal(addr) || self.host_addresses.contains(&addr))
    }

    /// Notes which name the addresses were answered for, without allowing them (audit).
    fn name_answers(&self, name: &str, records: &[Record]) {
        if let Ok(mut names) = self.names.lock() {
            for addr in records.iter().filter_map(address_of) {
                names.insert(addr, name.to_owned());
            }
        }
    }

    fn allow_answers(&self, name: &str, records: &[Record]) -> Result<(), crate::ebpf::EbpfError> {
        for record in records {
            let Some(addr) = address_of(record) else {
                continue;
            };
            let ttl = Duration::from_secs(record.ttl.into()).clamp(MIN_TTL, MAX_TTL);
            let expires = crate::network::monotonic_ns() + ttl.as_nanos() as u64;
            let mut dest = crate::network::answer_dest(&self.policy, name, addr, expires);
            if let Some(existing) = self.kernel.allowed(self.cgroup_id, addr)? {
                if existing.expires_ns == 0 || existing.expires_ns > crate::network::monotonic_ns()
                {
                    crate::network::merge_dest(&mut dest, &existing);
                }
            }
            self.kernel
                .allow(self.cgroup_id, ipnet::IpNet::from(addr), &dest)?;
            if let Ok(mut names) = self.names.lock() {
                names.insert(addr, name.to_owned());
            }
        }
        Ok(())
    }
}

/// The name as a host name (lower case, no final dot), or `None` when a label holds
/// anything but letters, digits, `-` and `_`, is empty or longer than 63 bytes, or the
/// name is longer than 253.
fn host_name(name: &Name) -> Option<String> {
    let mut out = String::new();
    for label in name.iter() {
        if label.is_empty()
            || label.len() > 63
            || !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
    }
    (!out.is_empty() && out.len() <= 253).then_some(out)
}

fn owner(record: &Record) -> String {
    record
        .name
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The records of `name` and its CNAME chain: CNAMEs along it, and records of the asked
/// type owned by a name on it. Records of any other owner are dropped.
fn records_of(name: &str, query_type: RecordType, answers: &[Record]) -> Vec<Record> {
    let mut chain = vec![name.to_owned()];
    // A chain longer than the answer is a loop.
    for _ in 0..answers.len() {
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if chain.contains(&owner(r)) => {
                let target = target
                    .0
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                (!chain.contains(&target)).then_some(target)
            }
            _ => None,
        });
        match next {
            Some(target) => chain.push(target),
            None => break,
        }
    }
    answers
        .iter()
        .filter(|r| chain.contains(&owner(r)))
        .filter(|r| r.record_type() == query_type || r.record_type() == RecordType::CNAME)
        .cloned()
        .collect()
}

fn address_of(record: &Record) -> Option<IpAddr> {
    match &record.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// Whether `addr` is one of [`crate::network::inside_prefixes`]: loopback, link-local,
/// private, special and reserved, as IPv4 or written as IPv6.
pub fn internal(addr: IpAddr) -> bool {
    crate::network::inside_prefixes()
        .iter()
        .any(|net| net.contains(&addr))
}

/// The addresses of the host's interfaces.
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|i| {
            let addr = i.address?;
            if let Some(v4) = addr.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        })
        .collect()
}

/// How many of the sandbox's descriptors one refusal's [`asker`] looks at, at most.
const MAX_DESCRIPTORS_LOOKED_AT: usize = 4096;

/// The process of the sandbox that owns the UDP socket `client` sent from: the socket's inode
/// from `/proc/net/udp` (or `udp6`), then the process of the sandbox's cgroup holding it.
fn asker(cgroup: &std::path::Path, client: SocketAddr) -> Option<crate::event::Process> {
    let table = if client.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let port = format!(":{:04X}", client.port());
    let inode = std::fs::read_to_string(table)
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1)?.ends_with(&port)).then(|| fields.get(9).map(|i| i.to_string()))?
        })?;
    let socket = format!("socket:[{inode}]");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).ok()?;
    // The sandbox chooses how many processes and descriptors there are, and this runs as
    // root on the host, outside its limits: a bounded look, then no name.
    let mut looks = 0usize;
    let pid: u32 = procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .find(|pid| {
            looks < MAX_DESCRIPTORS_LOOKED_AT
                && std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                    fds.flatten().any(|fd| {
                        looks += 1;
                        looks <= MAX_DESCRIPTORS_LOOKED_AT
                            && std::fs::read_link(fd.path())
                                .is_ok_and(|l| l.as_os_str() == socket.as_str())
                    })
                })
        })?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
    };
    Some(crate::event::Process {
        pid,
        ppid: field("PPid:").unwrap_or(0),
        comm: std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default(),
        exe: std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        uid: field("Uid:").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(owner: &str, addr: &str) -> Record {
        let v4: Ipv4Addr = addr.parse().unwrap();
        Record::from_rdata(Name::from_ascii(owner).unwrap(), 60, RData::A(v4.into()))
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            60,
            RData::CNAME(hickory_proto::rr::rdata::CNAME(
                Name::from_ascii(target).unwrap(),
            )),
        )
    }

    #[test]
    fn only_the_name_asked_and_its_cname_chain_are_kept() {
        let answers = vec![
            cname("www.example.com.", "edge.cdn.test."),
            a("edge.cdn.test.", "192.0.2.1"),
            a("unrelated.test.", "192.0.2.66"),
            cname("loop.test.", "www.example.com."),
        ];
        let kept = records_of("www.example.com", RecordType::A, &answers);
        let owners: Vec<String> = kept.iter().map(owner).collect();
        assert_eq!(owners, ["www.example.com", "edge.cdn.test"]);
        // A loop ends.
        let looped = vec![cname("a.test.", "b.test."), cname("b.test.", "a.test.")];
        assert_eq!(records_of("a.test", RecordType::A, &looped).len(), 2);
    }

    #[test]
    fn host_names_are_letters_digits_hyphens_and_underscores() {
        let name = |labels: &[&[u8]]| Name::from_labels(labels.iter().copied()).unwrap();
        assert_eq!(
            host_name(&name(&[b"Pypi", b"org"])).as_deref(),
            Some("pypi.org")
        );
        assert_eq!(
            host_name(&name(&[b"_acme-challenge", b"x", b"test"])).as_deref(),
            Some("_acme-challenge.x.test")
        );
        assert_eq!(host_name(&name(&[b"a b", b"test"])), None);
        assert_eq!(host_name(&name(&[b"\x1b[2J", b"test"])), None);
        assert_eq!(host_name(&Name::root()), None);
    }

    #[test]
    fn addresses_inside_the_host_or_its_networks_are_told_apart() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
        ] {
            assert!(internal(inside.parse().unwrap()), "{inside}");
        }
        for outside in [
            "192.0.2.1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!internal(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn upstreams_are_the_nameservers_of_resolv_conf() {
        let conf = "# comment\nsearch example.com\nnameserver 10.0.2.3\nnameserver fe80::1%eth0\nnameserver bogus\noptions ndots:1\n";
        assert_eq!(
            upstreams_from(conf),
            vec![
                "10.0.2.3:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
