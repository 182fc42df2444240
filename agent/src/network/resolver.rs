//! The sandbox's DNS resolver. The eBPF programs send every UDP datagram the sandbox
//! addresses to port 53 here (127.0.0.1 or [::1], this resolver's ports), whatever server it
//! meant, and make the answer look like it came from that server.
//!
//! A name no rule allows gets REFUSED and a `dns_denied` event. An allowed one is forwarded
//! to the host's resolvers, and every address of the answer is entered into the sandbox's
//! allow map, with the rule's ports and the answer's time to live, *before* the answer is
//! passed on: by the time the sandbox can connect, the kernel lets it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;

use crate::ebpf::Kernel;
use crate::event::What;
use crate::monitor::Reporter;
use crate::policy::NetPolicy;

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
    pub policy: NetPolicy,
    pub upstreams: Vec<SocketAddr>,
    /// Which name each allowed address was answered for, so a later denial can name it.
    pub names: Arc<Mutex<HashMap<IpAddr, String>>>,
    pub reporter: Reporter,
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
        stop: Arc<crate::monitor::Stop>,
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

fn serve_socket(socket: &UdpSocket, answering: &Answering, stop: &crate::monitor::Stop) {
    let mut buf = [0u8; 4096];
    while !stop.is_stopped() {
        if !stop.wait(std::os::fd::AsFd::as_fd(socket), None) {
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
        if let Some(reply) = answering.answer(&buf[..len]) {
            if let Err(e) = socket.send_to(&reply, client) {
                tracing::debug!("cannot answer {client}: {e}");
            }
        }
    }
}

impl Answering {
    /// The reply to one query; `None` for a datagram that is not a DNS query at all.
    pub fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let message = Message::from_vec(query).ok()?;
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
        let name = question
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !crate::network::name_allowed(&self.policy, &name) {
            self.reporter.report(
                None,
                What::DnsDenied {
                    domain: name,
                    query_type: question.query_type().to_string(),
                },
            );
            return reply(ResponseCode::Refused);
        }
        match self.forward(query, id) {
            Ok((raw, answer)) => {
                if let Err(e) = self.allow_answers(&name, &answer) {
                    // Passing on an answer the kernel would not let the sandbox use helps nobody.
                    tracing::warn!("cannot allow the addresses of {name}: {e}");
                    return reply(ResponseCode::ServFail);
                }
                Some(raw)
            }
            Err(e) => {
                tracing::warn!("no upstream DNS server answered for {name}: {e}");
                reply(ResponseCode::ServFail)
            }
        }
    }

    /// Sends the query to each upstream in turn; the first matching answer wins.
    fn forward(&self, query: &[u8], id: u16) -> io::Result<(Vec<u8>, Message)> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            "no upstream DNS server is configured",
        );
        for upstream in &self.upstreams {
            let local: SocketAddr = match upstream {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let attempt = (|| -> io::Result<(Vec<u8>, Message)> {
                let socket = UdpSocket::bind(local)?;
                socket.connect(upstream)?;
                socket.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
                socket.send(query)?;
                let mut buf = vec![0u8; 65535];
                loop {
                    let len = socket.recv(&mut buf)?;
                    let Ok(answer) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    if answer.metadata.id == id {
                        buf.truncate(len);
                        return Ok((buf, answer));
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

    fn allow_answers(&self, name: &str, answer: &Message) -> Result<(), crate::ebpf::EbpfError> {
        for record in &answer.answers {
            let addr = match &record.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => continue,
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

#[cfg(test)]
mod tests {
    use super::*;

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
